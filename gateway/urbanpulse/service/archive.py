"""The archive of sealed payloads (CONTRACT.md v2, "Receipts"): every accepted version 2
payload as received, byte for byte, append-only, never rewritten.

Layout: ``{path}/{writer}/`` per gateway process (``main``, or ``worker-I``), one segment per
UTC hour of arrival: ``2026-12-07T19.open`` while the hour is current, renamed ``.arc`` once
it is over (by the next append or the gateway's tick) and never written again. The receipts
of an hour (receipts.py) are made once no writer has that hour open.

A record: CRC-32 of the rest, then the lengths (payload, device id, district), the arrival
time (ms), boot and seq, the device id, the district (from the registry at arrival) and the
payload. A record cut short (kill -9, power cut) fails its CRC and is cut off when the
segment is opened again; its message was never acknowledged, so it comes again.
Durability: ``sync()`` runs before the gateway acknowledges a batch (``fsync = "always"``: one
fsync per batch, not per message), at most every interval, or never, like the spool.
"""

from __future__ import annotations

import calendar
import fcntl
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from urbanpulse.config import FsyncPolicy
from urbanpulse.contract.vocabulary import HOUR_MS

_HEADER = struct.Struct("<IIBBQII")  # crc, payload len, id len, district len, arrival, boot, seq
OPEN, CLOSED = ".open", ".arc"
RECEIPTS = "receipts"  # the receipts' folder, beside the writers' (receipts.py)


@dataclass(frozen=True)
class Archived:
    arrival_ms: int
    device_id: str
    district: str
    boot: int
    seq: int
    payload: bytes


def segment_name(hour_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(hour_ms // 1000))


def segment_hour(path: Path) -> int:
    return calendar.timegm(time.strptime(path.stem, "%Y-%m-%dT%H")) * 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode(a: Archived) -> bytes:
    device, district = a.device_id.encode(), a.district.encode()
    rest = _HEADER.pack(0, len(a.payload), len(device), len(district), a.arrival_ms, a.boot,
                        a.seq)[4:] + device + district + a.payload
    return struct.pack("<I", zlib.crc32(rest)) + rest


def records(path: Path) -> Iterator[tuple[int, Archived]]:
    """(offset after it, record) of each good record from the start, up to the first torn one."""
    data = path.read_bytes()
    at = 0
    while len(data) - at >= _HEADER.size:
        crc, n, nd, ns, arrival, boot, seq = _HEADER.unpack_from(data, at)
        end = at + _HEADER.size + nd + ns + n
        if end > len(data) or zlib.crc32(data[at + 4:end]) != crc:
            return
        p = at + _HEADER.size
        yield end, Archived(arrival, data[p:p + nd].decode(), data[p + nd:p + nd + ns].decode(),
                            boot, seq, data[p + nd + ns:end])
        at = end


def _good_length(path: Path) -> int:
    ends = [end for end, _ in records(path)]
    return ends[-1] if ends else 0


def writers(root: Path) -> list[Path]:
    """The writers' folders of an archive."""
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name != RECEIPTS) if (
        root.is_dir()) else []


def replay(root: Path, since_ms: int, until_ms: int | None = None) -> list[Archived]:
    """Every archived payload that arrived from ``since_ms`` (until ``until_ms``), all
    writers, in arrival order."""
    found: list[Archived] = []
    for w in writers(root):
        for path in w.glob("*.*"):
            hour = segment_hour(path) if path.suffix in (OPEN, CLOSED) else None
            if hour is not None and hour + HOUR_MS > since_ms and (
                    until_ms is None or hour < until_ms):
                found += [r for _, r in records(path) if since_ms <= r.arrival_ms and (
                    until_ms is None or r.arrival_ms < until_ms)]
    return sorted(found, key=lambda r: r.arrival_ms)


def close_stale(folder: Path, now_ms: int) -> None:
    """Segments a writer left open (it crashed, or is gone): the torn tail cut, and closed
    unless their hour is still on. Only with the writer's lock held."""
    for path in sorted(folder.glob("*" + OPEN)):
        good = _good_length(path)
        with path.open("r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
        if path.stem != segment_name(now_ms):
            path.rename(path.with_suffix(CLOSED))
    _sync_dir(folder)


def lock(folder: Path, wait: bool = True) -> int | None:
    """The writer's lock on ``folder`` (held while a gateway process writes there): its fd,
    or None if ``wait`` is False and another process holds it."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Archive:
    """One process's writer (thread-safe: appended from the MQTT thread, synced from the
    batcher's, ticked from the main loop)."""

    def __init__(self, root: Path, writer: str, fsync: FsyncPolicy = "always",
                 fsync_interval_s: float = 1.0) -> None:
        self.root = root
        self.dir = root / writer
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._hour = -1
        self._unsynced = False
        self._last_sync = time.monotonic()
        self.appended = 0
        self._lock_fd: int | None = None  # taken at the first append: a gateway that gets
        # no sealed message makes no archive

    def _open_locked(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock(self.dir)
        close_stale(self.dir, _now_ms())

    def append(self, device_id: str, district: str, boot: int, seq: int,
               payload: bytes) -> Archived:
        """Archive a payload; its arrival is now, taken under the lock that closes an hour,
        so that nothing is ever added to an hour that is closed."""
        with self._lock:
            if self._lock_fd is None:
                self._open_locked()
            record = Archived(_now_ms(), device_id, district, boot, seq, payload)
            hour = record.arrival_ms - record.arrival_ms % HOUR_MS
            if hour != self._hour:
                self._close_locked()
                path = self.dir / (segment_name(hour) + OPEN)
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                self._hour = hour
                _sync_dir(self.dir)
            assert self._fd is not None
            os.write(self._fd, encode(record))
            self._unsynced = True
            self.appended += 1
        return record

    def sync(self) -> None:
        """Before an acknowledgement: what was appended is on disk (per the fsync policy)."""
        with self._lock:
            if not self._unsynced or self._fd is None or self.fsync == "never":
                return
            now = time.monotonic()
            if self.fsync == "interval" and now - self._last_sync < self.fsync_interval_s:
                return
            os.fsync(self._fd)
            self._unsynced = False
            self._last_sync = now

    def tick(self, now_ms: int) -> None:
        """Close the segment of an hour that is over: its receipts can then be made."""
        with self._lock:
            if self._fd is not None and now_ms - now_ms % HOUR_MS != self._hour:
                self._close_locked()

    def close(self) -> None:
        with self._lock:
            self._close_locked()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _close_locked(self) -> None:
        if self._fd is None:
            return
        if self.fsync != "never":
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        self._unsynced = False
        path = self.dir / (segment_name(self._hour) + OPEN)
        if self._hour != _now_ms() // HOUR_MS * HOUR_MS:
            path.rename(path.with_suffix(CLOSED))
            _sync_dir(self.dir)
        self._hour = -1
