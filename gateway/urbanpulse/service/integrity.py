"""Each board's chain of sealed messages (CONTRACT.md v2): redeliveries, replays, gaps, forks.

A sealed message whose MAC verified is, by its ``(boot, seq)`` and the SHA-256 of its bytes:
- a redelivery: the same bytes as one accepted before (stored once);
- a replay, refused: a ``(boot, seq)`` accepted before with other bytes, or one older than
  the newest accepted that is not a redelivery. A board sends its messages in order, one at
  a time, so only a copy, or someone holding its key, sends an old number again; a
  re-provisioned board starts a new chain (``prev`` = genesis) and may count from 0 again;
- new, and then flagged as a gap when its ``prev`` is not the hash of the last message
  accepted from the board (messages lost or withheld upstream, or a gateway that has no
  record of the board yet), and as a fork when an accepted message had the same ``prev``.
  Both are counted and stored (``device_integrity``), never hidden.

Per board the chain keeps its tip, its newest ``(boot, seq)`` and the last RECENT messages
(enough for the broker's redeliveries: a board has one message in flight). The counts go
to ``device_integrity`` per device and UTC hour, as totals that grow during the hour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from urbanpulse.contract.lineprotocol import encode_field_value
from urbanpulse.contract.sealed import genesis
from urbanpulse.contract.vocabulary import (
    DEVICE_INTEGRITY_FIELDS,
    DEVICE_INTEGRITY_MEASUREMENT,
    HOUR_MS,
)

RECENT = 16
K = TypeVar("K")
V = TypeVar("V")


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    REPLAYED = "replayed"


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    gap: bool = False
    fork: bool = False
    detail: str = ""


_VERIFIED, _GAPS, _FORKS, _BAD_MAC, _REPLAYED = (
    DEVICE_INTEGRITY_FIELDS.index(n) for n in ("verified", "gaps", "forks", "bad_mac", "replayed"))


@dataclass
class _Chain:
    genesis: bytes
    tip: bytes
    high: int  # boot << 32 | seq of the newest message accepted
    recent: dict[int, bytes] = field(default_factory=dict)  # boot << 32 | seq -> digest
    prevs: dict[bytes, int] = field(default_factory=dict)  # prev -> boot << 32 | seq


class Chains:
    """The chains of every board that seals its messages (thread-safe)."""

    def __init__(self) -> None:
        self._chains: dict[str, _Chain] = {}
        self._lock = threading.Lock()
        # (device_id, hour start ms) -> counts in DEVICE_INTEGRITY_FIELDS order
        self._counts: dict[tuple[str, int], list[int]] = {}
        self._changed: set[tuple[str, int]] = set()

    def check(self, device_id: str, boot: int, seq: int, prev: bytes, digest: bytes,
              now_ms: int, on_new: Callable[[], object] | None = None) -> Check:
        """The verdict on a message whose MAC verified; a new one becomes the chain's tip,
        once ``on_new`` (archiving it) has returned: if it raises, nothing changes."""
        key = boot << 32 | seq
        with self._lock:
            chain = self._chains.get(device_id)
            first = chain.genesis if chain is not None else genesis(device_id)
            fresh = prev == first
            if chain is not None:
                known = chain.recent.get(key)
                if known == digest:
                    return Check(Verdict.DUPLICATE)
                if known is not None or (key <= chain.high and not fresh):
                    self._count(device_id, now_ms, _REPLAYED)
                    return Check(Verdict.REPLAYED, detail=(
                        f"boot={boot} seq={seq} was accepted before with other bytes"
                        if known is not None else
                        f"boot={boot} seq={seq} is older than the last message accepted "
                        f"(boot={chain.high >> 32} seq={chain.high & 0xFFFFFFFF}) "
                        "and not a copy of a recent one"))
            gap = prev != (chain.tip if chain is not None else first)
            fork = chain is not None and prev in chain.prevs
            if on_new is not None:
                on_new()
            if chain is None:
                chain = self._chains[device_id] = _Chain(first, digest, key)
            chain.tip = digest
            chain.high = key if fresh else max(chain.high, key)
            _remember(chain.recent, key, digest)
            _remember(chain.prevs, prev, key)
            counts = self._count(device_id, now_ms, _VERIFIED)
            counts[_GAPS] += gap
            counts[_FORKS] += fork
        detail = "; ".join(text for flag, text in (
            (gap, "gap: prev is not the last message accepted from this board"),
            (fork, "fork: another accepted message has the same prev")) if flag)
        return Check(Verdict.NEW, gap, fork, detail)

    def settle(self, now_ms: int) -> None:
        """After a replay of the archive: only the current hour's counts are kept, and none
        is to be written again (they are what was stored before)."""
        with self._lock:
            hour = now_ms - now_ms % HOUR_MS
            self._counts = {k: v for k, v in self._counts.items() if k[1] == hour}
            self._changed.clear()

    def bad_mac(self, device_id: str, now_ms: int) -> None:
        with self._lock:
            self._count(device_id, now_ms, _BAD_MAC)

    def _count(self, device_id: str, now_ms: int, index: int) -> list[int]:
        key = (device_id, now_ms - now_ms % HOUR_MS)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0] * len(DEVICE_INTEGRITY_FIELDS)
        counts[index] += 1
        self._changed.add(key)
        return counts

    def flush(self, tags: Callable[[str], str | None], now_ms: int,
              offer: Callable[[list[str]], bool]) -> None:
        """``device_integrity`` points of the hours whose counts changed since the last
        flush, handed to ``offer`` (the hour's totals so far, at its start: a later point
        replaces an earlier one; offered again next time if ``offer`` refuses them).
        ``tags``: a device's tag string, None if it is no longer registered. Hours before the
        previous one are forgotten once written."""
        with self._lock:
            changed, self._changed = self._changed, set()
            lines = []
            for key in sorted(changed):
                device_id, hour = key
                tag_string = tags(device_id)
                if tag_string is None:
                    continue
                values = ",".join(f"{name}={encode_field_value(n)}" for name, n in
                                  zip(DEVICE_INTEGRITY_FIELDS, self._counts[key], strict=True))
                lines.append(f"{DEVICE_INTEGRITY_MEASUREMENT}{tag_string} {values} {hour}")
        if lines and not offer(lines):
            with self._lock:
                self._changed |= changed
            return
        with self._lock:
            old = now_ms - now_ms % HOUR_MS - HOUR_MS
            for key in [k for k in self._counts if k[1] < old and k not in self._changed]:
                del self._counts[key]


def _remember(recent: dict[K, V], key: K, value: V) -> None:
    recent[key] = value
    if len(recent) > RECENT:
        del recent[next(iter(recent))]
