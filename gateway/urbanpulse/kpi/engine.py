"""The KPI engine: stored telemetry in, ``kpi_*`` measurements out (README "KPIs").

A run recomputes every hourly window that overlaps the last ``[kpi] lookback_h`` hours, the
hours marked dirty by late data (``note_samples``), and the local days those hours touch.
Points are written with the same series and timestamp each time, so a recomputed window
replaces the old values. Queries go per measurement and time span with ``GROUP BY
device_id`` (never per device), so a run costs a few queries whatever the fleet's size.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from urbanpulse.config import KpiSettings, Settings
from urbanpulse.contract.lineprotocol import FieldValue, encode_point
from urbanpulse.contract.vocabulary import DEVICE_HEALTH_MEASUREMENT, KIND_MEASUREMENTS
from urbanpulse.influx.writer import PointWriter, V1Writer, WriteError, make_writer
from urbanpulse.registry.devices import Device, Registry

from . import aqi as aqi_
from . import network, parking, streetlight, traffic, water
from .noise import DayPeriods, energetic_mean, noise_day
from .windows import (
    HOUR_MS,
    Window,
    hour_start,
    hour_window,
    hours_between,
    local_day_window,
    local_days_touching,
    spans,
)

log = logging.getLogger("urbanpulse.kpi")

AIR_FIELDS = ("pm1", "pm25", "pm10", "no2", "o3", "co2", "temperature", "humidity", "pressure")
AQI_HOURS = 24
AQI_VALID_HOURS = 18
# Late data older than this is not recomputed (a board with a wrong clock must not make
# every run recompute years).
MAX_DIRTY_AGE_MS = 31 * 24 * HOUR_MS
# The gateway notes late samples when it receives them, and stores them up to a batch delay
# (or a retry) later: a mark this recent is also kept for the next run, which then sees them.
SETTLE_S = 10.0
WRITE_CHUNK = 5000

Tags = dict[str, str]
_Row = TypeVar("_Row", bound=Sequence[Any])
Fields = dict[str, FieldValue]


class Reader(Protocol):
    def query(self, q: str) -> list[dict[str, Any]]: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _time_range(start: int, end: int) -> str:
    return f"time >= {start}ms AND time < {end}ms"


def _clean(fields: Mapping[str, FieldValue | None]) -> Fields:
    """Drop missing values; numbers as floats (the schema's rule), bools and strings kept."""
    out: Fields = {}
    for key, value in fields.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, bool | str) else float(value)
    return out


@dataclass(frozen=True)
class RunReport:
    hours: int
    days: int
    points: int
    seconds: float


