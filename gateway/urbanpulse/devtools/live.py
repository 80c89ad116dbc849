"""The demo's live view: what the city looks like right now, from InfluxDB queries.

``collect`` runs the queries and returns plain numbers (tested against a real InfluxDB with
known data); ``render`` turns them into a rich table.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Group
from rich.table import Table
from rich.text import Text

from urbanpulse.contract.vocabulary import GATEWAY_STATS_MEASUREMENT, KIND_MEASUREMENTS
from urbanpulse.dashboards.headline import HEADLINES
from urbanpulse.dashboards.interpolation import interpolate
from urbanpulse.kpi.noise import energetic_mean as energetic_mean  # Leq; re-exported


class Queryable(Protocol):
    def query(self, q: str) -> list[dict[str, Any]]: ...


@dataclass
class DistrictView:
    online: int = 0
    pm25: float | None = None  # mean of the boards' latest readings, ug/m3
    laeq: float | None = None  # energetic mean over the window, dB(A)
    flow_vph: float | None = None  # vehicles per hour over the window
    parking_occupied: int = 0
    parking_reporting: int = 0
    lamps_on: int = 0
    lamps_reporting: int = 0
    water_level_cm: float | None = None  # highest latest level
    soil_moisture: float | None = None


@dataclass
class Snapshot:
    districts: dict[str, DistrictView] = field(default_factory=dict)
    devices_online: int = 0
    messages_per_s: float | None = None
    points_per_s: float | None = None
    rejected_total: int | None = None
    # The City overview dashboard's headline KPIs (same queries), by Headline.key.
    headline: dict[str, float | None] = field(default_factory=dict)


def _rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in series:
        for values in s["values"]:
            row = dict(zip(s["columns"], values, strict=True))
            row.update(s.get("tags", {}))
            out.append(row)
    return out


def collect_headline(db: Queryable, window_s: int) -> dict[str, float | None]:
    """The overview's headline queries over the last window_s seconds (KPI points are
    hourly, stamped at the hour's start: a window of a few hours sees the latest)."""
    out: dict[str, float | None] = {}
    for h in HEADLINES:
        query = interpolate(h.query, time_filter_sql=f"time > now() - {window_s}s")
        rows = _rows(db.query(query))
        # One row, one column besides time (max, last, sum or count).
        value = next((v for k, v in rows[0].items() if k != "time"), None) if rows else None
        out[h.key] = None if value is None else float(value)
    return out


