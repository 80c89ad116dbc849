"""Every query of every committed dashboard panel and alert rule, run against a real InfluxDB
holding a known day of data (tests/dashboard_data.py), returns the values computed here from
that data in plain Python, with Grafana's variables substituted as Grafana would."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from support import dashboard_data as dd
from support.dashboard_data import Data, latest, mean, per_hour, series
from support.paths import REPO
from support.services import Services, influx_drop_and_create, influx_query, influx_write
from urbanpulse.dashboards.interpolation import interpolate, time_filter

pytestmark = pytest.mark.services

Key = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Series:
    """Time series: every point's time and values, per series."""
    value: dict[Key, list[tuple[int, tuple[Any, ...]]]]


@dataclass(frozen=True)
class Latest:
    """One row per series; the row's time is InfluxDB's choice (range start for several
    selectors), so only the values count."""
    value: dict[Key, tuple[Any, ...]]


@dataclass(frozen=True)
class Scalar:
    value: float | None  # None: no series at all ("no data" in Grafana)


Expectation = Series | Latest | Scalar
Compute = Callable[[Data], Expectation]


def _count(rows: Mapping[Key, tuple[Any, ...]], wanted: object) -> Scalar:
    n = sum(1 for values in rows.values() if values[0] == wanted)
    return Scalar(float(n) if n else None)


def _sum(rows: Mapping[Key, tuple[Any, ...]]) -> Scalar:
    return Scalar(float(sum(v[0] for v in rows.values())) if rows else None)


def _counter(d: Data, fields: Sequence[str], per_second: bool) -> Series:
    """non_negative_difference / derivative(1s) of the hourly max of gateway counters."""
    pts = d.select("gateway_stats")
    hourly = {f: per_hour(pts, f, ["gateway"], max) for f in fields}
    out: dict[Key, list[tuple[int, tuple[Any, ...]]]] = {}
    for k in hourly[fields[0]]:
        rows = []
        columns = [hourly[f][k] for f in fields]
        for i in range(1, len(columns[0])):
            t = columns[0][i][0]
            values = []
            for col in columns:
                delta = col[i][1][0] - col[i - 1][1][0]
                values.append(None if delta < 0 else delta / 3600 if per_second else delta)
            if any(v is not None for v in values):
                rows.append((t, tuple(values)))
        out[k] = rows
    return Series(out)


def _totals(pts: Sequence[dd.Point], fields: Sequence[str],
            by: Sequence[str]) -> dict[Key, tuple[Any, ...]]:
    out: dict[Key, list[Any]] = {}
    for pt in pts:
        row = out.setdefault(dd.key(pt, by), [0] * len(fields))
        for i, f in enumerate(fields):
            row[i] += pt.fields[f]
    return {k: tuple(v) for k, v in out.items()}


DEVICE = ["device_id"]
DEVICE_TAGS = ["district", "site", "device_id"]

