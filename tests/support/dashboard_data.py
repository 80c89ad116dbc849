"""A known day of UrbanPulse data for the dashboard query tests, and plain-Python answers.

One UTC day (DAY_START .. DAY_END) for a few boards of each kind in two districts: raw
telemetry, device_info/status/health, gateway_stats and the KPI measurements of schema.md,
with values that follow simple formulas of the hour so a test can say what each query must
return. The helpers below compute those answers from the points themselves, independently of
InfluxDB.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HOUR = 3_600_000
DAY_START = 1_795_132_800_000  # 2026-11-20T00:00:00Z
DAY_END = DAY_START + 24 * HOUR - 1  # the dashboards' range: the whole day, inclusive
LOCAL_MIDNIGHT = DAY_START - HOUR  # Europe/Amsterdam midnight (UTC+1) of 2026-11-20
NEXT_LOCAL_MIDNIGHT = LOCAL_MIDNIGHT + 24 * HOUR  # of 2026-11-21: inside the range

Value = float | int | bool | str


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, Value]
    t: int

    def line(self) -> str:
        escaped = {k: v.replace(" ", "\\ ") for k, v in self.tags.items()}
        tags = "".join(f",{k}={v}" for k, v in sorted(escaped.items()))
        return f"{self.measurement}{tags} {_fields(self.fields)} {self.t}"


def _fields(fields: Mapping[str, Value]) -> str:
    def value(v: Value) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace('"', '\\"') + '"'
        if isinstance(v, int):  # integer fields, as the gateway writes counts
            return f"{v}i"
        return repr(float(v))
    return ",".join(f"{k}={value(v)}" for k, v in fields.items())


@dataclass(frozen=True)
class Board:
    device_id: str
    kind: str
    district: str
    site: str | None
    lat: float
    lon: float

    def tags(self, **extra: str) -> dict[str, str]:
        tags = {"device_id": self.device_id, "district": self.district, "kind": self.kind}
        if self.site:
            tags["site"] = self.site
        return tags | extra


BOARDS = (
    Board("air-n1", "air", "north", "Town Hall", 52.3702, 4.8952),
    Board("air-s1", "air", "south", None, 52.3501, 4.9001),
    Board("noise-n1", "noise", "north", "Market", 52.3710, 4.8960),
    Board("traffic-n1", "traffic", "north", None, 52.3720, 4.8970),
    Board("traffic-s1", "traffic", "south", None, 52.3520, 4.9020),
    Board("park-n1", "parking", "north", "Station", 52.3790, 4.9000),
    Board("light-n1", "streetlight", "north", None, 52.3730, 4.8980),
    Board("light-s1", "streetlight", "south", None, 52.3530, 4.9030),
    Board("water-s1", "water", "south", "Bridge", 52.3540, 4.9040),
)
BOARD = {b.device_id: b for b in BOARDS}
GATEWAY_RESTART_K = 80  # gateway_stats sample at which the counters start again from 0


def _hours() -> range:
    return range(24)


def aqi(device: str, h: int) -> float:
    return 40.0 + 5 * h if device == "air-n1" else 30.0 + h


def generate() -> list[Point]:
    pts: list[Point] = []
    add = pts.append
    for b in BOARDS:
        add(Point("device_info", b.tags(), {"lat": b.lat, "lon": b.lon, "interval_s": 60.0,
                                             "registered": True}, DAY_START - 24 * HOUR))
        for k in range(24 * 12):  # liveness heartbeat every 5 minutes
            t = DAY_START + k * 300_000
            offline = b.device_id == "park-n1" and t >= DAY_START + 23 * HOUR + 1_800_000
            add(Point("device_status", b.tags(), {
                "online": not offline, "state": "offline" if offline else "online",
                "reason": "timeout" if offline else "telemetry"}, t))
        for h in _hours():
            i = BOARDS.index(b)
            add(Point("device_health", b.tags(), {
                "battery": 3.9 - 0.01 * h - 0.1 * i, "rssi": -60.0 - i - h % 3,
                "heap_free": 40000.0 - 100 * h, "uptime": 3600.0 * h, "buffered": 0.0,
                "dropped": 0.0, "fw": "0.3.0" if b.device_id == "light-s1" else "0.4.0",
                "reset_cause": "power", "faults": "", "fault_count": 0.0},
                DAY_START + h * HOUR + 60_000))
            completeness = 0.5 if b.device_id == "park-n1" else 1.0
            add(Point("kpi_network_hourly", b.tags(level="device"), {
                "samples": 60 * completeness, "expected": 60.0, "completeness": completeness,
                "valid": completeness >= 0.75, "seen": True}, DAY_START + h * HOUR))
        for h in _hours():
            # Sealed telemetry: one gap for air-n1 at 05:00, two bad MACs for light-s1 at 09:00.
            add(Point("device_integrity", b.tags(), {
                "verified": 60, "gaps": int(b.device_id == "air-n1" and h == 5), "forks": 0,
                "bad_mac": 2 * int(b.device_id == "light-s1" and h == 9), "replayed": 0},
                DAY_START + h * HOUR))
        if b.device_id in ("light-n1", "light-s1"):
            # Two commands to each lamp: one carried out, one refused (it came retained).
            add(Point("device_command", b.tags(), {"id": "c-1", "ok": True},
                      DAY_START + 9 * HOUR))
            add(Point("device_command", b.tags(), {"id": "c-2", "ok": False,
                                                   "error": "retained"}, DAY_START + 10 * HOUR))
            # A firmware rollout at 11:00: light-n1 (the canary) runs it, light-s1 went back.
            rollout: list[dict[str, Value]] = [
                {"state": "fetching"}, {"state": "installed", "fw": "0.1.1"},
                       {"state": "running", "fw": "0.1.1"}]
            if b.device_id == "light-s1":
                rollout[2] = {"ok": False, "error": "rolled_back", "fw": "0.1.0"}
            for i, answer in enumerate(rollout):
                add(Point("device_command", b.tags(), {"id": "ota-0a1b2c3d", "ok": True,
                                                       **answer}, DAY_START + 11 * HOUR + i))
        add(Point("kpi_capture_daily", b.tags(level="device"), {
            "valid_hours": 0.0 if b.device_id == "park-n1" else 24.0,
            "capture": 0.0 if b.device_id == "park-n1" else 1.0,
            "good": b.device_id != "park-n1"}, NEXT_LOCAL_MIDNIGHT))
    for h in _hours():
        t = DAY_START + h * HOUR
        for d in ("north", "south"):
            devices = [b for b in BOARDS if b.district == d]
            add(Point("kpi_network_now", {"level": "district", "district": d}, {
                "registered": float(len(devices)), "online": float(len(devices)),
                "availability": 1.0 - 0.01 * h if d == "north" else 1.0}, t + 1_800_000))
        add(Point("kpi_network_now", {"level": "city", "district": "all"}, {
            "registered": 9.0, "online": 9.0, "availability": 1.0 - 0.005 * h}, t + 1_800_000))
        for d in ("north", "south"):
            add(Point("integrity_receipt", {"district": d}, {
                "leaves": 240 + h, "root": f"{d[0]}{h:02d}" + "ab" * 31, "sig": "cd" * 64}, t))
        _air(add, h, t)
        _noise(add, h, t)
        _mobility(add, h, t)
        _lighting(add, h, t)
        _water(add, h, t)
    for k in range(24 * 6):  # gateway counters every 10 minutes, restart at k = 80
        n = k if k < GATEWAY_RESTART_K else k - GATEWAY_RESTART_K
        add(Point("gateway_stats", {"gateway": "gw-1"}, {
            "received": 100.0 * n, "stored_points": 400.0 * n, "rejected_messages": float(n // 3),
            "rejected_samples": float(n // 2), "pending_points": 0.0, "mqtt_connected": True},
            DAY_START + k * 600_000))
    for b in BOARDS:  # the daily points of the day before: outside the range
        if b.kind == "noise":
            add(Point("kpi_noise_daily", b.tags(level="device"), {
                "lden": 99.0, "lday": 99.0, "levening": 99.0, "lnight": 99.0, "samples": 1.0},
                LOCAL_MIDNIGHT))
    return pts


def _air(add: Callable[[Point], None], h: int, t: int) -> None:
    for b in (BOARD["air-n1"], BOARD["air-s1"]):
        a = aqi(b.device_id, h)
        add(Point("kpi_aqi", b.tags(level="device"), {
            "pm25_24h": a / 5, "pm10_24h": a / 2, "aqi": a, "aqi_pm25": a, "aqi_pm10": a / 2,
            "dominant": "pm25", "category": "Unhealthy" if a > 150 else "Moderate",
            "hours": 24.0, "valid": True}, t))
        add(Point("kpi_aqi", {"level": "district", "district": b.district}, {"aqi": a}, t))
        pm25 = 10.0 + h if b.device_id == "air-n1" else 5.0 + h / 2
        fields: dict[str, Value] = {"pm25": pm25, "pm10": 2 * pm25, "samples": 60.0}
        if b.device_id == "air-n1":
            fields |= {"no2": 20.0 + h, "o3": 30.0 - h / 2}
        add(Point("kpi_air_hourly", b.tags(level="device"), fields, t))
        for m in range(0, 60, 20):
            add(Point("air_quality", b.tags(), {"pm25": pm25 + m / 10}, t + m * 60_000))


def _noise(add: Callable[[Point], None], h: int, t: int) -> None:
    b = BOARD["noise-n1"]
    laeq = 50.0 + h % 6
    add(Point("kpi_noise_hourly", b.tags(level="device"), {
        "laeq": laeq, "lamax": laeq + 15, "lamin": laeq - 10, "samples": 60.0}, t))
    if h == 23:
        add(Point("kpi_noise_daily", b.tags(level="device"), {
            "lden": 58.5, "lday": 55.0, "levening": 52.0, "lnight": 47.0, "samples": 1440.0},
            NEXT_LOCAL_MIDNIGHT))


def _mobility(add: Callable[[Point], None], h: int, t: int) -> None:
    flows = {"traffic-n1": 100.0 + 10 * h, "traffic-s1": 50.0 + h}
    for device, flow in flows.items():
        b = BOARD[device]
        add(Point("kpi_traffic_hourly", b.tags(level="device"),
                  {"vehicles": flow, "flow_vph": flow}, t))
        add(Point("kpi_traffic_hourly", {"level": "district", "district": b.district},
                  {"vehicles": flow, "flow_vph": flow}, t))
        add(Point("traffic", b.tags(), {"vehicles": flow / 2, "period_s": 1800.0,
                                        "speed_avg": 30.0 + h}, t + 600_000))
        add(Point("traffic", b.tags(), {"vehicles": flow / 2, "period_s": 1800.0,
                                        "speed_avg": 40.0 + h}, t + 2_400_000))
        if h == 23:
            for level, tags in (("district", {"district": b.district}), ("device", b.tags())):
                add(Point("kpi_traffic_daily", tags | {"level": level},
                          {"vehicles": 1000.0 + flow}, NEXT_LOCAL_MIDNIGHT))
    p = BOARD["park-n1"]
    add(Point("kpi_parking_hourly", {"level": "district", "district": "north"},
              {"occupancy": h / 24, "bays": 10.0}, t))
    free = 10.0 - h % 5
    for level, tags in (("site", {"district": "north", "site": "Station"}),
                        ("district", {"district": "north"})):
        add(Point("kpi_parking_now", tags | {"level": level}, {
            "occupied": 10.0 - free, "free": free, "reporting": 10.0,
            "occupancy": (10.0 - free) / 10}, t + 1_800_000))
    add(Point("parking", p.tags(), {"occupied": h % 2 == 0}, t))


def _lighting(add: Callable[[Point], None], h: int, t: int) -> None:
    for b in (BOARD["light-n1"], BOARD["light-s1"]):
        night = h < 7 or h >= 17
        fault = b.device_id == "light-s1" and h in (12, 23)
        add(Point("kpi_streetlight_hourly", b.tags(level="device"), {
            "energy_wh": 60.0 if night else 0.0, "burning_h": 1.0 if night else 0.0,
            "day_on_h": 1.0 if fault and not night else 0.0,
            "night_off_h": 1.0 if fault and night else 0.0, "fault": fault}, t))
        add(Point("streetlight", b.tags(), {"lamp_on": night, "power": 60.0 if night else 0.0},
                  t + 900_000))
        if h == 23:
            add(Point("kpi_streetlight_daily", b.tags(level="device"), {
                "energy_wh": 840.0, "burning_h": 14.0, "day_on_h": 0.0, "night_off_h": 0.0,
                "fault": b.device_id == "light-s1"}, NEXT_LOCAL_MIDNIGHT))
            add(Point("kpi_streetlight_daily", {"level": "district", "district": b.district},
                      {"faults": 1.0 if b.district == "south" else 0.0}, NEXT_LOCAL_MIDNIGHT))


def water_level(h: int) -> float:
    return 100.0 + 5 * h


def _water(add: Callable[[Point], None], h: int, t: int) -> None:
    b = BOARD["water-s1"]
    level = water_level(h)
    add(Point("kpi_water", b.tags(level="device"), {
        "water_level": level, "level_max": level + 1, "rise_cm_h": 5.0, "threshold_cm": 200.0,
        "above": level > 200}, t))
    add(Point("water", b.tags(), {"water_level": level - 2}, t + 600_000))
    add(Point("water", b.tags(), {"water_level": level + 1}, t + 1_200_000))
    if h == 20:
        add(Point("kpi_water_crossing", b.tags(level="device"), {
            "direction": "up", "water_level": 201.0, "threshold_cm": 200.0}, t + 1_000_000))


# -- answers -------------------------------------------------------------------------------
Series = dict[tuple[tuple[str, str], ...], list[tuple[int, tuple[Any, ...]]]]


VARIABLE_TAGS = {"district": "district", "site": "site", "device": "device_id"}
POINTS = generate()


@dataclass
class Data:
    """The fixture points as a dashboard with these variable selections sees them
    (a variable missing from `selection` is "All")."""

    selection: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def _selected(self, p: Point) -> bool:
        return all(p.tags.get(VARIABLE_TAGS[v], "") in values
                   for v, values in self.selection.items())

    def select(self, measurement: str, level: str | None = None, t0: int = DAY_START,
               t1: int = DAY_END, where: Callable[[Point], bool] = lambda p: True,
               ) -> list[Point]:
        return sorted((p for p in POINTS if p.measurement == measurement
                       and (level is None or p.tags.get("level") == level)
                       and t0 <= p.t <= t1 and where(p) and self._selected(p)),
                      key=lambda p: p.t)


def key(p: Point, by: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """A series' identity as InfluxDB reports it: the GROUP BY tags, "" where missing."""
    return tuple(sorted((k, p.tags.get(k, "")) for k in by))


