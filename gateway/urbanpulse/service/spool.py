"""A bounded on-disk spool of line-protocol batches, for while InfluxDB cannot take them.

Layout: a directory of append-only segment files ``0000000000000001.seg``, ... Each record
(one batch) is framed as::

    crc32 (u32) | length (u32) | points (u32) | created_ms (u64) | payload (length bytes)

little-endian; the CRC covers everything after itself, so a torn or half-written tail (kill -9,
power loss during a write) fails the check. Opening the spool scans every segment and cuts a
segment at its first bad record: the records before it are kept, the rest of that segment is
dropped (and logged). New records always go to a fresh segment, never after an old tail.

Records are read oldest first (``peek``) and removed (``pop``) only once the caller has stored
them; a segment file is deleted when all its records are popped. The read position within a
segment is kept in memory only: after a crash the records of the first segment that were
already stored are replayed again, which InfluxDB absorbs (same series and timestamp
overwrite), so storage still holds each point once.

``fsync``: ``always`` syncs each record (and the directory when a segment is created or
deleted) before ``append`` returns, so an acknowledged batch survives power loss; ``interval``
syncs at most every ``fsync_interval_s`` (call ``sync_if_due`` when idle), bounding what power
loss can take; ``never`` leaves it to the OS (survives a crash of the gateway, not of the
machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from urbanpulse.config import FsyncPolicy

log = logging.getLogger("urbanpulse.spool")


_HEADER = struct.Struct("<IIIQ")
HEADER_BYTES = _HEADER.size
_SUFFIX = ".seg"
_MAX_RECORD = 2**31


class SpoolError(Exception):
    """The spool directory cannot be used (permissions, disk)."""


class SpoolFull(SpoolError):
    """The record does not fit within ``max_bytes``."""


@dataclass(frozen=True)
class SpoolRecord:
    lines: list[str]
    points: int
    created_ms: int
    size: int  # bytes on disk, header included


@dataclass(frozen=True)
class SpoolDepth:
    records: int
    points: int
    bytes: int  # of the records not yet stored, headers included
    disk_bytes: int  # what the segment files occupy (what max_bytes limits)
    oldest_age_s: float  # 0.0 when empty


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int = 0
    records: int = 0
    points: int = 0
    # read position: records/points/bytes already popped from this segment
    read_offset: int = 0
    read_records: int = 0
    read_points: int = 0
    head_created_ms: int | None = None  # created_ms of the record at read_offset


def encode_record(lines: list[str], created_ms: int) -> bytes:
    payload = "\n".join(lines).encode("utf-8")
    if len(payload) >= _MAX_RECORD:
        raise ValueError(f"a spool record of {len(payload)} bytes is too large")
    rest = _HEADER.pack(0, len(payload), len(lines), created_ms)[4:] + payload
    return struct.pack("<I", zlib.crc32(rest)) + rest


def _read_record(data: bytes | memoryview, offset: int) -> tuple[int, int, int, bytes] | None:
    """(size, points, created_ms, payload) of the record at offset, or None if torn/corrupt."""
    if len(data) - offset < HEADER_BYTES:
        return None
    crc, length, points, created_ms = _HEADER.unpack_from(data, offset)
    end = offset + HEADER_BYTES + length
    if end > len(data):
        return None
    if zlib.crc32(data[offset + 4 : end]) != crc:
        return None
    return HEADER_BYTES + length, points, created_ms, bytes(data[offset + HEADER_BYTES : end])


class Spool:
    """Thread-safe; one writer/reader thread plus readers of ``depth()``."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync: FsyncPolicy = "always",
        fsync_interval_s: float = 1.0,
    ) -> None:
        if segment_bytes > max_bytes:
            raise ValueError(f"segment_bytes {segment_bytes} must be <= max_bytes {max_bytes}")
        self.path = path
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # open for appending to self._segments[-1]
        self._unsynced = False
        self._last_sync = time.monotonic()
        self._lock_fd: int | None = None
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o640)
            try:
                # Two gateways appending to and deleting one spool would lose batches.
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                raise SpoolError(
                    f"spool directory {str(path)!r} is in use by another process "
                    "(each gateway needs its own [spool] path)"
                ) from None
            self._load()
        except OSError as exc:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            raise SpoolError(f"spool directory {str(path)!r} cannot be used: {exc}") from None

    # -- opening -----------------------------------------------------------------------------
    def _load(self) -> None:
        for file in sorted(self.path.glob("*" + _SUFFIX)):
            stem = file.name.removesuffix(_SUFFIX)
            if not stem.isdigit():
                continue
            segment = _Segment(int(stem), file)
            self._scan(segment)
            if segment.records:
                self._segments.append(segment)
            else:
                file.unlink()
        self._segments.sort(key=lambda s: s.seq)
        depth = self._depth_locked()
        if depth.records:
            log.warning(
                "spool %s holds %d points in %d batches (%d bytes, oldest %.0f s old); "
                "replaying them once InfluxDB answers",
                self.path,
                depth.points,
                depth.records,
                depth.bytes,
                depth.oldest_age_s,
            )

    def _scan(self, segment: _Segment) -> None:
        data = segment.path.read_bytes()
        offset = 0
        while (record := _read_record(data, offset)) is not None:
            size, points, created_ms, _payload = record
            if segment.records == 0:
                segment.head_created_ms = created_ms
            segment.records += 1
            segment.points += points
            offset += size
        segment.size = offset
        if offset < len(data):
            # A torn tail (crash mid-write) or damage: keep what was whole before it.
            log.warning(
                "spool segment %s: %d bytes after the last whole record (a write cut short "
                "by a crash?) dropped; %d earlier records kept",
                segment.path,
                len(data) - offset,
                segment.records,
            )
            with segment.path.open("r+b") as f:
                f.truncate(offset)
                os.fsync(f.fileno())

    # -- writing -----------------------------------------------------------------------------
    def append(self, lines: list[str], created_ms: int | None = None) -> None:
        """Add one batch as one record; durable per the fsync policy when this returns.
        Raises SpoolFull (nothing written) when it would exceed max_bytes."""
        if not lines:
            return
        record = encode_record(lines, created_ms or time.time_ns() // 1_000_000)
        with self._lock:
            disk = sum(s.size for s in self._segments)
            if disk + len(record) > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.path} is full: {disk} bytes used, a batch of {len(record)} "
                    f"bytes would exceed max_bytes {self.max_bytes}"
                )
            try:
                self._append_locked(record, len(lines))
            except OSError as exc:
                raise SpoolError(f"cannot write to spool {self.path}: {exc}") from None

    def _append_locked(self, record: bytes, points: int) -> None:
        if self._fd is None or self._segments[-1].size >= self.segment_bytes:
            self._new_segment()
        assert self._fd is not None
        segment = self._segments[-1]
        view = memoryview(record)
        written = 0
        try:
            while written < len(record):
                written += os.write(self._fd, view[written:])
        except OSError:
            # Cut the partial record off so that it cannot hide the records after it. If even
            # that fails, later records go to a new segment (a torn tail fails its CRC).
            try:
                os.ftruncate(self._fd, segment.size)
            except OSError:
                fd, self._fd = self._fd, None
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        if segment.records == segment.read_records:
            segment.head_created_ms = _HEADER.unpack_from(record)[3]
        segment.size += len(record)
        segment.records += 1
        segment.points += points
        self._unsynced = True
        if self.fsync == "always":
            os.fsync(self._fd)
            self._unsynced = False
        elif self.fsync == "interval":
            self._sync_if_due_locked()

    def _new_segment(self) -> None:
        self._close_fd()
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self.path / f"{seq:016d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o640)
        self._segments.append(_Segment(seq, path))
        if self.fsync == "always":
            self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close_fd(self) -> None:
        if self._fd is not None:
            if self._unsynced and self.fsync != "never":
                os.fsync(self._fd)
            self._unsynced = False
            os.close(self._fd)
            self._fd = None

    def sync_if_due(self) -> None:
        """For ``fsync = "interval"``: sync what was appended, at most every interval."""
        with self._lock:
            self._sync_if_due_locked()

    def _sync_if_due_locked(self) -> None:
        now = time.monotonic()
        if self._unsynced and self._fd is not None and now - self._last_sync >= (
            self.fsync_interval_s
        ):
            os.fsync(self._fd)
            self._unsynced = False
            self._last_sync = now

    # -- reading -----------------------------------------------------------------------------
    def peek(self) -> SpoolRecord | None:
        """The oldest record not yet popped, or None when the spool is empty."""
        with self._lock:
            while self._segments:
                segment = self._segments[0]
                if segment.read_records >= segment.records:
                    self._drop_head_locked()
                    continue
                with segment.path.open("rb") as f:
                    f.seek(segment.read_offset)
                    header = f.read(HEADER_BYTES)
                    length = _HEADER.unpack(header)[1] if len(header) == HEADER_BYTES else 0
                    data = header + f.read(length)
                record = _read_record(data, 0)
                if record is None:
                    # Checked when opened or written by us: the file changed under us.
                    log.error(
                        "spool segment %s is damaged at byte %d; its remaining %d records "
                        "are dropped",
                        segment.path,
                        segment.read_offset,
                        segment.records - segment.read_records,
                    )
                    self._drop_head_locked()
                    continue
                size, points, created_ms, payload = record
                return SpoolRecord(payload.decode("utf-8").split("\n"), points, created_ms, size)
            return None

    def pop(self, record: SpoolRecord) -> None:
        """Remove ``record`` (the one ``peek`` returned) once it is stored."""
        with self._lock:
            segment = self._segments[0]
            segment.read_offset += record.size
            segment.read_records += 1
            segment.read_points += record.points
            segment.head_created_ms = None
            if segment.read_records >= segment.records:
                self._drop_head_locked()
            else:
                with segment.path.open("rb") as f:
                    f.seek(segment.read_offset)
                    segment.head_created_ms = _HEADER.unpack(f.read(HEADER_BYTES))[3]

    def _drop_head_locked(self) -> None:
        segment = self._segments.pop(0)
        if not self._segments:
            self._close_fd()  # the head was also the segment being appended to
        segment.path.unlink(missing_ok=True)
        if self.fsync == "always":
            self._sync_dir()

    # -- state -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Records not yet popped."""
        with self._lock:
            return sum(s.records - s.read_records for s in self._segments)

    def depth(self) -> SpoolDepth:
        with self._lock:
            return self._depth_locked()

    def _depth_locked(self) -> SpoolDepth:
        records = points = size = 0
        oldest: int | None = None
        for s in self._segments:
            records += s.records - s.read_records
            points += s.points - s.read_points
            size += s.size - s.read_offset
            if oldest is None and s.records > s.read_records:
                oldest = s.head_created_ms
        age = max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0
        return SpoolDepth(records, points, size, sum(s.size for s in self._segments), age)

    def close(self) -> None:
        """Sync and release the directory (idempotent)."""
        with self._lock:
            self._close_fd()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
