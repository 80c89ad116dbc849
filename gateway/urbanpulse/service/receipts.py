"""Hourly receipts (CONTRACT.md v2, "Receipts"): once an hour is over and every archive
writer has closed it, the Merkle root of each district's payloads of that hour, ordered by
(device_id, boot, seq), signed with the gateway's receipt key.

A receipt is made from the archive's closed segments alone, so it always matches what the
archive holds; it is written (all districts of the hour in ``{archive}/receipts/{hour}.json``,
a temporary file renamed into place) before it is published, and never made again: a
gateway killed halfway makes it at its next start from the same bytes (Ed25519 signatures are
deterministic, so a receipt made twice is the same receipt). Then it is published retained on
``{prefix}/receipts/{district}`` and stored as ``integrity_receipt``; the marker
``{hour}.published`` says both were done, else they are done again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from urbanpulse.contract.lineprotocol import encode_point
from urbanpulse.contract.receipts import Receipt, make_receipt
from urbanpulse.contract.vocabulary import HOUR_MS, INTEGRITY_RECEIPT_MEASUREMENT

if TYPE_CHECKING:  # loaded with the receipt key (trail.py)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .archive import (
    CLOSED,
    OPEN,
    RECEIPTS,
    Archived,
    close_stale,
    lock,
    records,
    segment_hour,
    segment_name,
    writers,
)

log = logging.getLogger("urbanpulse.receipts")

def hour_records(root: Path, hour_ms: int) -> list[Archived]:
    """Every archived payload of an hour, in the receipts' order: (device_id, boot, seq)."""
    name = segment_name(hour_ms) + CLOSED
    found = [r for w in writers(root) if (w / name).exists() for _, r in records(w / name)]
    return sorted(found, key=lambda r: (r.device_id, r.boot, r.seq, r.arrival_ms))


def receipt_file(root: Path, hour_ms: int) -> Path:
    return root / RECEIPTS / f"{segment_name(hour_ms)}.json"


def load_receipts(path: Path) -> list[dict[str, object]]:
    docs: list[dict[str, object]] = json.loads(path.read_bytes())
    return docs


class ReceiptMaker:
    def __init__(self, root: Path, key: Ed25519PrivateKey | None, prefix: str,
                 publish: Callable[[str, bytes], bool], offer: Callable[[list[str]], bool],
                 retention_days: float | None = None, max_bytes: int | None = None) -> None:
        self.root = root
        self.retention_days = retention_days
        self.max_bytes = max_bytes
        self.key = key
        self.prefix = prefix
        self._publish = publish
        self._offer = offer
        self._warned = False

    def tick(self, now_ms: int) -> None:
        """Make the receipts of every hour that is over and closed, and publish what is not."""
        current = now_ms - now_ms % HOUR_MS
        for hour in self._hours_due(current):
            if self.key is None:
                if not self._warned:
                    log.warning("sealed payloads archived but no receipts made: no receipt "
                                "key ([keys] receipt_key; `urbanpulse keys new` makes one)")
                    self._warned = True
                return
            self._make(hour)
        folder = self.root / RECEIPTS
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            if not path.with_suffix(".published").exists():
                self._announce(path)
        self._expire(now_ms)

    def _expire(self, now_ms: int) -> None:
        """Closed hours past the retention or beyond the size go, oldest first, once their
        receipts are made (kept)."""
        if self.retention_days is None and self.max_bytes is None:
            return
        limit = now_ms - int((self.retention_days or 0) * 24 * HOUR_MS)
        closed = sorted((segment_hour(p), p) for w in writers(self.root)
                        for p in w.glob("*" + CLOSED))
        total = sum(p.stat().st_size for _, p in closed) if self.max_bytes else 0
        for hour, path in closed:
            old = self.retention_days is not None and hour + HOUR_MS <= limit
            big = self.max_bytes is not None and total > self.max_bytes
            if not (old or big):
                break
            if not receipt_file(self.root, hour).exists():
                continue
            total -= path.stat().st_size
            path.unlink()
            log.info("archive %s deleted (%s)", path, "retention" if old else "max_bytes")

    def _hours_due(self, current: int) -> list[int]:
        hours: set[int] = set()
        still_open: set[int] = set()
        for w in writers(self.root):
            stale = [p for p in w.glob("*" + OPEN) if segment_hour(p) < current]
            if stale:
                fd = lock(w, wait=False)
                if fd is not None:  # its writer is gone: close what it left
                    try:
                        close_stale(w, current)
                    finally:
                        os.close(fd)
            for p in w.iterdir():
                if p.suffix in (OPEN, CLOSED):
                    (still_open if p.suffix == OPEN else hours).add(segment_hour(p))
        return sorted(h for h in hours - still_open if h < current and not
                      receipt_file(self.root, h).exists())

    def _make(self, hour: int) -> None:
        assert self.key is not None
        by_district: dict[str, list[bytes]] = {}
        for r in hour_records(self.root, hour):
            by_district.setdefault(r.district, []).append(r.payload)
        docs = [json.loads(make_receipt(d, hour, payloads, self.key).document())
                for d, payloads in sorted(by_district.items())]
        path = receipt_file(self.root, hour)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="ascii") as f:
            json.dump(docs, f, separators=(",", ":"))
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        log.info("receipts of %s: %s", docs[0]["hour"] if docs else segment_name(hour),
                 ", ".join(f"{d['district']} {d['leaves']} payloads" for d in docs))

    def _announce(self, path: Path) -> None:
        docs = load_receipts(path)
        lines = []
        for doc in docs:
            receipt = Receipt.from_document(doc)
            if not self._publish(f"{self.prefix}/receipts/{receipt.district}",
                                 receipt.document()):
                return
            lines.append(encode_point(
                INTEGRITY_RECEIPT_MEASUREMENT, {"district": receipt.district},
                {"leaves": receipt.leaves, "root": receipt.root, "sig": receipt.sig},
                segment_hour(path)))
        if lines and not self._offer(lines):
            return
        path.with_suffix(".published").touch()