class KpiEngine:
    def __init__(
        self,
        settings: Settings,
        registry: Callable[[], Registry],
        *,
        reader: Reader | None = None,
        writer: PointWriter | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings: KpiSettings = settings.kpi
        # One notion of "online" for liveness and the KPIs.
        self.timeout_factor = settings.liveness.timeout_factor
        self.tz = ZoneInfo(self.settings.timezone)
        self.periods = DayPeriods(
            self.settings.day_start_h, self.settings.evening_start_h, self.settings.night_start_h
        )
        self._registry = registry
        # Queries use the 1.x /query API, which InfluxDB 2/3 also serve (DBRP mapping).
        self._owned: list[PointWriter] = []  # connections opened here, closed by close()
        if reader is None:
            own_reader = V1Writer(settings.influx)
            self._owned.append(own_reader)
            reader = own_reader
        if writer is None:
            writer = make_writer(settings.influx)
            self._owned.append(writer)
        self._reader: Reader = reader
        self._writer: PointWriter = writer
        self._clock = clock
        self._dirty: dict[int, float] = {}  # hour start -> when last noted (monotonic)
        self.settle_s = SETTLE_S
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connections the engine opened itself (not ones it was given)."""
        for own in self._owned:
            own.close()
        self._owned.clear()

    # -- late data ---------------------------------------------------------------------------
    def note_samples(self, device_id: str, t_ms_min: int, t_ms_max: int) -> None:
        """Mark the hours holding samples [t_ms_min, t_ms_max] for recomputing; cheap and
        thread-safe (the gateway calls it from its message path)."""
        last = hour_start(max(t_ms_min, t_ms_max))
        first = max(hour_start(min(t_ms_min, t_ms_max)), last - MAX_DIRTY_AGE_MS)
        with self._lock:
            noted = time.monotonic()
            for h in range(first, last + HOUR_MS, HOUR_MS):
                self._dirty[h] = noted

    @property
    def dirty_hours(self) -> int:
        with self._lock:
            return len(self._dirty)

    # -- a run -------------------------------------------------------------------------------
    def run(self, now: int | None = None, keep_dirty: bool = False) -> RunReport:
        """One run. ``keep_dirty``: late samples noted at receipt may not be stored yet (the
        gateway's spool holds points): compute their windows, and again at the next run."""
        started = time.monotonic()
        now = self._clock() if now is None else now
        current = hour_start(now)
        hours = set(hours_between(now - self.settings.lookback_h * HOUR_MS, now + 1))
        with self._lock:
            dirty = self._dirty
            if keep_dirty:
                self._dirty = dict(dirty)
            else:
                settled_before = time.monotonic() - self.settle_s
                self._dirty = {h: t for h, t in dirty.items() if t > settled_before}
        hours |= {h for h in dirty if now - MAX_DIRTY_AGE_MS <= h <= current}
        # The AQI of an hour averages the 24 hours up to it: late data moves 24 AQI values.
        aqi_hours = {h + k * HOUR_MS for h in hours for k in range(AQI_HOURS)} - hours
        aqi_hours = {h for h in aqi_hours if h <= current}
        try:
            days = local_days_touching(hours, self.tz)
            lines, deletes = self.compute(sorted(hours), days, now, sorted(aqi_hours))
            for q in deletes:
                try:
                    self._reader.query(q)
                except WriteError as exc:
                    if exc.retryable:
                        raise
                    # InfluxDB 2/3's 1.x API reads only: old crossing events may then stay.
                    log.warning("could not replace old kpi_water_crossing points: %s", exc)
            for i in range(0, len(lines), WRITE_CHUNK):
                self._writer.write(lines[i : i + WRITE_CHUNK])
        except Exception:
            with self._lock:
                for h, noted in dirty.items():  # try these windows again next run
                    self._dirty[h] = max(noted, self._dirty.get(h, noted))
            raise
        report = RunReport(len(hours), len(days), len(lines), time.monotonic() - started)
        log.info(
            "kpi run: %d hours, %d days, %d points in %.2f s",
            report.hours,
            report.days,
            report.points,
            report.seconds,
        )
        return report

    def compute(
        self, hours: Sequence[int], days: Sequence[date], now: int,
        aqi_hours: Sequence[int] = (),
    ) -> tuple[list[str], list[str]]:
        """Line-protocol points for the given hours and local days (and the AQI alone for
        ``aqi_hours``), and the DELETE statements to run before writing them (event points
        of recomputed windows)."""
        ctx = _Context(
            self.settings, self._registry(), now, self._reader, self.tz, self.timeout_factor
        )
        for span in spans(aqi_hours):
            ctx.air_hourly(span, aqi_only=True)
        for span in spans(hours):
            ctx.air_hourly(span)
            ctx.noise_hourly(span)
            ctx.parking_hourly(span)
            ctx.traffic_hourly(span)
            ctx.streetlight_window(span, hourly=True)
            ctx.water_hourly(span)
            ctx.network_hourly(span)
        for day in days:
            window = local_day_window(day, self.tz)
            ctx.noise_daily(day, self.periods)
            ctx.traffic_daily(window)
            ctx.streetlight_window(window, hourly=False)
            ctx.capture_daily(window)
        ctx.parking_now()
        ctx.network_now()
        return ctx.lines, ctx.deletes


def _level(level: str, district: str, site: str | None = None) -> Tags:
    tags = {"level": level, "district": district}
    if site:
        tags["site"] = site
    return tags


class _Context:
    """One run: the registry, the clock, the points produced."""

    def __init__(
        self,
        settings: KpiSettings,
        registry: Registry,
        now: int,
        reader: Reader,
        tz: ZoneInfo,
        timeout_factor: float,
    ) -> None:
        self.s = settings
        self.timeout_factor = timeout_factor
        self.now = now
        self.reader = reader
        self.tz = tz
        self.lines: list[str] = []
        self.deletes: list[str] = []
        self.devices: dict[str, Device] = {d.device_id: d for d in registry.devices}
        self.by_kind: dict[str, list[Device]] = defaultdict(list)
        for d in registry.devices:
            self.by_kind[d.kind].append(d)

    # -- helpers -----------------------------------------------------------------------------
    def emit(self, measurement: str, tags: Tags, fields: Mapping[str, FieldValue | None],
             t: int) -> None:
        clean = _clean(fields)
        if clean:
            self.lines.append(encode_point(measurement, tags, clean, t))

    def device_tags(self, d: Device) -> Tags:
        return {"level": "device", **d.tags}

    def hold_ms(self, d: Device) -> int:
        return int(self.timeout_factor * d.interval_s * 1000)

    def carry_ms(self, kind: str) -> int:
        return max((self.hold_ms(d) for d in self.by_kind[kind]), default=0)

    def raw(
        self, measurement: str, fields: Sequence[str], start: int, end: int
    ) -> dict[str, list[list[Any]]]:
        """Rows [t, *fields] per registered device, sorted by time."""
        cols = ", ".join(f'"{f}"' for f in fields)
        q = (f'SELECT {cols} FROM "{measurement}" WHERE {_time_range(start, end)} '
             "GROUP BY device_id")
        out: dict[str, list[list[Any]]] = {}
        for series in self.reader.query(q):
            device_id = series.get("tags", {}).get("device_id", "")
            if device_id in self.devices:
                out[device_id] = series["values"]
        return out

    def hourly_aggregate(
        self, select: str, measurement: str, start: int, end: int
    ) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        """Server-side GROUP BY time(1h), device_id: per device, (hour start, {col: value})."""
        q = (f'SELECT {select} FROM "{measurement}" WHERE {_time_range(start, end)} '
             "GROUP BY time(1h), device_id fill(none)")
        out: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for series in self.reader.query(q):
            device_id = series.get("tags", {}).get("device_id", "")
            if device_id not in self.devices:
                continue
            cols = series["columns"]
            out[device_id] = [(int(row[0]), dict(zip(cols[1:], row[1:], strict=True)))
                              for row in series["values"]]
        return out

    def sites(self, device_ids: Iterable[str]) -> dict[tuple[str, str], list[str]]:
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for device_id in device_ids:
            d = self.devices[device_id]
            if d.site:
                groups[(d.district, d.site)].append(device_id)
        return groups

    def districts(self, device_ids: Iterable[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for device_id in device_ids:
            groups[self.devices[device_id].district].append(device_id)
        return groups

    def groups(self, device_ids: Iterable[str]) -> list[tuple[Tags, list[str]]]:
        """(tags, device ids) for every site and district of ``device_ids``."""
        ids = list(device_ids)
        out = [(_level("site", district, site), members)
               for (district, site), members in self.sites(ids).items()]
        out += [(_level("district", district), members)
                for district, members in self.districts(ids).items()]
        return out

    def effective(self, window: Window) -> Window:
        """The part of ``window`` that has happened (states are not extrapolated)."""
        return Window(window.start, min(window.end, max(window.start, self.now)))

    # -- air ---------------------------------------------------------------------------------
    def air_hourly(self, span: Window, *, aqi_only: bool = False) -> None:
        means_sel = ", ".join(f'mean("{f}") AS "{f}"' for f in AIR_FIELDS)
        aqi_start = span.start - (AQI_HOURS - 1) * HOUR_MS
        means = self.hourly_aggregate(means_sel, "air_quality", aqi_start, span.end)
        counts = ({} if aqi_only else
                  self.hourly_aggregate("count(*)", "air_quality", span.start, span.end))
        hours = range(span.start, span.end, HOUR_MS)
        by_hour: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for device_id, rows in means.items():
            for t, values in rows:
                by_hour[t][device_id] = values
        samples: dict[tuple[int, str], int] = {}
        for device_id, rows in counts.items():
            for t, values in rows:
                samples[(t, device_id)] = int(max((v or 0) for v in values.values()))
        for h in hours:
            self.aqi_hour(h, by_hour)
            if aqi_only:
                continue
            current = by_hour.get(h, {})
            for device_id, values in current.items():
                fields: dict[str, FieldValue | None] = {f: values.get(f) for f in AIR_FIELDS}
                fields["samples"] = samples.get((h, device_id), 0)
                self.emit("kpi_air_hourly", self.device_tags(self.devices[device_id]), fields, h)
            for tags, members in self.groups(current):
                agg: dict[str, FieldValue | None] = {}
                for f in AIR_FIELDS:
                    vals = [current[m][f] for m in members if current[m].get(f) is not None]
                    agg[f] = sum(vals) / len(vals) if vals else None
                agg["samples"] = sum(samples.get((h, m), 0) for m in members)
                self.emit("kpi_air_hourly", tags, agg, h)

    def aqi_hour(self, h: int, by_hour: Mapping[int, Mapping[str, Mapping[str, Any]]]) -> None:
        """AQI for hour ``h`` from the 24 hourly means of the window ending with ``h``."""
        series: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for k in range(AQI_HOURS):
            for device_id, values in by_hour.get(h - k * HOUR_MS, {}).items():
                for f in ("pm25", "pm10"):
                    if values.get(f) is not None:
                        series[device_id][f].append(values[f])
                if values.get("pm25") is not None or values.get("pm10") is not None:
                    series[device_id]["hours"].append(1.0)
        results: dict[str, tuple[aqi_.Aqi, Fields]] = {}
        for device_id, data in series.items():
            pm25 = sum(data["pm25"]) / len(data["pm25"]) if data["pm25"] else None
            pm10 = sum(data["pm10"]) / len(data["pm10"]) if data["pm10"] else None
            result = aqi_.aqi(pm25, pm10)
            if result is None:
                continue
            n = len(data["hours"])
            fields = _clean({
                "pm25_24h": pm25, "pm10_24h": pm10, "aqi": result.aqi,
                "aqi_pm25": result.aqi_pm25, "aqi_pm10": result.aqi_pm10,
                "dominant": result.dominant, "category": result.category,
                "hours": n, "valid": n >= AQI_VALID_HOURS,
            })
            results[device_id] = (result, fields)
            self.emit("kpi_aqi", self.device_tags(self.devices[device_id]), fields, h)
        for tags, members in self.groups(results):
            self.emit("kpi_aqi", tags, _max_aqi([results[m] for m in members]), h)

    # -- noise -------------------------------------------------------------------------------
    def noise_hourly(self, span: Window) -> None:
        rows = self.raw("noise", ("laeq", "lamax", "lamin"), span.start, span.end)
        for h in range(span.start, span.end, HOUR_MS):
            per_device: dict[str, Fields] = {}
            for device_id, values in rows.items():
                inside = _between(values, h, h + HOUR_MS)
                if not inside:
                    continue
                fields = _noise_fields(inside)
                per_device[device_id] = fields
                self.emit("kpi_noise_hourly", self.device_tags(self.devices[device_id]),
                          fields, h)
            for (district, site), members in self.sites(per_device).items():
                laeqs = [float(per_device[m]["laeq"]) for m in members if "laeq" in per_device[m]]
                maxs = [float(per_device[m]["lamax"]) for m in members if "lamax" in per_device[m]]
                mins = [float(per_device[m]["lamin"]) for m in members if "lamin" in per_device[m]]
                self.emit("kpi_noise_hourly", _level("site", district, site), {
                    "laeq": energetic_mean(laeqs),
                    "lamax": max(maxs) if maxs else None,
                    "lamin": min(mins) if mins else None,
                    "samples": sum(float(per_device[m]["samples"]) for m in members),
                }, h)

    def noise_daily(self, day: date, periods: DayPeriods) -> None:
        window = local_day_window(day, self.tz)
        rows = self.raw("noise", ("laeq",), window.start, window.end)
        for device_id, values in rows.items():
            samples = [(int(r[0]), float(r[1])) for r in values if r[1] is not None]
            if not samples:
                continue
            result = noise_day(samples, day, self.tz, periods)
            self.emit("kpi_noise_daily", self.device_tags(self.devices[device_id]), {
                "lden": result.lden, "lday": result.lday, "levening": result.levening,
                "lnight": result.lnight, "samples": result.samples,
            }, window.start)

    # -- parking -----------------------------------------------------------------------------
    def parking_hourly(self, span: Window) -> None:
        carry = self.carry_ms("parking")
        rows = self.raw("parking", ("occupied",), span.start - carry, span.end)
        states = {d: [(int(r[0]), bool(r[1])) for r in v if r[1] is not None]
                  for d, v in rows.items()}
        for h in range(span.start, span.end, HOUR_MS):
            window = self.effective(hour_window(h))
            if window.end <= window.start:
                continue
            bays: dict[str, parking.BayTime] = {}
            for device_id, samples in states.items():
                bay = parking.bay_time(samples, window, self.hold_ms(self.devices[device_id]))
                if bay.known_ms > 0:
                    bays[device_id] = bay
                    self.emit("kpi_parking_hourly", self.device_tags(self.devices[device_id]),
                              {"occupancy": parking.occupancy([bay]), "bays": 1}, h)
            for tags, members in self.groups(bays):
                self.emit("kpi_parking_hourly", tags, {
                    "occupancy": parking.occupancy(bays[m] for m in members),
                    "bays": len(members),
                }, h)

    def parking_now(self) -> None:
        carry = self.carry_ms("parking")
        if not carry:
            return
        rows = self.raw("parking", ("occupied",), self.now - carry, self.now + 1)
        occupied: dict[str, bool] = {}
        for device_id, values in rows.items():
            since = self.now - self.hold_ms(self.devices[device_id])
            fresh = [r for r in values if r[1] is not None and r[0] >= since]
            if fresh:
                occupied[device_id] = bool(fresh[-1][1])
        for tags, members in self.groups(occupied):
            taken = sum(occupied[m] for m in members)
            self.emit("kpi_parking_now", tags, {
                "occupied": taken, "free": len(members) - taken, "reporting": len(members),
                "occupancy": taken / len(members),
            }, self.now)

    # -- traffic -----------------------------------------------------------------------------
    def traffic_hourly(self, span: Window) -> None:
        rows = self.raw("traffic", ("vehicles", "period_s"), span.start, span.end)
        for h in range(span.start, span.end, HOUR_MS):
            flows: dict[str, traffic.Flow] = {}
            for device_id, values in rows.items():
                default_period = self.devices[device_id].interval_s
                counts = [(float(r[1]), float(r[2]) if r[2] is not None else default_period)
                          for r in _between(values, h, h + HOUR_MS) if r[1] is not None]
                if counts:
                    flows[device_id] = result = traffic.flow(counts)
                    self.emit("kpi_traffic_hourly", self.device_tags(self.devices[device_id]),
                              {"vehicles": result.vehicles, "flow_vph": result.flow_vph}, h)
            for tags, members in self.groups(flows):
                vph = [flows[m].flow_vph for m in members if flows[m].flow_vph is not None]
                self.emit("kpi_traffic_hourly", tags, {
                    "vehicles": sum(flows[m].vehicles for m in members),
                    # The flow through a site is the sum of its counters' flows.
                    "flow_vph": sum(v for v in vph if v is not None) if vph else None,
                }, h)

    def traffic_daily(self, window: Window) -> None:
        q = (f'SELECT sum("vehicles") AS vehicles FROM "traffic" WHERE '
             f"{_time_range(window.start, window.end)} GROUP BY device_id")
        totals: dict[str, float] = {}
        for series in self.reader.query(q):
            device_id = series.get("tags", {}).get("device_id", "")
            if device_id in self.devices and series["values"][0][1] is not None:
                totals[device_id] = float(series["values"][0][1])
                self.emit("kpi_traffic_daily", self.device_tags(self.devices[device_id]),
                          {"vehicles": totals[device_id]}, window.start)
        for tags, members in self.groups(totals):
            self.emit("kpi_traffic_daily", tags,
                      {"vehicles": sum(totals[m] for m in members)}, window.start)

    # -- street lighting ---------------------------------------------------------------------
    def streetlight_window(self, span: Window, *, hourly: bool) -> None:
        carry = self.carry_ms("streetlight")
        rows = self.raw("streetlight", ("lamp_on", "energy"), span.start - carry, span.end)
        windows = ([hour_window(h) for h in range(span.start, span.end, HOUR_MS)]
                   if hourly else [span])
        measurement = "kpi_streetlight_hourly" if hourly else "kpi_streetlight_daily"
        for window in windows:
            lamps: dict[str, streetlight.LampWindow] = {}
            effective = self.effective(window)
            for device_id, values in rows.items():
                d = self.devices[device_id]
                # The window's samples and those before it that can still carry in.
                upto = _between(values, window.start - self.hold_ms(d), window.end)
                if not any(r[0] >= window.start for r in upto):
                    continue  # nothing reported in this window
                lamp = streetlight.lamp_window(
                    [(int(r[0]), bool(r[1])) for r in upto if r[1] is not None],
                    [(int(r[0]), float(r[2])) for r in upto if r[2] is not None],
                    effective,
                    lat=d.lat if d.lat is not None else self.s.latitude,
                    lon=d.lon if d.lon is not None else self.s.longitude,
                    hold_ms=self.hold_ms(d),
                    margin_ms=int(self.s.twilight_margin_min * 60_000),
                    fault_min_h=self.s.fault_min_h,
                )
                lamps[device_id] = lamp
                self.emit(measurement, self.device_tags(d), {
                    "energy_wh": lamp.energy_wh, "burning_h": lamp.burning_h,
                    "day_on_h": lamp.day_on_h, "night_off_h": lamp.night_off_h,
                    "fault": lamp.fault,
                }, window.start)
            if hourly:
                continue
            for district, members in self.districts(lamps).items():
                ls = [lamps[m] for m in members]
                self.emit(measurement, _level("district", district), {
                    "energy_wh": sum(x.energy_wh for x in ls),
                    "burning_h": sum(x.burning_h for x in ls),
                    "day_on_h": sum(x.day_on_h for x in ls),
                    "night_off_h": sum(x.night_off_h for x in ls),
                    "faults": sum(x.fault for x in ls),
                }, window.start)

    # -- water -------------------------------------------------------------------------------
    def water_hourly(self, span: Window) -> None:
        carry = self.carry_ms("water")
        rows = self.raw("water", ("water_level",), span.start - carry, span.end)
        # Crossing events of the recomputed span are replaced, not added to.
        self.deletes.append(
            f'DELETE FROM "kpi_water_crossing" WHERE {_time_range(span.start, span.end)}'
        )
        for device_id, values in rows.items():
            d = self.devices[device_id]
            levels = [(int(r[0]), float(r[1])) for r in values if r[1] is not None]
            threshold = d.threshold_cm
            for h in range(span.start, span.end, HOUR_MS):
                inside = _between(levels, h, h + HOUR_MS)
                result = water.water_window(inside)
                if result is None:
                    continue
                fields: dict[str, FieldValue | None] = {
                    "water_level": result.level, "level_max": result.level_max,
                    "rise_cm_h": result.rise_cm_h,
                }
                if threshold is not None:
                    fields.update(threshold_cm=threshold, above=result.level >= threshold)
                self.emit("kpi_water", self.device_tags(d), fields, h)
            if threshold is not None:
                for c in water.crossings(levels, threshold, span.start):
                    self.emit("kpi_water_crossing", self.device_tags(d), {
                        "direction": c.direction, "water_level": c.level, "threshold_cm": threshold,
                    }, c.t)

    # -- network -----------------------------------------------------------------------------
    def kind_counts(self, start: int, end: int) -> dict[str, dict[int, int]]:
        """Samples per device and UTC hour in its kind's measurements."""
        out: dict[str, dict[int, int]] = defaultdict(dict)
        measurements = {m for k in self.by_kind for m in KIND_MEASUREMENTS.get(k, ())}
        for m in sorted(measurements):
            for device_id, rows in self.hourly_aggregate("count(*)", m, start, end).items():
                if m not in KIND_MEASUREMENTS.get(self.devices[device_id].kind, ()):
                    continue
                for t, values in rows:
                    n = int(max((v or 0) for v in values.values()))
                    out[device_id][t] = max(out[device_id].get(t, 0), n)
        return out

    def network_hourly(self, span: Window) -> None:
        counts = self.kind_counts(span.start, span.end)
        for h in range(span.start, span.end, HOUR_MS):
            covered_s = (self.effective(hour_window(h)).end - h) / 1000
            if covered_s <= 0:
                continue
            per_district: dict[str, list[network.Completeness]] = defaultdict(list)
            for d in self.devices.values():
                c = network.completeness(counts.get(d.device_id, {}).get(h, 0), covered_s,
                                         d.interval_s)
                per_district[d.district].append(c)
                self.emit("kpi_network_hourly", self.device_tags(d), {
                    "samples": c.samples, "expected": c.expected,
                    "completeness": c.completeness, "valid": c.valid,
                    # A count (1/0), not a bool: the district's `seen` in the same
                    # measurement counts devices, and a field has one type per measurement.
                    "seen": 1.0 if c.samples > 0 else 0.0,
                }, h)
            for district, cs in per_district.items():
                seen = sum(c.samples > 0 for c in cs)
                self.emit("kpi_network_hourly", _level("district", district), {
                    "devices": len(cs), "seen": seen,
                    "availability": network.availability(seen, len(cs)),
                    "completeness": sum(c.completeness for c in cs) / len(cs),
                }, h)

    def network_now(self) -> None:
        if not self.devices:
            return
        longest = max(self.hold_ms(d) for d in self.devices.values())
        last_seen: dict[str, int] = {}
        measurements = {m for k in self.by_kind for m in KIND_MEASUREMENTS.get(k, ())}
        for m in sorted(measurements | {DEVICE_HEALTH_MEASUREMENT}):
            q = (f'SELECT * FROM "{m}" WHERE {_time_range(self.now - longest, self.now + 1)} '
                 "GROUP BY device_id ORDER BY time DESC LIMIT 1")
            for series in self.reader.query(q):
                device_id = series.get("tags", {}).get("device_id", "")
                if device_id in self.devices and series["values"]:
                    t = int(series["values"][0][0])
                    last_seen[device_id] = max(last_seen.get(device_id, 0), t)
        per_district: dict[str, list[bool]] = defaultdict(list)
        for d in self.devices.values():
            seen = last_seen.get(d.device_id)
            per_district[d.district].append(
                seen is not None and self.now - seen <= self.hold_ms(d)
            )
        everyone = [x for xs in per_district.values() for x in xs]
        groups = [(_level("district", k), v) for k, v in per_district.items()]
        groups.append(({"level": "city", "district": "all"}, everyone))
        for tags, online in groups:
            self.emit("kpi_network_now", tags, {
                "registered": len(online), "online": sum(online),
                "availability": network.availability(sum(online), len(online)),
            }, self.now)

    def capture_daily(self, window: Window) -> None:
        # Hours of the local day that have ended (today counts only its past hours).
        hours = [h for h in range(window.start, window.end, HOUR_MS) if h + HOUR_MS <= self.now]
        if not hours:
            return
        counts = self.kind_counts(window.start, window.end)
        per_district: dict[str, list[network.Capture]] = defaultdict(list)
        for d in self.devices.values():
            per_hour = counts.get(d.device_id, {})
            valid = sum(
                network.completeness(per_hour.get(h, 0), 3600, d.interval_s).valid for h in hours
            )
            c = network.capture(valid, len(hours))
            per_district[d.district].append(c)
            self.emit("kpi_capture_daily", self.device_tags(d), {
                "valid_hours": c.valid_hours, "capture": c.capture, "good": c.good,
            }, window.start)
        for district, cs in per_district.items():
            mean_capture = sum(c.capture for c in cs) / len(cs)
            self.emit("kpi_capture_daily", _level("district", district), {
                "valid_hours": sum(c.valid_hours for c in cs) / len(cs),
                "capture": mean_capture, "good": mean_capture >= network.GOOD_CAPTURE,
            }, window.start)


def _between(rows: Sequence[_Row], start: int, end: int) -> list[_Row]:
    """The rows (sorted by time, time first) with start <= time < end."""
    lo = bisect.bisect_left(rows, start, key=lambda r: r[0])
    hi = bisect.bisect_left(rows, end, lo=lo, key=lambda r: r[0])
    return list(rows[lo:hi])


def _noise_fields(rows: Sequence[Sequence[Any]]) -> Fields:
    laeq = [float(r[1]) for r in rows if r[1] is not None]
    lamax = [float(r[2]) for r in rows if r[2] is not None]
    lamin = [float(r[3]) for r in rows if r[3] is not None]
    return _clean({
        "laeq": energetic_mean(laeq),
        "lamax": max(lamax) if lamax else None,
        "lamin": min(lamin) if lamin else None,
        "samples": len(rows),
    })


def _max_aqi(results: Sequence[tuple[aqi_.Aqi, Fields]]) -> Fields:
    """A site's or district's AQI: its worst device, among valid devices when any is."""
    valid = [r for r in results if r[1].get("valid")]
    pool = valid or list(results)
    worst = max(pool, key=lambda r: r[0].aqi)
    fields = dict(worst[1])
    fields["valid"] = bool(valid)
    return fields
