"""The demo's live view computes the right numbers from InfluxDB with known data."""

from __future__ import annotations

import math
import time

import pytest
from rich.console import Console

from services import Services, influx_write
from urbanpulse.config import InfluxSettings
from urbanpulse.influx import V1Writer
from urbanpulse.live import collect, energetic_mean, render

pytestmark = pytest.mark.services


def test_energetic_mean_is_not_the_arithmetic_mean() -> None:
    assert energetic_mean([]) is None
    assert energetic_mean([60.0]) == pytest.approx(60.0)
    # 50 and 70 dB: the loud half dominates, 10*log10((1e5 + 1e7)/2) = 67.03 dB
    assert energetic_mean([50.0, 70.0]) == pytest.approx(10 * math.log10((1e5 + 1e7) / 2))


def test_collect_on_known_data(influx: Services) -> None:
    now = time.time_ns() // 1_000_000
    t1, t2 = now - 20_000, now - 10_000
    old = now - 3_600_000  # outside the 60 s window: must not count
    tags = {
        "a1": "device_id=air-1,district=north,kind=air",
        "a2": "device_id=air-2,district=north,kind=air",
        "n1": "device_id=noise-1,district=centre,kind=noise",
        "t1": "device_id=traffic-1,district=centre,kind=traffic",
        "p1": "device_id=park-1,district=south,kind=parking",
        "p2": "device_id=park-2,district=south,kind=parking",
        "l1": "device_id=light-1,district=south,kind=streetlight",
        "w1": "device_id=water-1,district=south,kind=water",
        "s1": "device_id=soil-1,district=north,kind=soil",
    }
    lines = [
        f"air_quality,{tags['a1']} pm25=10.0 {t1}",
        f"air_quality,{tags['a1']} pm25=20.0 {t2}",  # latest of air-1
        f"air_quality,{tags['a2']} pm25=40.0 {t2}",
        f"air_quality,{tags['a2']} pm25=900.0 {old}",
        f"noise,{tags['n1']} laeq=50.0 {t1}",
        f"noise,{tags['n1']} laeq=70.0 {t2}",
        f"traffic,{tags['t1']} vehicles=30.0,period_s=60.0 {t1}",
        f"traffic,{tags['t1']} vehicles=20.0,period_s=60.0 {t2}",
        f"parking,{tags['p1']} occupied=false {t1}",
        f"parking,{tags['p1']} occupied=true {t2}",
        f"parking,{tags['p2']} occupied=false {t2}",
        f"streetlight,{tags['l1']} lamp_on=true,power=60.0 {t2}",
        f"water,{tags['w1']} water_level=120.5 {t2}",
        f"soil,{tags['s1']} soil_moisture=30.0 {t1}",
        f"soil,{tags['s1']} soil_moisture=40.0 {t2}",
        f"gateway_stats,gateway=gw received=100i,stored_points=400i,rejected_messages=3i {t1}",
        f"gateway_stats,gateway=gw received=300i,stored_points=1400i,rejected_messages=5i {t2}",
    ]
    influx_write(influx, "\n".join(lines))
    db = V1Writer(InfluxSettings(url=influx.influx_url, database=influx.database))
    snap = collect(db, window_s=60)

    assert snap.devices_online == 9
    assert sorted(snap.districts) == ["centre", "north", "south"]
    north, centre, south = (snap.districts[d] for d in ("north", "centre", "south"))
    assert (north.online, centre.online, south.online) == (3, 2, 4)
    assert north.pm25 == pytest.approx((20.0 + 40.0) / 2)  # latest per board, old one ignored
    assert centre.laeq == pytest.approx(10 * math.log10((1e5 + 1e7) / 2))
    assert centre.flow_vph == pytest.approx(50 * 3600 / 120)
    assert (south.parking_occupied, south.parking_reporting) == (1, 2)
    assert (south.lamps_on, south.lamps_reporting) == (1, 1)
    assert south.water_level_cm == 120.5
    assert north.soil_moisture == pytest.approx(35.0)
    assert snap.messages_per_s == pytest.approx(200 / 10)
    assert snap.points_per_s == pytest.approx(1000 / 10)
    assert snap.rejected_total == 5

    console = Console(width=140, record=True)
    console.print(render(snap))
    text = console.export_text()
    assert "devices online: 9" in text and "messages/s: 20.0" in text
    assert "1/2" in text  # parking in the south