EXPECTED: dict[tuple[str, str, str], Compute] = {
    # City overview
    ("city-overview", "City AQI", "A"): lambda d: Scalar(max(
        v[0] for v in latest(d.select("kpi_aqi", "district"), ["aqi"], ["district"]).values())),
    ("city-overview", "Boards online", "A"): lambda d: Scalar(
        d.select("kpi_network_now", "city")[-1].fields["availability"]),  # type: ignore[arg-type]
    ("city-overview", "Parking free", "A"): lambda d: _sum(
        latest(d.select("kpi_parking_now", "district"), ["free"], ["district"])),
    ("city-overview", "Traffic flow", "A"): lambda d: _sum(
        latest(d.select("kpi_traffic_hourly", "district"), ["flow_vph"], ["district"])),
    ("city-overview", "Lamps faulty", "A"): lambda d: _count(
        latest(d.select("kpi_streetlight_hourly", "device"), ["fault"], DEVICE), True),
    ("city-overview", "Rivers above threshold", "A"): lambda d: _count(
        latest(d.select("kpi_water", "device"), ["above"], DEVICE), True),
    ("city-overview", "Boards", "A"): lambda d: Latest(latest(
        d.select("device_info", t0=0), ["lat", "lon"], ["device_id", "district", "kind"])),
    ("city-overview", "Boards", "B"): lambda d: Latest(
        latest(d.select("device_status"), ["state"], DEVICE)),
    ("city-overview", "Boards", "C"): lambda d: Latest(
        latest(d.select("kpi_aqi", "device"), ["aqi"], DEVICE)),
    ("city-overview", "AQI by district", "A"): lambda d: Series(
        series(d.select("kpi_aqi", "district"), ["aqi"], ["district"])),
    # Air quality
    ("air-quality", "AQI now, per board", "A"): lambda d: Latest(latest(
        d.select("kpi_aqi", "device"),
        ["aqi", "category", "dominant", "pm25_24h", "pm10_24h", "hours", "valid"], DEVICE_TAGS)),
    ("air-quality", "AQI by district", "A"): lambda d: Series(
        series(d.select("kpi_aqi", "district"), ["aqi"], ["district"])),
    ("air-quality", "PM2.5, hourly mean", "A"): lambda d: Series(
        series(d.select("kpi_air_hourly", "device"), ["pm25"], DEVICE)),
    ("air-quality", "PM10, hourly mean", "A"): lambda d: Series(
        series(d.select("kpi_air_hourly", "device"), ["pm10"], DEVICE)),
    ("air-quality", "NO2 and O3, hourly mean", "A"): lambda d: Series(
        series(d.select("kpi_air_hourly", "device"), ["no2", "o3"], DEVICE)),
    ("air-quality", "PM2.5 readings", "A"): lambda d: Series(
        per_hour(d.select("air_quality"), "pm25", DEVICE, mean)),
    # Noise
    ("noise", "LAeq per hour", "A"): lambda d: Series(
        series(d.select("kpi_noise_hourly", "device"), ["laeq"], DEVICE)),
    ("noise", "LAmax per hour", "A"): lambda d: Series(
        series(d.select("kpi_noise_hourly", "device"), ["lamax"], DEVICE)),
    ("noise", "Lden per day", "A"): lambda d: Series(
        series(d.select("kpi_noise_daily", "device"), ["lden"], DEVICE)),
    ("noise", "Latest day per board", "A"): lambda d: Latest(latest(
        d.select("kpi_noise_daily", "device"), ["lden", "lday", "levening", "lnight"],
        DEVICE_TAGS)),
    # Mobility
    ("mobility", "Traffic flow by district", "A"): lambda d: Series(
        series(d.select("kpi_traffic_hourly", "district"), ["flow_vph"], ["district"])),
    ("mobility", "Vehicles per day by district", "A"): lambda d: Series(
        series(d.select("kpi_traffic_daily", "district"), ["vehicles"], ["district"])),
    ("mobility", "Parking occupancy by district", "A"): lambda d: Series(
        series(d.select("kpi_parking_hourly", "district"), ["occupancy"], ["district"])),
    ("mobility", "Parking now, per site", "A"): lambda d: Latest(latest(
        d.select("kpi_parking_now", "site"), ["free", "occupied", "reporting", "occupancy"],
        ["district", "site"])),
    ("mobility", "Average speed", "A"): lambda d: Series(
        per_hour(d.select("traffic"), "speed_avg", DEVICE, mean)),
    # Street lighting
    ("street-lighting", "Energy per lamp per day", "A"): lambda d: Series(
        series(d.select("kpi_streetlight_daily", "device"), ["energy_wh"], DEVICE)),
    ("street-lighting", "Burning hours per day", "A"): lambda d: Series(
        series(d.select("kpi_streetlight_daily", "device"), ["burning_h"], DEVICE)),
    ("street-lighting", "Faulty lamps per district per day", "A"): lambda d: Series(
        series(d.select("kpi_streetlight_daily", "district"), ["faults"], ["district"])),
    ("street-lighting", "Fault hours", "A"): lambda d: Series(series(
        d.select("kpi_streetlight_hourly", "device", where=lambda p: p.fields["fault"] is True),
        ["day_on_h", "night_off_h"], ["district", "device_id"])),
    ("street-lighting", "Lamp power", "A"): lambda d: Series(
        per_hour(d.select("streetlight"), "power", DEVICE, mean)),
    # Water
    ("water", "Levels now", "A"): lambda d: Latest(latest(
        d.select("kpi_water", "device"), ["water_level", "threshold_cm", "rise_cm_h", "above"],
        DEVICE_TAGS)),
    ("water", "Water level and alert level, hourly", "A"): lambda d: Series(
        series(d.select("kpi_water", "device"), ["water_level", "threshold_cm"], DEVICE)),
    ("water", "Rise rate", "A"): lambda d: Series(
        series(d.select("kpi_water", "device"), ["rise_cm_h"], DEVICE)),
    ("water", "Threshold crossings", "A"): lambda d: Series(series(
        d.select("kpi_water_crossing", "device"), ["direction", "water_level", "threshold_cm"],
        DEVICE_TAGS)),
    ("water", "Water level readings", "A"): lambda d: Series(
        per_hour(d.select("water"), "water_level", DEVICE, max)),
    # Network health
    ("network-health", "Boards online", "A"): lambda d: _count(
        latest(d.select("device_status"), ["state"], DEVICE), "online"),
    ("network-health", "Boards offline", "A"): lambda d: _count(
        latest(d.select("device_status"), ["state"], DEVICE), "offline"),
    ("network-health", "Availability by district", "A"): lambda d: Series(
        series(d.select("kpi_network_now", "district"), ["availability"], ["district"])),
    ("network-health", "Board status", "A"): lambda d: Latest(latest(
        d.select("device_status"), ["state", "reason"], ["district", "kind", "device_id"])),
    ("network-health", "Board status", "B"): lambda d: Latest(latest(
        d.select("device_health"), ["fw", "reset_cause", "faults"], DEVICE)),
    ("network-health", "Command answers", "A"): lambda d: Series(
        series(d.select("device_command"), ["id", "ok", "error"],
               ["district", "kind", "device_id"])),
    ("network-health", "Firmware updates", "A"): lambda d: Series(series(
        d.select("device_command", where=lambda p: str(p.fields["id"]).startswith("ota-")),
        ["id", "state", "fw", "error"], ["district", "kind", "device_id"])),
    ("network-health", "Sealed telemetry per board", "A"): lambda d: Latest(_totals(
        d.select("device_integrity"), ["verified", "gaps", "forks", "bad_mac", "replayed"],
        ["district", "kind", "device_id"])),
    ("network-health", "Receipts by district", "A"): lambda d: Latest(latest(
        d.select("integrity_receipt"), ["leaves", "root"], ["district"])),
    ("network-health", "Chain problems per hour", "A"): lambda d: Series(
        series(d.select("device_integrity"), ["gaps", "forks", "bad_mac", "replayed"], DEVICE)),
    ("network-health", "Battery", "A"): lambda d: Series(
        per_hour(d.select("device_health"), "battery", DEVICE, min)),
    ("network-health", "WiFi signal (RSSI)", "A"): lambda d: Series(
        per_hour(d.select("device_health"), "rssi", DEVICE, min)),
    ("network-health", "Free heap", "A"): lambda d: Series(
        per_hour(d.select("device_health"), "heap_free", DEVICE, min)),
    ("network-health", "Data completeness per hour", "A"): lambda d: Series(
        series(d.select("kpi_network_hourly", "device"), ["completeness"], DEVICE)),
    ("network-health", "Data capture per day", "A"): lambda d: Series(
        series(d.select("kpi_capture_daily", "device"), ["capture"], DEVICE)),
    ("network-health", "Rejected per interval", "A"): lambda d: _counter(
        d, ["rejected_messages", "rejected_samples"], per_second=False),
    ("network-health", "Gateway throughput", "A"): lambda d: _counter(
        d, ["received", "stored_points"], per_second=True),
}


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    ref_id: str
    query: str

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.dashboard, self.panel, self.ref_id)