def collect(db: Queryable, window_s: int = 60, kpi_window_s: int = 3 * 3600) -> Snapshot:
    snap = Snapshot()
    districts: dict[str, DistrictView] = defaultdict(DistrictView)
    since = f"time > now() - {window_s}s"

    measurements = ", ".join(m for ms in KIND_MEASUREMENTS.values() for m in ms)
    online = _rows(db.query(
        f"SELECT count(*) FROM {measurements} WHERE {since} GROUP BY device_id, district"
    ))
    devices = {(r["device_id"], r["district"]) for r in online}
    for _, district in devices:
        districts[district].online += 1
    snap.devices_online = len(devices)

    latest_pm = _rows(db.query(
        f"SELECT last(pm25) FROM air_quality WHERE {since} GROUP BY device_id, district"))
    by_district: dict[str, list[float]] = defaultdict(list)
    for r in latest_pm:
        by_district[r["district"]].append(r["last"])
    for district, values in by_district.items():
        districts[district].pm25 = sum(values) / len(values)

    noise = _rows(db.query(f"SELECT laeq FROM noise WHERE {since} GROUP BY district"))
    levels: dict[str, list[float]] = defaultdict(list)
    for r in noise:
        levels[r["district"]].append(r["laeq"])
    for district, values in levels.items():
        districts[district].laeq = energetic_mean(values)

    for r in _rows(db.query(
        f"SELECT sum(vehicles) AS v, sum(period_s) AS p FROM traffic WHERE {since} "
        "GROUP BY district"
    )):
        if r["p"]:
            districts[r["district"]].flow_vph = r["v"] * 3600 / r["p"]

    for r in _rows(db.query(
        f"SELECT last(occupied) FROM parking WHERE {since} GROUP BY device_id, district"
    )):
        view = districts[r["district"]]
        view.parking_reporting += 1
        view.parking_occupied += bool(r["last"])

    for r in _rows(db.query(
        f"SELECT last(lamp_on) FROM streetlight WHERE {since} GROUP BY device_id, district"
    )):
        view = districts[r["district"]]
        view.lamps_reporting += 1
        view.lamps_on += bool(r["last"])

    for r in _rows(db.query(
        f"SELECT last(water_level) FROM water WHERE {since} GROUP BY device_id, district"
    )):
        view = districts[r["district"]]
        level = float(r["last"])
        view.water_level_cm = level if view.water_level_cm is None else max(
            view.water_level_cm, level)

    for r in _rows(db.query(
        f"SELECT mean(soil_moisture) FROM soil WHERE {since} GROUP BY district"
    )):
        districts[r["district"]].soil_moisture = r["mean"]

    stats = _rows(db.query(
        f"SELECT sum(received) AS received, sum(stored_points) AS stored, "
        f"sum(rejected_messages) AS rejected FROM {GATEWAY_STATS_MEASUREMENT} "
        f"WHERE {since} GROUP BY time(1ms) fill(none) ORDER BY time DESC LIMIT 2"
    ))
    if len(stats) == 2:
        newer, older = stats
        seconds = (newer["time"] - older["time"]) / 1000
        if seconds > 0:
            snap.messages_per_s = max(0.0, (newer["received"] - older["received"]) / seconds)
            snap.points_per_s = max(0.0, (newer["stored"] - older["stored"]) / seconds)
    if stats:
        snap.rejected_total = int(stats[0]["rejected"])
    snap.districts = dict(sorted(districts.items()))
    snap.headline = collect_headline(db, kpi_window_s)
    return snap


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _headline_text(snap: Snapshot) -> Text:
    h = snap.headline

    def num(key: str, fmt: str = "{:.0f}") -> str:
        value = h.get(key)
        return "-" if value is None else fmt.format(value)

    # Counts with no matching board come back as "no data": zero faults, zero rivers.
    def count(key: str) -> str:
        return num(key) if h.get(key) is not None else "0"

    return Text(
        f"city AQI: {num('city_aqi')}   boards online: {num('online_ratio', '{:.0%}')}   "
        f"parking free: {num('parking_free')}   traffic: {num('traffic_flow_vph')} veh/h   "
        f"lamps faulty: {count('lamps_faulty')}   rivers above threshold: "
        f"{count('rivers_above')}"
    )


def render(snap: Snapshot, title: str = "UrbanPulse live") -> Group:
    table = Table(title=title, expand=True)
    for column in ("district", "online", "PM2.5 ug/m3", "LAeq dB(A)", "flow veh/h",
                   "parking", "lamps on", "water cm", "soil %"):
        table.add_column(column, justify="right" if column != "district" else "left")
    for name, d in snap.districts.items():
        table.add_row(
            name,
            str(d.online),
            _fmt(d.pm25),
            _fmt(d.laeq),
            _fmt(d.flow_vph, 0),
            f"{d.parking_occupied}/{d.parking_reporting}" if d.parking_reporting else "-",
            f"{d.lamps_on}/{d.lamps_reporting}" if d.lamps_reporting else "-",
            _fmt(d.water_level_cm),
            _fmt(d.soil_moisture),
        )
    footer = Text(
        f"devices online: {snap.devices_online}   "
        f"messages/s: {_fmt(snap.messages_per_s)}   points/s: {_fmt(snap.points_per_s)}   "
        f"rejected: {snap.rejected_total if snap.rejected_total is not None else '-'}"
    )
    return Group(_headline_text(snap), table, footer)
