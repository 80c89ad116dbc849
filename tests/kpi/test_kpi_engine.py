"""The KPI engine against a real InfluxDB: a known day and a half of raw telemetry for a small
city (two local days, across local midnight), one engine run, and the stored KPI points
compared with values this test computes from the raw data by the definitions."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support.kpi_city import (
    AMS,
    DAY10,
    DAY11,
    NOW,
    REGISTRY,
    START,
    City,
    H,
    M,
    local_hour,
    make_city,
    store,
)
from support.services import Services, influx_query, influx_write
from support.services import points_by_time as kpi
from urbanpulse.config import Settings
from urbanpulse.contract.lineprotocol import encode_point
from urbanpulse.kpi.engine import KpiEngine
from urbanpulse.kpi.job import KpiJob
from urbanpulse.registry.devices import Registry, load_registry


@pytest.fixture
def city(influx: Services, tmp_path: Path) -> tuple[Services, City, Registry, Settings]:
    path = tmp_path / "devices.csv"
    path.write_text(REGISTRY)
    registry = load_registry(path)
    settings = Settings(
        influx={"url": influx.influx_url, "database": influx.database},
        registry={"path": path},
        kpi={"lookback_h": 3},
    )
    data = make_city()
    store(influx, registry, data.raw)
    return influx, data, registry, settings


def engine_for(settings: Settings, registry: Registry) -> KpiEngine:
    return KpiEngine(settings, lambda: registry, clock=lambda: NOW)


def in_window(rows: list[tuple[int, dict[str, Any]]], start: int, end: int,
              key: str) -> list[tuple[int, Any]]:
    return [(t, f[key]) for t, f in rows if start <= t < end and key in f]


def energetic(levels: list[float]) -> float:
    return 10 * math.log10(sum(10 ** (x / 10) for x in levels) / len(levels))


def test_engine_stores_kpis_equal_to_values_computed_from_the_raw_data(
    city: tuple[Services, City, Registry, Settings],
) -> None:
    services, data, registry, settings = city
    engine = engine_for(settings, registry)
    report = engine.run()
    # Hours 20Z-23Z on 10 June (22:00-01:30 local): local days 10 and 11 June.
    assert (report.hours, report.days) == (4, 2)
    raw = data.raw
    hours = [NOW - 210 * M + k * H for k in range(4)]  # 20Z .. 23Z
    assert datetime.fromtimestamp(hours[0] / 1000, UTC).hour == 20

    # Air: hourly means per device, site = mean of its devices' means.
    air = kpi(services, "kpi_air_hourly", level="device", device_id="air-n-01")
    site = kpi(services, "kpi_air_hourly", level="site", site="Town Hall")
    assert sorted(air) == hours and sorted(site) == hours
    for h in hours:
        pm = [v for _, v in in_window(raw["air-n-01"], h, h + H, "pm25")]
        assert air[h]["pm25"] == pytest.approx(sum(pm) / len(pm))
        assert air[h]["samples"] == len(pm) and air[h]["kind"] == "air"
        assert air[h]["district"] == "north" and air[h]["site"] == "Town Hall"
    h21 = hours[1]
    means = []
    for d in ("air-n-01", "air-n-02"):
        pm = [v for _, v in in_window(raw[d], h21, h21 + H, "pm10")]
        means.append(sum(pm) / len(pm))
    assert site[h21]["pm10"] == pytest.approx(sum(means) / 2)

    # AQI of 23Z: 24 hourly means of PM2.5 ending with 23Z, EPA 2024 formula.
    h23 = hours[3]
    hourly = []
    for k in range(24):
        pm = [v for _, v in in_window(raw["air-n-01"], h23 - k * H, h23 - k * H + H, "pm25")]
        hourly.append(sum(pm) / len(pm))
    c = math.floor(sum(hourly) / 24 * 10 + 1e-9) / 10
    assert 9.1 <= c <= 35.4
    expected_aqi = math.floor((100 - 51) / (35.4 - 9.1) * (c - 9.1) + 51 + 0.5)
    aqi = kpi(services, "kpi_aqi", level="device", device_id="air-n-01")[h23]
    assert aqi["pm25_24h"] == pytest.approx(sum(hourly) / 24)
    assert (aqi["aqi_pm25"], aqi["hours"], aqi["valid"]) == (expected_aqi, 24, True)
    assert aqi["category"] == "Moderate"
    aqi_site = kpi(services, "kpi_aqi", level="site", site="Town Hall")[h23]
    assert aqi_site["aqi"] == aqi["aqi"]  # the worse of its two boards

    # Noise: hourly energetic mean; Lden of local 10 June (12/4/8 hours).
    noise = kpi(services, "kpi_noise_hourly", level="device", device_id="noise-n-01")
    levels = [v for _, v in in_window(raw["noise-n-01"], h21, h21 + H, "laeq")]
    assert noise[h21]["laeq"] == pytest.approx(energetic(levels))
    assert noise[h21]["lamax"] == max(v for _, v in in_window(raw["noise-n-01"], h21, h21 + H,
                                                               "lamax"))
    daily = kpi(services, "kpi_noise_daily", level="device", device_id="noise-n-01")
    assert set(daily) == {DAY10, DAY11}
    periods: dict[str, list[float]] = {"d": [], "e": [], "n": []}
    for t, v in in_window(raw["noise-n-01"], DAY10, DAY11, "laeq"):
        lh = local_hour(t)
        periods["d" if 7 <= lh < 19 else "e" if 19 <= lh < 23 else "n"].append(v)
    ld, le, ln = (energetic(periods[p]) for p in "den")
    lden = 10 * math.log10((12 * 10 ** (ld / 10) + 4 * 10 ** ((le + 5) / 10)
                            + 8 * 10 ** ((ln + 10) / 10)) / 24)
    assert daily[DAY10]["lden"] == pytest.approx(lden)
    assert daily[DAY10]["samples"] == 144
    # 11 June so far: night only, no Lden yet.
    assert "lden" not in daily[DAY11] or daily[DAY11]["lden"] is None

    # Parking: 5-minute samples, so occupancy = share of occupied samples (time-weighted);
    # the current hour only counts up to now.
    park = kpi(services, "kpi_parking_hourly", level="site", site="Market")
    for h in hours:
        states = [v for d in ("park-c-01", "park-c-02")
                  for _, v in in_window(raw[d], h, min(h + H, NOW), "occupied")]
        assert park[h]["occupancy"] == pytest.approx(sum(states) / len(states))
        assert park[h]["bays"] == 2
    now_points = kpi(services, "kpi_parking_now", level="site", site="Market")
    latest = [raw[d][-1][1]["occupied"] for d in ("park-c-01", "park-c-02")]
    assert now_points[NOW]["occupied"] == sum(latest)
    assert now_points[NOW]["free"] == 2 - sum(latest)

    # Traffic: vehicles and flow per hour; vehicles per local day.
    traffic = kpi(services, "kpi_traffic_hourly", level="district", district="centre")
    counted = in_window(raw["traf-c-01"], h21, h21 + H, "vehicles")
    assert traffic[h21]["vehicles"] == sum(v for _, v in counted)
    assert traffic[h21]["flow_vph"] == pytest.approx(sum(v for _, v in counted) * 3600
                                                     / (300 * len(counted)))
    tdaily = kpi(services, "kpi_traffic_daily", level="device", device_id="traf-c-01")
    assert tdaily[DAY10]["vehicles"] == sum(v for _, v in in_window(raw["traf-c-01"], DAY10,
                                                                       DAY11, "vehicles"))

    # Street light, local 10 June: energy across the meter reset, 7.5 burning hours, one hour
    # on in daylight (12-13 local) = a fault.
    lamp = kpi(services, "kpi_streetlight_daily", level="device", device_id="lamp-s-01")[DAY10]
    readings = sorted(data.meter)
    before = max(t for t in readings if t < DAY10)
    last = max(t for t in readings if t < DAY11)
    assert data.lost_wh == pytest.approx(100 * 5 / 60)
    assert lamp["energy_wh"] == pytest.approx(
        data.meter[last] - data.meter[before] - data.lost_wh)
    assert lamp["energy_wh"] > 600  # the reset did not eat the night's energy
    assert lamp["burning_h"] == pytest.approx(7.5)
    assert lamp["day_on_h"] == pytest.approx(1.0) and lamp["night_off_h"] == 0
    assert lamp["fault"] is True
    south = kpi(services, "kpi_streetlight_daily", level="district", district="south")[DAY10]
    assert south["faults"] == 1 and south["energy_wh"] == pytest.approx(lamp["energy_wh"])
    lamp_hourly = kpi(services, "kpi_streetlight_hourly", level="device", device_id="lamp-s-01")
    assert lamp_hourly[hours[2]]["burning_h"] == pytest.approx(1.0)  # 00:00-01:00 local
    assert lamp_hourly[hours[2]]["fault"] is False

    # Water: last and highest level per hour, crossings of 150 cm at the crossing sample.
    wat = kpi(services, "kpi_water", level="device", device_id="water-s-01")
    levels_h = in_window(raw["water-s-01"], h21, h21 + H, "water_level")
    assert wat[h21]["water_level"] == levels_h[-1][1]
    assert wat[h21]["level_max"] == max(v for _, v in levels_h)
    assert wat[h21]["threshold_cm"] == 150 and wat[h21]["above"] == (levels_h[-1][1] >= 150)
    series = [(t, f["water_level"]) for t, f in raw["water-s-01"]]
    expected_crossings = {
        t: ("up" if v >= 150 else "down")
        for (_, p), (t, v) in itertools.pairwise(series)
        if hours[0] <= t < NOW and (p < 150) != (v < 150)
    }
    assert len(expected_crossings) >= 2
    crossings = kpi(services, "kpi_water_crossing", device_id="water-s-01")
    assert {t: c["direction"] for t, c in crossings.items()} == expected_crossings

    # Network: air-n-02 sent 3 of 6 samples in 21Z, and nothing since 22:50Z.
    net = kpi(services, "kpi_network_hourly", level="device", device_id="air-n-02")
    assert (net[h21]["samples"], net[h21]["expected"]) == (3, 6)
    assert net[h21]["completeness"] == pytest.approx(0.5) and net[h21]["valid"] is False
    assert net[h23]["seen"] == 0 and net[h23]["expected"] == 3  # half an hour so far
    north = kpi(services, "kpi_network_hourly", level="district", district="north")[h23]
    assert (north["devices"], north["seen"]) == (3, 2)
    assert north["availability"] == pytest.approx(2 / 3)
    now_city = kpi(services, "kpi_network_now", level="city")[NOW]
    assert (now_city["registered"], now_city["online"]) == (8, 7)
    capture = kpi(services, "kpi_capture_daily", level="device", device_id="air-n-02")[DAY10]
    assert capture["valid_hours"] == 23 and capture["capture"] == pytest.approx(23 / 24)
    assert capture["good"] is True

    # Running again over the same windows replaces the points; nothing is added.
    stored = influx_query(services, "SELECT count(*) FROM /^kpi_/")
    assert len(stored) == 15  # every KPI measurement of the schema
    engine.run()
    assert influx_query(services, "SELECT count(*) FROM /^kpi_/") == stored


def test_late_data_recomputes_the_old_windows_it_touches(
    city: tuple[Services, City, Registry, Settings],
) -> None:
    services, data, registry, settings = city
    engine = engine_for(settings, registry)
    engine.run()
    old = NOW - 10 * H - 30 * M  # 13Z: outside the 3-hour lookback
    query: Callable[[], dict[int, dict[str, Any]]] = lambda: kpi(  # noqa: E731
        services, "kpi_traffic_hourly", level="device", device_id="traf-c-01")
    assert old not in query()
    engine.run()
    assert old not in query()  # not recomputed without a reason
    # A board delivers its offline buffer: 500 more vehicles in the hour 13Z.
    reg = registry.get("traf-c-01")
    assert reg is not None
    late = [old + 150_000 + k * 1000 for k in range(5)]
    influx_write(services, "\n".join(
        encode_point("traffic", reg.device.tags, {"vehicles": 100.0, "period_s": 1.0}, t)
        for t in late))
    engine.note_samples("traf-c-01", min(late), max(late))
    assert engine.dirty_hours == 1
    engine.run()
    # Just noted: recomputed now, and kept for one more run in case the gateway had not
    # stored all of the board's buffer yet.
    assert engine.dirty_hours == 1
    engine.settle_s = 0
    engine.run()
    assert engine.dirty_hours == 0
    stored = in_window(data.raw["traf-c-01"], old, old + H, "vehicles")
    before = sum(v for _, v in stored)
    first = query()[old]
    assert first["vehicles"] == before + 500
    # More late data in the same hour replaces the window's value, it does not add a point.
    influx_write(services, encode_point("traffic", reg.device.tags,
                                        {"vehicles": 7.0, "period_s": 300.0}, old + 10 * M + 1))
    engine.note_samples("traf-c-01", old + 10 * M + 1, old + 10 * M + 1)
    engine.run()
    after = query()
    assert after[old]["vehicles"] == before + 507
    seconds = 300 * len(stored) + 5 + 300
    assert after[old]["flow_vph"] == pytest.approx((before + 507) * 3600 / seconds)
    # The AQI averages 24 hours: late PM2.5 in 13Z moves the AQI of the hours after it too.
    earlier = NOW - 8 * H  # a run at 15:30Z computed the AQI of 15Z
    engine.run(now=earlier)
    h15 = earlier - 30 * M
    aqi_before = kpi(services, "kpi_aqi", level="device", device_id="air-n-01")[h15]
    air = registry.get("air-n-01")
    assert air is not None
    influx_write(services, encode_point("air_quality", air.device.tags, {"pm25": 900.0},
                                        old + 5 * M + 7))
    engine.note_samples("air-n-01", old + 5 * M + 7, old + 5 * M + 7)
    engine.run()
    aqi_after = kpi(services, "kpi_aqi", level="device", device_id="air-n-01")[h15]
    pm = [v for _, v in in_window(data.raw["air-n-01"], old, old + H, "pm25")]
    # Data starts at 20Z the day before: 20 hourly means in the window, not 24.
    assert aqi_before["hours"] == 20 and aqi_before["valid"] is True
    shift = ((sum(pm) + 900) / (len(pm) + 1) - sum(pm) / len(pm)) / 20
    assert aqi_after["pm25_24h"] == pytest.approx(aqi_before["pm25_24h"] + shift)
    assert aqi_after["aqi"] > aqi_before["aqi"]
    # The daily window of that day changed too.
    daily = kpi(services, "kpi_traffic_daily", level="device", device_id="traf-c-01")
    assert daily[DAY10]["vehicles"] == 507 + sum(
        v for _, v in in_window(data.raw["traf-c-01"], DAY10, DAY11, "vehicles"))


def test_a_25_hour_local_day_weighs_its_long_night_and_counts_25_hours(
    influx: Services, tmp_path: Path
) -> None:
    """Europe/Amsterdam leaves summer time on 2026-10-25: that local day has 25 hours."""
    path = tmp_path / "devices.csv"
    path.write_text("device_id,kind,district,interval_s\n"
                    "noise-w-01,noise,west,600\nair-w-01,air,west,600\n")
    registry = load_registry(path)
    settings = Settings(influx={"url": influx.influx_url, "database": influx.database},
                        registry={"path": path})
    day_start = int(datetime(2026, 10, 25, tzinfo=AMS).timestamp() * 1000)
    now = int(datetime(2026, 10, 25, 23, 30, tzinfo=UTC).timestamp() * 1000)  # 00:30 on 26th
    assert day_start == int(datetime(2026, 10, 24, 22, tzinfo=UTC).timestamp() * 1000)
    day_end = day_start + 25 * H
    assert int(datetime(2026, 10, 26, tzinfo=AMS).timestamp() * 1000) == day_end
    levels = {"day": 60.0, "evening": 57.0, "night": 65.0}

    def period(t: int) -> str:
        lh = local_hour(t)
        return "day" if 7 <= lh < 19 else "evening" if 19 <= lh < 23 else "night"

    missing = range(day_start + 7 * H, day_start + 10 * H)  # air board silent 3 hours
    rows = {
        "noise-w-01": [(t, {"laeq": levels[period(t)]}) for t in range(day_start, now, 10 * M)],
        "air-w-01": [(t, {"pm25": 10.0}) for t in range(day_start, now, 10 * M)
                     if t not in missing],
    }
    store(influx, registry, rows)
    report = KpiEngine(settings, lambda: registry, clock=lambda: now).run()
    assert report.days == 2
    hours_by_period = {p: sum(1 for t, _ in rows["noise-w-01"] if t < day_end and period(t) == p)
                       / 6 for p in levels}
    assert hours_by_period == {"day": 12, "evening": 4, "night": 9}
    lden = 10 * math.log10((12 * 10**6 + 4 * 10**6.2 + 9 * 10**7.5) / 25)
    # A 24-hour weighting would be 0.3 dB off.
    assert abs(lden - 10 * math.log10((12 * 10**6 + 4 * 10**6.2 + 8 * 10**7.5) / 24)) > 0.3
    daily = kpi(influx, "kpi_noise_daily", device_id="noise-w-01")
    assert set(daily) == {day_start, day_end}
    assert daily[day_start]["lden"] == pytest.approx(lden)
    assert daily[day_start]["samples"] == 25 * 6
    capture = kpi(influx, "kpi_capture_daily", level="device", device_id="air-w-01")[day_start]
    # 22 valid hours of 25 is 88 %: not good (of 24 it would have been 91.7 %).
    assert capture["valid_hours"] == 22
    assert capture["capture"] == pytest.approx(22 / 25) and capture["good"] is False


def test_recomputing_an_hour_replaces_its_water_crossings(
    city: tuple[Services, City, Registry, Settings],
) -> None:
    services, data, registry, settings = city
    engine = engine_for(settings, registry)
    engine.run()
    crossings = kpi(services, "kpi_water_crossing", device_id="water-s-01")
    first_up = min(t for t, c in crossings.items() if c["direction"] == "up")
    # A late reading 5 minutes before that crossing, already above the alert level: the
    # water crossed then, and the old crossing point must go.
    reg = registry.get("water-s-01")
    assert reg is not None
    late = first_up - 5 * M
    influx_write(services, encode_point("water", reg.device.tags, {"water_level": 155.0}, late))
    engine.note_samples("water-s-01", late, late)
    engine.run()
    after = kpi(services, "kpi_water_crossing", device_id="water-s-01")
    assert after[late]["direction"] == "up" and after[late]["water_level"] == 155
    assert first_up not in after
    assert len(after) == len(crossings)
    assert data.raw["water-s-01"]  # the stored data itself is untouched by the KPIs
    assert influx_query(services, f"SELECT count(water_level) FROM water WHERE "
                                  f"time >= {START}ms")[0]["values"][0][1] == (
        len(data.raw["water-s-01"]) + 1)


def test_late_windows_are_kept_while_the_gateway_still_holds_unstored_points(
    city: tuple[Services, City, Registry, Settings],
) -> None:
    """After an outage the gateway notes a board's late samples on receipt, but stores them
    only as its spool replays: until the backlog is gone, each run recomputes those windows."""
    services, data, registry, settings = city
    backlog = True
    job = KpiJob(settings, lambda: registry, backlog=lambda: backlog)
    job.engine = engine_for(settings, registry)
    job.engine.settle_s = 0
    old = NOW - 12 * H - 30 * M  # outside the 3-hour lookback
    query: Callable[[], dict[int, dict[str, Any]]] = lambda: kpi(  # noqa: E731
        services, "kpi_traffic_hourly", level="device", device_id="traf-c-01")
    late = [old + 200_000 + k * 1000 for k in range(3)]
    job.note_samples("traf-c-01", min(late), max(late))  # received, still in the spool
    assert job.run_due(0.0)
    assert job.engine.dirty_hours == 1, "kept: the points are not stored yet"
    before = sum(v for _, v in in_window(data.raw["traf-c-01"], old, old + H, "vehicles"))
    assert query()[old]["vehicles"] == before
    reg = registry.get("traf-c-01")
    assert reg is not None
    influx_write(services, "\n".join(  # the spool is replayed
        encode_point("traffic", reg.device.tags, {"vehicles": 40.0, "period_s": 1.0}, t)
        for t in late))
    backlog = False
    assert job.run_due(1e9)
    assert job.engine.dirty_hours == 0
    assert query()[old]["vehicles"] == before + 120


def test_a_stored_reading_out_of_bounds_costs_its_kpi_value_not_the_run(
    influx: Services, tmp_path: Path
) -> None:
    """Two lamps whose meters jump to 1.7e308 Wh (written straight to InfluxDB: the gateway
    refuses such a reading): each lamp's day is finite, their district's sum is not. The
    run still writes every other KPI, and says what it left out."""
    path = tmp_path / "devices.csv"
    path.write_text("device_id,kind,district,interval_s\nlamp-x-01,streetlight,east,600\n"
                    "lamp-x-02,streetlight,east,600\n")
    registry = load_registry(path)
    settings = Settings(influx={"url": influx.influx_url, "database": influx.database},
                        registry={"path": path}, kpi={"lookback_h": 3})
    lines = []
    for device_id in ("lamp-x-01", "lamp-x-02"):
        reg = registry.get(device_id)
        assert reg is not None
        for k, energy in enumerate((0.0, 1.7e308)):
            lines.append(encode_point("streetlight", reg.device.tags,
                                      {"lamp_on": True, "energy": energy}, NOW - 2 * H + k * H))
    influx_write(influx, "\n".join(lines))
    report = engine_for(settings, registry).run()
    assert report.dropped == {"kpi_streetlight_daily.energy_wh": 1}
    # The jump lands in the local day after midnight (NOW is 01:30 local).
    lamp = kpi(influx, "kpi_streetlight_daily", level="device", device_id="lamp-x-01")
    assert lamp[DAY11]["energy_wh"] == 1.7e308
    district = kpi(influx, "kpi_streetlight_daily", level="district", district="east")
    assert district[DAY11]["energy_wh"] is None and district[DAY11]["burning_h"] > 0
    assert district[DAY10]["energy_wh"] == 0