def series(pts: Iterable[Point], fields: Sequence[str], by: Sequence[str]) -> Series:
    """The points' values, one series per `by` combination (rows without any field skipped)."""
    out: Series = defaultdict(list)
    for p in pts:
        if any(f in p.fields for f in fields):
            out[key(p, by)].append((p.t, tuple(p.fields.get(f) for f in fields)))
    return dict(out)


def latest(pts: Iterable[Point], fields: Sequence[str], by: Sequence[str],
           ) -> dict[tuple[tuple[str, str], ...], tuple[Any, ...]]:
    """last(field) for each field, per `by` combination."""
    out: dict[tuple[tuple[str, str], ...], dict[str, Any]] = defaultdict(dict)
    for p in pts:  # time order: later points overwrite
        for f in fields:
            if f in p.fields:
                out[key(p, by)][f] = p.fields[f]
    return {k: tuple(v.get(f) for f in fields) for k, v in out.items()}


def per_hour(pts: Iterable[Point], fieldname: str, by: Sequence[str],
             agg: Callable[[list[float]], float]) -> Series:
    buckets: dict[tuple[tuple[tuple[str, str], ...], int], list[float]] = defaultdict(list)
    for p in pts:
        if fieldname in p.fields:
            v = p.fields[fieldname]
            assert isinstance(v, float)
            buckets[(key(p, by), p.t - p.t % HOUR)].append(v)
    out: Series = defaultdict(list)
    for (k, t), values in sorted(buckets.items(), key=lambda kv: kv[0][1]):
        out[k].append((t, (agg(values),)))
    return dict(out)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
