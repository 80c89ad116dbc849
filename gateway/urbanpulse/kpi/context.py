"""What every KPI family's run step works with: the registry, the clock, InfluxDB's rows, and
the points produced (``RunContext``), plus the small helpers they share."""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from urbanpulse.config import KpiSettings
from urbanpulse.contract.lineprotocol import FieldValue, encode_point
from urbanpulse.influx.influxql import ident
from urbanpulse.registry.devices import Device, Registry

from .windows import Window

Tags = dict[str, str]
Fields = dict[str, FieldValue]
_Row = TypeVar("_Row", bound=Sequence[Any])


class Reader(Protocol):
    def query(self, q: str) -> list[dict[str, Any]]: ...


def time_range(start: int, end: int) -> str:
    return f"time >= {start}ms AND time < {end}ms"


def clean(fields: Mapping[str, FieldValue | None]) -> Fields:
    """Drop missing values; numbers as floats (the schema's rule), bools and strings kept."""
    out: Fields = {}
    for key, value in fields.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, bool | str) else float(value)
    return out


def level_tags(level: str, district: str, site: str | None = None) -> Tags:
    tags = {"level": level, "district": district}
    if site:
        tags["site"] = site
    return tags


def between(rows: Sequence[_Row], start: int, end: int) -> list[_Row]:
    """The rows (sorted by time, time first) with start <= time < end."""
    lo = bisect.bisect_left(rows, start, key=lambda r: r[0])
    hi = bisect.bisect_left(rows, end, lo=lo, key=lambda r: r[0])
    return list(rows[lo:hi])


class RunContext:
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
        # Non-finite KPI values left out, by measurement.field.
        self.dropped: Counter[str] = Counter()
        self.devices: dict[str, Device] = {d.device_id: d for d in registry.devices}
        self.by_kind: dict[str, list[Device]] = defaultdict(list)
        for d in registry.devices:
            self.by_kind[d.kind].append(d)

    def emit(self, measurement: str, tags: Tags, fields: Mapping[str, FieldValue | None],
             t: int) -> None:
        kept = clean(fields)
        for key, value in list(kept.items()):
            # A stored reading out of bounds (written behind the gateway's back, or before a
            # bound existed) can overflow a sum: that value is left out and counted, and the
            # rest of the run goes on.
            if isinstance(value, float) and not math.isfinite(value):
                del kept[key]
                self.dropped[f"{measurement}.{key}"] += 1
        if kept:
            self.lines.append(encode_point(measurement, tags, kept, t))

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
        cols = ", ".join(ident(f) for f in fields)
        q = (f"SELECT {cols} FROM {ident(measurement)} WHERE {time_range(start, end)} "
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
        q = (f"SELECT {select} FROM {ident(measurement)} WHERE {time_range(start, end)} "
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
        out = [(level_tags("site", district, site), members)
               for (district, site), members in self.sites(ids).items()]
        out += [(level_tags("district", district), members)
                for district, members in self.districts(ids).items()]
        return out

    def effective(self, window: Window) -> Window:
        """The part of ``window`` that has happened (states are not extrapolated)."""
        return Window(window.start, min(window.end, max(window.start, self.now)))
