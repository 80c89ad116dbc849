"""``urbanpulse verify DIR``: an export checked from its files alone (no database, no secret).

Every receipt's signature with the receipt key; every payload's inclusion proof against its
receipt's root; every CSV row against its source payload: the sample with the row's time,
each quantity's value, and the device and district the proven payload was archived under;
and every reading of a proven payload that the gateway's validator keeps (as it did at the
payload's arrival) has its row. Each failure names its file and line.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urbanpulse.contract import merkle
from urbanpulse.contract.messages import MessageRejected, TelemetryValidator
from urbanpulse.contract.receipts import Receipt, ReceiptError, parse_receipt
from urbanpulse.contract.vocabulary import VOCABULARY

from . import layout

_VALIDATOR = TelemetryValidator()


@dataclass
class Report:
    receipts: int = 0
    payloads: int = 0
    rows: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return (f"{self.receipts} receipts, {self.payloads} payloads, {self.rows} rows: "
                + ("all verified" if self.ok else f"{len(self.failures)} failures"))


@dataclass
class _Source:
    device_id: str
    district: str
    samples: dict[int, dict[str, Any]]  # t -> the sample
    where: str
    expected: set[tuple[str, int]]  # (measurement, t) of each reading it must have a row for
    seen: set[tuple[str, int]] = field(default_factory=set)


def verify(folder: Path) -> Report:
    report = Report()
    try:
        key = (folder / layout.RECEIPT_KEY).read_text(encoding="ascii").strip()
        docs = json.loads((folder / layout.RECEIPTS).read_bytes())
    except (OSError, ValueError) as exc:
        report.failures.append(f"cannot read the receipts or the key: {exc}")
        return report
    receipts: dict[tuple[str, str], Receipt] = {}
    for i, doc in enumerate(docs if isinstance(docs, list) else []):
        try:
            r = parse_receipt(doc, key)
        except ReceiptError as exc:
            report.failures.append(f"{layout.RECEIPTS}: receipt {i + 1}: {exc}")
            continue
        receipts[(r.district, r.hour)] = r
        report.receipts += 1
    sources = _payloads(folder, receipts, report)
    for path in sorted(folder.glob("*.csv")):
        _rows(path, sources, report)
    for source in sources.values():
        for m, t in sorted(source.expected - source.seen):
            report.failures.append(f"{source.where}: its reading at t_ms {t} has no row in "
                                   f"{layout.csv_name(m)}")
    return report


def _payloads(folder: Path, receipts: dict[tuple[str, str], Receipt],
              report: Report) -> dict[str, _Source]:
    sources: dict[str, _Source] = {}
    name = layout.PAYLOADS
    with (folder / name).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            where = f"{name} line {n}"
            try:
                item = json.loads(line)
                payload = item["payload"].encode("utf-8")
                receipt = receipts.get((item["district"], item["hour"]))
                proof = [bytes.fromhex(p) for p in item["proof"]]
                index, leaves = int(item["index"]), int(item["leaves"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                report.failures.append(f"{where}: not a payload record: {exc}")
                continue
            if receipt is None:
                report.failures.append(f"{where}: no valid receipt for {item['district']} "
                                       f"{item['hour']}")
                continue
            if leaves != receipt.leaves or not merkle.verify(
                    merkle.leaf_hash(payload), index, leaves, proof, bytes.fromhex(receipt.root)):
                report.failures.append(f"{where}: the payload and its proof do not lead to the "
                                       f"root of the receipt of {receipt.district} {receipt.hour}")
                continue
            sha = hashlib.sha256(payload).hexdigest()
            if item.get("sha256") != sha:
                report.failures.append(f"{where}: sha256 is not the payload's")
            try:
                samples = {s["t"]: s for s in json.loads(payload)["samples"]}
                kept = _VALIDATOR.parse(payload, now_ms=int(item["arrival_ms"]), sealed=True)
            except (ValueError, KeyError, TypeError, MessageRejected):
                report.failures.append(f"{where}: a proven payload that is not a message")
                continue
            expected = {(VOCABULARY[name].measurement, s.t) for s in kept.samples
                        for name in s.values}
            sources[sha] = _Source(item["device_id"], item["district"], samples, where,
                                   expected)
            report.payloads += 1
    return sources


def _same(cell: str, value: Any) -> bool:
    if cell == "":
        return value is None
    try:
        got = layout.read_cell(cell)
    except ValueError:
        return False
    if isinstance(got, bool) or isinstance(value, bool):
        return got is value
    return isinstance(value, int | float) and got == value


def _rows(path: Path, sources: dict[str, _Source], report: Report) -> None:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = [c for c in reader.fieldnames or [] if c not in layout.ROW_COLUMNS]
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            source = sources.get(row.get("payload") or "")
            if source is None:
                report.failures.append(f"{where}: its payload {row.get('payload')!r} is not "
                                       "among the proven payloads")
                continue
            try:
                sample = source.samples.get(int(row["t_ms"]))
            except (ValueError, TypeError):
                sample = None
            if sample is None:
                report.failures.append(f"{where}: its payload has no sample at t_ms "
                                       f"{row.get('t_ms')!r}")
                continue
            bad = [c for c in fields if not _same(row[c], sample.get(c))]
            if row["device_id"] != source.device_id or row["district"] != source.district:
                bad.insert(0, "device_id/district")
            if bad:
                report.failures.append(f"{where}: {', '.join(bad)} not as in its payload")
                continue
            source.seen.add((path.stem, int(row["t_ms"])))
            report.rows += 1
