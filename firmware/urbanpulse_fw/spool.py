# Samples waiting in flash: what the RAM outbox cannot hold while the broker is away, and what
# a reboot or a deep sleep must not lose. Bounded by max_bytes; when full, the oldest samples
# go and are counted (health "dropped").
#
# Layout (in the folder `spool/`): numbered segment files, oldest first, each about max_bytes/8;
# one record per line: the sample's JSON, "*", its CRC-32 in 8 hex digits, "\n". A record cut
# short by a power cut fails its CRC and is skipped (counted as dropped); after a (re)boot
# appends go on in the last segment only if its end is whole (spoolscan.py), so a torn tail
# never runs into a good record. Whole
# segments are deleted once sent, or dropped when the spool is full. `spool/pos` holds how far
# the oldest segment has been acknowledged (written to a temporary file, then renamed), so a
# reboot does not send it again.
#
# The flash-file helpers (record framing, atomic replace) are here, where they are used at
# run time; the modules loaded for a moment (spoolscan.py, spoolfirst.py, cfgtrial.py) import
# them from here, and this module imports none of them at its top: no import circle.
import binascii
import os


def crc(b):
    return b"%08x" % (binascii.crc32(b) & 0xFFFFFFFF)


def valid(line):
    # JSON object, "*", 8 hex digits, "\n": anything else is a torn or corrupt record.
    return (len(line) > 12 and line[-10] == 42 and line[-1] == 10 and line[0] == 123
            and crc(line[:-10]) == line[-9:-1])


def replace(path, text):
    """Write a small file atomically: a temporary file renamed over the old one."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    swap(path)


def swap(path):
    """path + ".tmp", written, takes the place of path."""
    try:
        os.rename(path + ".tmp", path)
    except OSError:  # FAT cannot rename over an existing file
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(path + ".tmp", path)


class Spool:
    def __init__(self, path="spool", max_bytes=262144):
        self.path = path
        self.max_bytes = max_bytes
        self.seg_bytes = max(1024, max_bytes // 8)
        self.segs = []  # type: list  # [number, size in bytes, records not yet acked]
        self.pos = 0  # bytes of the oldest segment already acknowledged
        self.count = 0  # records held
        self.wrote = 0  # records the current append() wrote
        self.nbytes = 0
        self.dropped = 0
        self.tail_open = False  # False: the next append starts a new segment
        self.inflight = None  # type: tuple | None  # (segment, end offset, records, bad)
        # What an earlier start left, by a module used once (its code would stay here).
        from urbanpulse_fw import hw, spoolscan

        spoolscan.scan(self, valid)
        hw.unload("spoolscan")

    def _file(self, n):
        return "%s/%d" % (self.path, n)

    def append(self, part, i, end):
        """Write encoded samples part(i), part(i + 1), .. part(end - 1) (JSON bytes), oldest
        first. (A function and a range, not an iterable: a generator object takes a block of
        heap that a long-running board may not have in one piece.)"""
        f = None
        try:
            while i < end:
                s = part(i)
                i += 1
                if f is None or not self.tail_open or self.segs[-1][1] >= self.seg_bytes:
                    if f is not None:
                        f.close()
                    if not self.tail_open or not self.segs or \
                            self.segs[-1][1] >= self.seg_bytes:
                        n = self.segs[-1][0] + 1 if self.segs else 1
                        self.segs.append([n, 0, 0])
                        self.tail_open = True
                    f = open(self._file(self.segs[-1][0]), "ab")  # noqa: SIM115  (open across records)
                f.write(s)
                f.write(b"*" + crc(s) + b"\n")
                seg = self.segs[-1]
                seg[1] += len(s) + 10
                seg[2] += 1
                self.nbytes += len(s) + 10
                self.count += 1
                self.wrote += 1  # the caller's count, should a MemoryError cut this short
        finally:
            if f is not None:
                f.close()
        while self.nbytes > self.max_bytes and len(self.segs) > 1:  # full: drop the oldest
            n, size, k = self.segs.pop(0)
            sent = 0
            if self.inflight is not None and self.inflight[0] == n:
                sent = self.inflight[2]  # in RAM in the message in flight: not lost
                self.inflight = None
            self.dropped += k - sent
            self.count -= k
            self.nbytes -= size
            self.pos = 0
            try:
                os.remove(self._file(n))
            except OSError:
                pass

    def read(self, mv, offs, n):
        """Copy up to n of the oldest records not yet acknowledged into mv, whole lines back to
        back: record i is mv[offs[i]:offs[i + 1]], its JSON followed by "*", CRC and newline
        (Outbox cuts those). How many; 0 when the spool is empty. Remembers where they end
        for ack(). Reads into the caller's buffer: a bytes object per record, between
        long-lived ones, fragmented a 64 KiB heap until a 256-byte line no longer fit."""
        k = 0
        offs[0] = 0
        while self.segs and not k:
            seg = self.segs[0]
            bad = 0
            end = self.pos  # file offset of the first record not read yet
            with open(self._file(seg[0]), "rb") as f:
                while not k and end < seg[1]:
                    f.seek(end)
                    top = f.readinto(mv)
                    if not top:
                        break
                    a = i = 0  # a: where the current line starts in mv
                    while i < top and k < n:
                        if mv[i] == 10:
                            if not valid(mv[a:i + 1]):
                                if k:
                                    break  # torn: the next read starts at it
                                bad += 1
                            else:
                                k += 1
                                offs[k] = i + 1
                            a = i + 1
                            if not k:
                                break  # torn record first: read again after it
                        i += 1
                    if a:
                        end += a
                    else:
                        # No newline in what was read: a torn last record, or a line longer
                        # than the buffer. Skipped either way.
                        line = f.readline()
                        end += top + len(line)
                        bad += 1
            self.inflight = (seg[0], end, k, bad)
            if not k:
                self.ack()  # only torn records left in this segment: skip them
        return k

    def ack(self):
        """The records of the last read() are delivered: forget them (in flash too)."""
        m = self.inflight
        self.inflight = None
        if m is None or not self.segs or self.segs[0][0] != m[0]:
            return  # that segment was dropped meanwhile (and counted then)
        seg = self.segs[0]
        seg[2] -= m[2]
        self.count -= m[2]
        self.dropped += m[3]
        if m[1] >= seg[1]:  # all read: gone from flash
            self.segs.pop(0)
            # Records counted when written but unreadable since (each skipped as torn and
            # counted as dropped then): no longer held.
            self.count -= seg[2]
            self.nbytes -= seg[1]
            self.pos = 0
            if not self.segs:
                self.tail_open = False
            try:
                os.remove(self._file(seg[0]))
            except OSError:
                pass
        else:
            self.pos = m[1]
        replace(self.path + "/pos", "%d %d\n" % (self.segs[0][0] if self.segs else 0, self.pos))
