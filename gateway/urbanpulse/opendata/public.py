"""What an export tells the public: its README and its DCAT-style catalog.json."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from urbanpulse.contract.receipts import STATEMENT_PREFIX, hour_text
from urbanpulse.contract.vocabulary import HOUR_MS, VOCABULARY

from . import layout


@dataclass(frozen=True)
class Dataset:
    title: str
    publisher: str
    licence: str
    district: str | None
    start_ms: int
    end_ms: int


def _range(req: Dataset) -> tuple[str, str]:
    start = req.start_ms - req.start_ms % HOUR_MS
    end = -(-req.end_ms // HOUR_MS) * HOUR_MS
    return hour_text(start), hour_text(end)


def _range_text(name: str) -> str:
    q = VOCABULARY[name]
    return "true/false" if q.type == "bool" else f"{q.minimum:g} to {q.maximum:g}"


def readme(req: Dataset, left_out: list[str]) -> str:
    start, end = _range(req)
    fields = "\n".join(f"| `{name}` | `{q.measurement}` | {q.unit or '-'} | "
                       f"{_range_text(name)} |" for name, q in VOCABULARY.items())
    missing = "".join(f"- {m}\n" for m in left_out) or "- none\n"
    return f"""# {req.title}

Readings of the city's sensor boards that arrived from {start} to {end} (UTC){
f", district {req.district}" if req.district else ""}, as the boards sent them.
Publisher: {req.publisher or "the city"}. Licence: {req.licence}.

## Files

- `{{measurement}}.csv`: one row per reading and measurement. Columns: `time` (when the board
  took the reading, UTC), `t_ms` (the same, milliseconds since 1970), `device_id`,
  `district`, `boot` and `seq` (the board's message numbers), `payload` (the SHA-256 of the
  message the reading came in, in `{layout.PAYLOADS}`), then the quantities below (an empty
  cell: not measured in that reading).
- `{layout.PAYLOADS}`: each source message exactly as the board sealed it (its `mac` is the
  board's HMAC, its `prev` the hash of the board's message before), with the Merkle proof that
  it is included in the hour's receipt.
- `{layout.RECEIPTS}`: for each hour and district, the Merkle root of every message the
  gateway received, signed by the gateway over
  `{STATEMENT_PREFIX}|{{district}}|{{hour}}|{{leaves}}|{{root}}`. The gateway publishes each
  receipt when its hour ends, so a copy kept then shows whether anything changed since.
- `{layout.RECEIPT_KEY}`: the gateway's receipt public key (Ed25519, hex).
- `{layout.KPI_DIR}/`: hourly indicators computed from the readings (derived: not proven).
- `{layout.CATALOG}`: a machine-readable description (DCAT), with each file's SHA-256.

| quantity | file | unit | valid range |
|---|---|---|---|
{fields}

## How to verify

`urbanpulse verify DIR` checks, without any secret or database: each receipt's signature
with the receipt key; each message's inclusion proof (RFC 6962: leaf = SHA-256(0x00 ||
message), node = SHA-256(0x01 || left || right)) against its receipt's root; and that every
CSV value is the value in its source message. Any tool can do the same from this description
and the city's published receipt key.

Hours left out (no receipt yet, or no longer archived):
{missing}"""


def catalog(req: Dataset, out: Path) -> dict[str, Any]:
    start, end = _range(req)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != layout.CATALOG)
    return {
        "@context": {"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/",
                     "spdx": "http://spdx.org/rdf/terms#"},
        "@type": "dcat:Dataset",
        "dct:title": req.title,
        "dct:publisher": req.publisher or None,
        "dct:license": req.licence,
        "dct:temporal": {"@type": "dct:PeriodOfTime", "dcat:startDate": start,
                         "dcat:endDate": end},
        "dct:spatial": req.district,
        "dcat:distribution": [{
            "@type": "dcat:Distribution",
            "dct:title": p.relative_to(out).as_posix(),
            "dcat:mediaType": {".csv": "text/csv", ".json": "application/json",
                               ".jsonl": "application/jsonl", ".md": "text/markdown"}.get(
                                   p.suffix, "text/plain"),
            "dcat:byteSize": p.stat().st_size,
            "spdx:checksum": {"spdx:algorithm": "sha256",
                              "spdx:checksumValue": hashlib.sha256(p.read_bytes()).hexdigest()},
        } for p in files],
    }
