"""``urbanpulse verify --live``: InfluxDB's stored readings held against the archive.

Anyone who can write to InfluxDB can change a reading (a point with the same series and time
replaces the old one) or add one. The archive keeps every sealed payload as received, so the
readings it yields are what must be stored: for the boards that sealed in the range, every
stored point of theirs is compared with the archive's. A point whose values differ is
"changed", one no sealed payload holds is "added", one the archive holds but InfluxDB does
not is "missing". Readings are compared by the time they were taken, in [start, end); the
archive is read from an hour before ``start`` (clock skew) to LATE_DAYS after ``end`` (a
board that was offline sends old readings late).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urbanpulse.contract.messages import MessageRejected, TelemetryValidator
from urbanpulse.contract.vocabulary import HOUR_MS, VOCABULARY
from urbanpulse.influx.influxql import ident, string
from urbanpulse.service.archive import replay

LATE_DAYS = 7
Query = Callable[[str], list[dict[str, Any]]]


@dataclass
class LiveReport:
    compared: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return (f"{self.compared} stored readings compared with the archive: "
                + ("all as sealed" if self.ok else f"{len(self.failures)} differ"))


def _stamp(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)) + f".{t % 1000:03d}Z"


def live_check(root: Path, query: Query, start: int, end: int,
               district: str | None = None, now_ms: int | None = None) -> LiveReport:
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    validator = TelemetryValidator()
    # (measurement, device_id, t) -> the fields the sealed payload gave
    expected: dict[tuple[str, str, int], dict[str, float | bool]] = {}
    for r in replay(root, start - HOUR_MS, min(now_ms, end + LATE_DAYS * 24 * HOUR_MS) + HOUR_MS):
        if district not in (None, r.district):
            continue
        try:
            message = validator.parse(r.payload, now_ms=r.arrival_ms, sealed=True)
        except MessageRejected:
            continue
        for sample in message.samples:
            if start <= sample.t < end:
                for name, value in sample.values.items():
                    key = (VOCABULARY[name].measurement, r.device_id, sample.t)
                    expected.setdefault(key, {})[name] = value
    report = LiveReport()
    devices = sorted({k[1] for k in expected})
    if not devices:
        return report
    stored: set[tuple[str, str, int]] = set()
    for m in sorted({q.measurement for q in VOCABULARY.values()}):
        names = [n for n, q in VOCABULARY.items() if q.measurement == m]
        for series in _series(query, m, devices, start, end):
            columns = series["columns"]
            for values in series["values"]:
                row = dict(zip(columns, values, strict=True))
                key = (m, str(row["device_id"]), int(row["time"]))
                stored.add(key)
                report.compared += 1
                sealed = expected.get(key)
                where = f"{m} device {key[1]} at {_stamp(key[2])}"
                if sealed is None:
                    report.failures.append(f"{where}: added (no sealed payload holds it)")
                    continue
                bad = [f"{n} stored {row.get(n)!r}, sealed {sealed.get(n)!r}" for n in names
                       if not _same(row.get(n), sealed.get(n))]
                if bad:
                    report.failures.append(f"{where}: changed: {'; '.join(bad)}")
    for key in sorted(set(expected) - stored):
        report.failures.append(f"{key[0]} device {key[1]} at {_stamp(key[2])}: missing "
                               "(sealed and archived, not stored)")
    return report


def _series(query: Query, measurement: str, devices: list[str], start: int,
            end: int) -> Iterator[dict[str, Any]]:
    for i in range(0, len(devices), 100):  # a bounded query text
        match = " OR ".join(f"device_id = {string(d)}" for d in devices[i:i + 100])
        yield from query(f"SELECT * FROM {ident(measurement)} WHERE ({match}) AND "
                         f"time >= {start}ms AND time < {end}ms")


def _same(stored: Any, sealed: float | bool | None) -> bool:
    if sealed is None or stored is None:
        return sealed is None and stored is None
    if isinstance(sealed, bool) or isinstance(stored, bool):
        return stored is sealed
    return float(stored) == float(sealed)
