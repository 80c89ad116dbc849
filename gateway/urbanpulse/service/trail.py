"""The gateway's part of the tamper-evident trail (CONTRACT.md v2): the chains of the boards'
sealed messages (integrity.py), the archive of their payloads (archive.py) and the hourly
receipts over it (receipts.py), set up and driven together.

At start the chains are rebuilt from the archive's last REPLAY_HOURS, so that a restart
neither takes a redelivery for new data nor flags every board's next message as a gap (a
board silent for longer than that is flagged once). The current hour's counts of refused
messages (bad MACs, replays) are not in the archive and start again from 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from urbanpulse.config import Settings
from urbanpulse.contract.sealed import digest
from urbanpulse.contract.vocabulary import HOUR_MS

from .archive import Archive, replay
from .dedup import RecentMessages
from .integrity import Chains
from .receipts import ReceiptMaker

log = logging.getLogger("urbanpulse.trail")

REPLAY_HOURS = 25


class Trail:
    def __init__(self, settings: Settings, writer: str | None, receipts: bool,
                 publish: Callable[[str, bytes], bool], offer: Callable[[list[str]], bool],
                 tags: Callable[[str], str | None]) -> None:
        """``writer``: this process's archive folder (None: it archives nothing, a
        coordinator); ``receipts``: whether it makes the receipts (one process does)."""
        a = settings.archive
        self.chains = Chains()
        self.archive = None if writer is None else Archive(
            a.path, writer, a.fsync, a.fsync_interval_s)
        key_path = settings.keys.receipt_key
        key = None
        if receipts and key_path is not None:
            # Here only: the process that makes the receipts loads the cryptography library.
            from urbanpulse.contract.signing import load_private

            key = load_private(key_path)
        self.receipts = ReceiptMaker(
            a.path, key,
            settings.mqtt.topic_prefix, publish, offer, a.retention_days,
            a.max_bytes) if receipts else None
        self._offer = offer
        self._tags = tags

    def replay(self, now_ms: int, recent: RecentMessages | None = None) -> int:
        """Rebuild the chains from the archive, and the memory of recent messages (the last
        ones may have been archived and not acknowledged: the broker delivers them again);
        how many payloads were read."""
        if self.archive is None:
            return 0
        found = replay(self.archive.root, now_ms - REPLAY_HOURS * HOUR_MS)
        for r in found:
            prev = _prev(r.payload)
            if prev is not None:
                sha = digest(r.payload)
                self.chains.check(r.device_id, r.boot, r.seq, prev, sha, r.arrival_ms)
                if recent is not None:
                    recent.remember(r.device_id, r.boot, r.seq, int.from_bytes(sha[:8]))
        self.chains.settle(now_ms)
        if found:
            log.info("chains rebuilt from %d archived payloads", len(found))
        return len(found)

    def tick(self, now_ms: int) -> None:
        self.chains.flush(self._tags, now_ms, self._offer)
        if self.archive is not None:
            self.archive.tick(now_ms)
        if self.receipts is not None:
            self.receipts.tick(now_ms)

    def sync(self) -> None:
        if self.archive is not None:
            self.archive.sync()

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def _prev(payload: bytes) -> bytes | None:
    # The payload was checked when it was archived: "prev" is where the contract puts it,
    # just before the MAC (64 hex digits, then ","mac":"...).
    at = payload.rfind(b',"prev":"')
    return None if at < 0 else bytes.fromhex(payload[at + 9:at + 73].decode())
