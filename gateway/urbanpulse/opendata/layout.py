"""The files of an open-data export, and their columns: what export.py writes and verify.py
reads (and what the export's README explains to the public).

    payloads.jsonl      one source payload per line: {"payload": the bytes as received (a JSON
                        string), "sha256", "device_id", "district", "arrival_ms", "hour",
                        "index", "leaves", "proof": [hex, ...]} (the Merkle audit path,
                        nearest sibling first)
    receipts.json       the receipts of the hours exported (contract/receipts.py documents)
    receipt-key.pub     the gateway's receipt public key, 64 hex digits
    {measurement}.csv   the readings, one row per sample and measurement
    kpi/{name}.csv      the hourly KPIs the gateway computed (derived: not proven)
    README.md           for the public: the columns, the licence, how to verify
    catalog.json        a DCAT-style description of the dataset
"""

from __future__ import annotations

from urbanpulse.contract.vocabulary import VOCABULARY

PAYLOADS = "payloads.jsonl"
RECEIPTS = "receipts.json"
RECEIPT_KEY = "receipt-key.pub"
README = "README.md"
CATALOG = "catalog.json"
KPI_DIR = "kpi"

# Every reading row starts with these; then the measurement's fields, in vocabulary order.
# "payload": the SHA-256 (hex) of the source payload in payloads.jsonl.
ROW_COLUMNS = ("time", "t_ms", "device_id", "district", "boot", "seq", "payload")


def measurement_fields() -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for name, q in VOCABULARY.items():
        fields.setdefault(q.measurement, []).append(name)
    return fields


def csv_name(measurement: str) -> str:
    return f"{measurement}.csv"


def cell(value: float | bool) -> str:
    """A reading as the CSV holds it (verify.py reads it back with read_cell)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(float(value))


def read_cell(text: str) -> float | bool:
    if text in ("true", "false"):
        return text == "true"
    return float(text)
