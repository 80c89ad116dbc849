"""The demo's live view computes the right numbers from InfluxDB with known data."""

from __future__ import annotations

import math
import time

import pytest
from rich.console import Console

from support.paths import REPO
from support.services import Services, influx_write
from urbanpulse.config import InfluxSettings
from urbanpulse.devtools.live import collect, energetic_mean, render
from urbanpulse.influx.writer import V1Writer

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


def test_headline_kpis_use_the_overview_dashboards_queries(influx: Services) -> None:
    hour = 3_600_000
    now = time.time_ns() // 1_000_000
    this_hour = now - now % hour
    last_hour = this_hour - hour
    stale = this_hour - 10 * hour  # outside the live view's KPI window: must not count
    lines = [
        f"kpi_aqi,level=district,district=north aqi=42 {last_hour}",
        f"kpi_aqi,level=district,district=north aqi=61 {this_hour}",  # latest of north
        f"kpi_aqi,level=district,district=south aqi=57 {this_hour}",
        f"kpi_aqi,level=district,district=centre aqi=300 {stale}",
        f"kpi_aqi,level=device,district=south,device_id=air-9,kind=air aqi=170 {this_hour}",
        f"kpi_network_now,level=city,district=all availability=0.75 {last_hour}",
        f"kpi_network_now,level=city,district=all availability=0.9 {now - 5_000}",
        f"kpi_network_now,level=district,district=north availability=0.1 {now - 5_000}",
        f"kpi_parking_now,level=district,district=north free=4,occupied=6 {now - 5_000}",
        f"kpi_parking_now,level=district,district=south free=7,occupied=3 {now - 5_000}",
        f"kpi_parking_now,level=site,district=south,site=Station free=7 {now - 5_000}",
        f"kpi_traffic_hourly,level=district,district=north flow_vph=120 {last_hour}",
        f"kpi_traffic_hourly,level=district,district=south flow_vph=80 {last_hour}",
        f"kpi_streetlight_hourly,level=device,district=north,device_id=l-1,kind=streetlight "
        f"fault=true {last_hour}",
        f"kpi_streetlight_hourly,level=device,district=north,device_id=l-1,kind=streetlight "
        f"fault=false {this_hour}",  # repaired: its latest hour is fine
        f"kpi_streetlight_hourly,level=device,district=north,device_id=l-2,kind=streetlight "
        f"fault=true {this_hour}",
        f"kpi_water,level=device,district=south,device_id=w-1,kind=water "
        f"water_level=212,threshold_cm=200,above=true {this_hour}",
    ]
    influx_write(influx, "\n".join(lines))
    db = V1Writer(InfluxSettings(url=influx.influx_url, database=influx.database))
    snap = collect(db, window_s=60, kpi_window_s=3 * 3600)
    assert snap.headline == {
        "city_aqi": 61.0,  # worst district now; the device-level 170 is not a district
        "online_ratio": 0.9,
        "parking_free": 11.0,
        "traffic_flow_vph": 200.0,
        "lamps_faulty": 1.0,
        "rivers_above": 1.0,
    }
    console = Console(width=160, record=True)
    console.print(render(snap))
    text = console.export_text()
    assert "city AQI: 61" in text and "boards online: 90%" in text
    assert "parking free: 11" in text and "traffic: 200 veh/h" in text
    assert "lamps faulty: 1" in text and "rivers above threshold: 1" in text


def test_live_view_runs_the_dashboard_strings() -> None:
    """One module holds the headline queries; the overview's stat panels carry them."""
    import json

    from urbanpulse.dashboards.headline import HEADLINES

    board = json.loads((REPO / "dashboards/city-overview.json")
                       .read_text(encoding="utf-8"))
    stats = {p["title"]: p["targets"][0]["query"] for p in board["panels"] if p["type"] == "stat"}
    assert stats == {h.title: h.query for h in HEADLINES}