def committed_targets() -> list[Target]:
    out = []
    for path in sorted((REPO / "dashboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append(Target(path.stem, panel["title"], target["refId"], target["query"]))
    return out


TARGETS = committed_targets()


@pytest.fixture(scope="module")
def city(services: Services) -> Iterator[Services]:
    influx_drop_and_create(services)
    lines = [p.line() for p in dd.POINTS]
    for i in range(0, len(lines), 2000):
        influx_write(services, "\n".join(lines[i:i + 2000]))
    yield services


def _actual(raw: list[dict[str, Any]], kind: type[Expectation]) -> Expectation:
    if kind is Scalar:
        if not raw:
            return Scalar(None)
        assert len(raw) == 1 and len(raw[0]["values"]) == 1, raw
        return Scalar(raw[0]["values"][0][1])
    if kind is Latest:
        rows = {}
        for s in raw:
            assert len(s["values"]) == 1, s
            rows[tuple(sorted(s.get("tags", {}).items()))] = tuple(s["values"][0][1:])
        return Latest(rows)
    return Series({tuple(sorted(s.get("tags", {}).items())):
                   [(v[0], tuple(v[1:])) for v in s["values"]] for s in raw})


def _floats(x: Any) -> Any:
    """Numbers compared approximately (InfluxDB returns 5 for 5.0, sums in another order)."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int | float):
        return pytest.approx(float(x), rel=1e-9, abs=1e-9)
    if isinstance(x, tuple | list):
        return type(x)(_floats(i) for i in x)
    if isinstance(x, dict):
        return {k: _floats(v) for k, v in x.items()}
    raise TypeError(x)


def _run(city: Services, target: Target, selection: Mapping[str, Sequence[str]]) -> Expectation:
    used = {v: vals for v, vals in selection.items() if f"${v}" in target.query}
    query = interpolate(target.query, time_filter_sql=time_filter(dd.DAY_START, dd.DAY_END),
                        interval="1h", variables=used)
    expected = EXPECTED[target.id](Data(used))
    actual = _actual(influx_query(city, query), type(expected))
    assert actual.value == _floats(expected.value), f"{target.id}: {query}"
    return expected


def test_every_panel_query_has_an_expectation() -> None:
    assert {t.id for t in TARGETS} == set(EXPECTED)
    assert len({t.dashboard for t in TARGETS}) == 7


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: "/".join(t.id))
def test_panel_query_returns_the_known_values(city: Services, target: Target) -> None:
    expected = _run(city, target, {})
    assert expected.value not in ({}, None)  # the day's data gives every panel something


SELECTIONS: dict[str, dict[str, Sequence[str]]] = {
    "north": {"district": ["north"]},
    "site": {"site": ["Town Hall", "Bridge"]},
    "devices": {"district": ["north", "south"], "device": ["air-n1", "park-n1", "light-s1",
                                                         "water-s1", "noise-n1"]},
}


@pytest.mark.parametrize("selection", SELECTIONS, ids=str)
def test_template_variables_narrow_every_query(city: Services, selection: str) -> None:
    narrowed = 0
    for target in TARGETS:
        _run(city, target, SELECTIONS[selection])
        narrowed += any(f"${v}" in target.query for v in SELECTIONS[selection])
    assert narrowed >= 20  # most panels follow the district/site/device selection


def test_multi_value_selection_is_a_regex_alternation() -> None:
    q = 'SELECT x FROM m WHERE "device_id" =~ /^$device$/ AND $timeFilter'
    assert interpolate(q, time_filter_sql="T", variables={"device": ["a-1", "b.2"]}) == (
        'SELECT x FROM m WHERE "device_id" =~ /^(a-1|b\\.2)$/ AND T')
    assert interpolate(q, time_filter_sql="T") == (
        'SELECT x FROM m WHERE "device_id" =~ /^.*$/ AND T')


# -- alert rules ---------------------------------------------------------------------------
def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/alerting/urbanpulse-rules.yaml").read_text())
    rules: list[dict[str, Any]] = doc["groups"][0]["rules"]
    return rules


def _firing(city: Services, rule: dict[str, Any], now: int) -> dict[str, float]:
    """Evaluate a rule as Grafana does: query A over its relative range ending now, reduce
    each series to its last value (B), keep those passing the threshold (C)."""
    data = {q["refId"]: q for q in rule["data"]}
    lookback_ms = data["A"]["relativeTimeRange"]["from"] * 1000
    query = interpolate(data["A"]["model"]["query"],
                        time_filter_sql=time_filter(now - lookback_ms, now))
    evaluator = data["C"]["model"]["conditions"][0]["evaluator"]
    threshold = evaluator["params"][0]
    above = evaluator["type"] == "gt"
    out = {}
    for s in influx_query(city, query):
        value = s["values"][-1][1]
        if (value > threshold) if above else (value < threshold):
            out[s["tags"]["device_id"]] = value
    return out


def test_alert_rules_fire_for_the_boards_in_trouble(city: Services) -> None:
    rules = {r["uid"]: r for r in _rules()}
    assert set(rules) == {"urbanpulse-aqi-unhealthy", "urbanpulse-water-above",
                          "urbanpulse-board-offline", "urbanpulse-lamp-fault"}
    end = dd.DAY_END
    # air-n1's AQI reaches 155 at 23:00 (40 + 5 * 23); 150 at 22:00 is not above 150.
    assert _firing(city, rules["urbanpulse-aqi-unhealthy"], end) == {"air-n1": 155}
    assert _firing(city, rules["urbanpulse-aqi-unhealthy"], end - dd.HOUR) == {}
    # water-s1 rises 5 cm/h from 100 cm: above 200 cm from 21:00.
    assert _firing(city, rules["urbanpulse-water-above"], end) == {"water-s1": 1}
    assert _firing(city, rules["urbanpulse-water-above"], dd.DAY_START + 20 * dd.HOUR) == {}
    # park-n1 went offline at 23:30.
    assert _firing(city, rules["urbanpulse-board-offline"], end) == {"park-n1": 1}
    assert _firing(city, rules["urbanpulse-board-offline"], end - dd.HOUR) == {}
    # light-s1 was on in daylight at 12:00 and off at night at 23:00.
    assert _firing(city, rules["urbanpulse-lamp-fault"], end) == {"light-s1": 1}
    assert _firing(city, rules["urbanpulse-lamp-fault"], dd.DAY_START + 14 * dd.HOUR) == {}
    assert _firing(city, rules["urbanpulse-lamp-fault"], dd.DAY_START + 12 * dd.HOUR + 1) == {
        "light-s1": 1}
    for rule in rules.values():
        assert rule["data"][0]["datasourceUid"] == "urbanpulse-influx"
        assert rule["condition"] == "C"
    assert rules["urbanpulse-aqi-unhealthy"]["for"] == "1h"
    assert rules["urbanpulse-board-offline"]["for"] == "30m"
