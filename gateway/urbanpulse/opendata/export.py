"""``urbanpulse export``: the readings of a time range as open data that anyone can verify.

Everything comes from the archive (service/archive.py) and its receipts, hour by hour of
arrival (the unit a receipt proves), streamed to the files of layout.py: each payload once
with its inclusion proof, and its valid samples (as the gateway's validator keeps them) as
CSV rows that name it. Before an hour is written, the archive's payloads are checked against
the hour's receipt: an archive that no longer matches what was signed is an error, never an
export. Hours without a receipt (the current one, or a gateway without a receipt key) are
left out and listed. The hourly KPIs come from InfluxDB beside them (derived, not proven).
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from urbanpulse.contract import merkle
from urbanpulse.contract.messages import MessageRejected, TelemetryValidator
from urbanpulse.contract.receipts import hour_text
from urbanpulse.contract.vocabulary import HOUR_MS, VOCABULARY
from urbanpulse.service.archive import Archived
from urbanpulse.service.receipts import hour_records, load_receipts, receipt_file

from . import layout
from .public import Dataset, catalog, readme

# (measurement name, columns, rows) of the hourly KPIs in a range, from InfluxDB.
KpiQuery = Callable[[int, int, str | None], list[tuple[str, list[str], list[list[Any]]]]]


class ExportError(RuntimeError):
    """An export that cannot be made; the message says why."""


@dataclass
class ExportRequest:
    archive: Path
    start_ms: int
    end_ms: int
    out: Path
    district: str | None = None
    licence: str = "CC-BY-4.0"
    publisher: str = ""
    title: str = "UrbanPulse city sensor readings"
    kpis: KpiQuery | None = None
    progress: Callable[[str], None] = lambda text: None


@dataclass
class ExportSummary:
    payloads: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    receipts: int = 0
    hours: int = 0
    missing: list[str] = field(default_factory=list)  # hours without receipts, or expired


def _time(t_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_ms // 1000)) + f".{t_ms % 1000:03d}Z"


class _Rows:
    """The CSV files of the readings, opened as their first row comes."""

    def __init__(self, out: Path, stack: ExitStack) -> None:
        self.out = out
        self.stack = stack
        self.fields = layout.measurement_fields()
        self.writers: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, record: Archived, sha: str, t: int, values: dict[str, float | bool]) -> None:
        by_measurement: dict[str, dict[str, float | bool]] = {}
        for name, value in values.items():
            by_measurement.setdefault(VOCABULARY[name].measurement, {})[name] = value
        for m, fields in by_measurement.items():
            writer = self.writers.get(m)
            if writer is None:
                f: IO[str] = self.stack.enter_context(
                    (self.out / layout.csv_name(m)).open("w", newline="", encoding="utf-8"))
                writer = self.writers[m] = csv.writer(f, lineterminator="\n")
                writer.writerow([*layout.ROW_COLUMNS, *self.fields[m]])
                self.counts[m] = 0
            writer.writerow([_time(t), t, record.device_id, record.district, record.boot,
                             record.seq, sha, *(layout.cell(fields[n]) if n in fields else ""
                                                for n in self.fields[m])])
            self.counts[m] += 1


def _hours(req: ExportRequest) -> Iterator[int]:
    hour = req.start_ms - req.start_ms % HOUR_MS
    while hour < req.end_ms:
        yield hour
        hour += HOUR_MS


def export(req: ExportRequest) -> ExportSummary:
    if req.out.exists() and any(req.out.iterdir()):
        raise ExportError(f"{req.out} is not empty: an export goes to a new folder")
    req.out.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary()
    receipts: list[dict[str, object]] = []
    validator = TelemetryValidator()
    with ExitStack() as stack:
        rows = _Rows(req.out, stack)
        payloads = stack.enter_context((req.out / layout.PAYLOADS).open("w", encoding="utf-8"))
        for hour in _hours(req):
            path = receipt_file(req.archive, hour)
            if not path.exists():
                summary.missing.append(f"{hour_text(hour)}: no receipt")
                continue
            by_district: dict[str, list[Archived]] = {}
            for r in hour_records(req.archive, hour):
                by_district.setdefault(r.district, []).append(r)
            for doc in load_receipts(path):
                district = str(doc["district"])
                if req.district not in (None, district):
                    continue
                found = by_district.get(district, [])
                if not found:
                    summary.missing.append(f"{hour_text(hour)} {district}: no longer archived")
                    continue
                root, proofs = merkle.all_proofs([merkle.leaf_hash(r.payload) for r in found])
                if root.hex() != doc["root"] or len(found) != doc["leaves"]:
                    raise ExportError(
                        f"the archive of {hour_text(hour)} {district} does not match its "
                        f"receipt ({len(found)} payloads, root {root.hex()[:16]}..; the receipt "
                        f"says {doc['leaves']}, {str(doc['root'])[:16]}..): it was changed")
                receipts.append(doc)
                for index, (r, proof) in enumerate(zip(found, proofs, strict=True)):
                    sha = hashlib.sha256(r.payload).hexdigest()
                    payloads.write(json.dumps({
                        "payload": r.payload.decode("utf-8"), "sha256": sha,
                        "device_id": r.device_id, "district": district,
                        "arrival_ms": r.arrival_ms,
                        "hour": doc["hour"], "index": index, "leaves": len(found),
                        "proof": [p.hex() for p in proof]}, separators=(",", ":")) + "\n")
                    summary.payloads += 1
                    try:
                        message = validator.parse(r.payload, now_ms=r.arrival_ms, sealed=True)
                    except MessageRejected:
                        continue  # archived, so valid when it came: cannot happen
                    for sample in message.samples:
                        rows.add(r, sha, sample.t, sample.values)
            summary.hours += 1
            req.progress(f"{hour_text(hour)}: {summary.payloads} payloads")
        summary.rows = dict(rows.counts)
    summary.receipts = len(receipts)
    keys = {str(d["key"]) for d in receipts}
    if len(keys) > 1:
        raise ExportError("the receipts of this range are signed by several keys: export the "
                          "ranges of each key apart")
    (req.out / layout.RECEIPTS).write_text(json.dumps(receipts, indent=1) + "\n", "ascii")
    (req.out / layout.RECEIPT_KEY).write_text((keys.pop() if keys else "") + "\n", "ascii")
    if req.kpis is not None:
        _write_kpis(req)
    dataset = Dataset(req.title, req.publisher, req.licence, req.district, req.start_ms,
                      req.end_ms)
    (req.out / layout.README).write_text(readme(dataset, summary.missing), encoding="utf-8")
    (req.out / layout.CATALOG).write_text(
        json.dumps(catalog(dataset, req.out), indent=1) + "\n", encoding="utf-8")
    return summary


def _write_kpis(req: ExportRequest) -> None:
    assert req.kpis is not None
    folder = req.out / layout.KPI_DIR
    for name, columns, values in req.kpis(req.start_ms, req.end_ms, req.district):
        folder.mkdir(exist_ok=True)
        with (folder / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(values)
