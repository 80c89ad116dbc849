"""Recognising redelivered telemetry messages by (device_id, boot, seq).

The broker redelivers a message whose acknowledgement it has not seen (the gateway reconnected,
or restarted). Storage is already idempotent, since the same points (series and timestamp)
overwrite themselves in InfluxDB, so this memory is not what keeps data correct: it saves
writing the points again and lets ``duplicates`` be counted. It is bounded (least recently
seen forgotten first) and lives in memory; after a restart a redelivered version 1 message is
simply written again. For sealed (v2) messages it tells a redelivery from a replay, by a
fingerprint of the payload's SHA-256, and trail.py fills it from the archive at start.

A redelivery carries the same bytes. The same (device_id, boot, seq) with other content is not
a duplicate but a board that counts again from an old boot number (its flash was erased, or
its boot counter file was lost): those readings are new and must be stored, so each entry
keeps a fingerprint of the payload too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class RecentMessages:
    """The last ``max_entries`` messages seen (least recently seen forgotten first)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, not {max_entries}")
        self.max_entries = max_entries
        # One int per message, (device number << 64 | boot << 32 | seq): about 140 bytes an
        # entry, a third of a (device_id, boot, seq) tuple's. boot and seq are < 2**32 (the
        # validator's bounds); device numbers are handed out per registered device id.
        self._seen: OrderedDict[int, int] = OrderedDict()  # key -> payload fingerprint
        self._devices: dict[str, int] = {}
        self._lock = threading.Lock()
        self.reused = 0  # ids seen again with other content (not duplicates)

    def seen_before(self, device_id: str, boot: int, seq: int, fingerprint: int = 0) -> bool:
        """True if this message (same id and same fingerprint of its payload) was seen
        already; otherwise remember it and return False."""
        if not (0 <= boot < 2**32 and 0 <= seq < 2**32):
            raise ValueError(f"boot={boot} and seq={seq} must be in 0..2**32-1")
        with self._lock:
            number = self._devices.setdefault(device_id, len(self._devices))
            key = number << 64 | boot << 32 | seq
            known = self._seen.get(key)
            if known == fingerprint:
                self._seen.move_to_end(key)
                return True
            if known is not None:
                # Same id, other content: a board reusing boot numbers; keep the newer one.
                self.reused += 1
                self._seen.move_to_end(key)
            self._seen[key] = fingerprint
            if len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            return False

    def known(self, device_id: str, boot: int, seq: int, fingerprint: int) -> bool:
        """Whether this message (same id, same fingerprint) was remembered; remembers nothing
        (sealed messages: remember() once the chain accepted it)."""
        with self._lock:
            number = self._devices.get(device_id)
            return number is not None and self._seen.get(
                number << 64 | boot << 32 | seq) == fingerprint

    def remember(self, device_id: str, boot: int, seq: int, fingerprint: int) -> None:
        self.seen_before(device_id, boot, seq, fingerprint)

    def __len__(self) -> int:
        return len(self._seen)
