# Telemetry messages, CONTRACT.md v1:
#   {"v":1,"boot":B,"seq":S,"samples":[{"t":ms,...},...]}
# 1..100 samples, oldest first; seq counts messages from 0 within one boot. A board with a
# device key seals them (v2, seal.py): "v":2, and "prev" and "mac" after the samples.
#
# Samples are kept as small pre-encoded JSON byte strings and a message is streamed to the
# socket chunk by chunk: no big string is ever built, which matters on a 64 KiB heap.

from urbanpulse_fw import SCRATCH

if False:  # for type checkers only: no typing module on the board
    from typing import Any  # noqa: F401  (used in type comments)

# RAM taken by one buffered sample besides its bytes: its offset in the outbox (a list slot:
# 8 bytes on a 64-bit port, 4 on the ESP32), so that the budget is about RAM.
SAMPLE_OVERHEAD = 8


def format_float(x):
    """Up to 4 decimals, trailing zeros cut but one kept ("100.0": still a float in JSON).
    repr() would give 8.199999999999999 for round(8.2, 1)."""
    s = ("%.4f" % x).rstrip("0")
    if s[-1] == ".":
        s += "0"
    return "0.0" if s == "-0.0" else s


# Scratch for building one sample, allocated once: a sample is then copied out in a single
# allocation instead of a list, a joined str, its bytes and a stamped copy (those short-lived
# ~150-byte blocks between long-lived samples fragmented a 64 KiB heap).
_mv = memoryview(SCRATCH)


def _value(x):
    # JSON text of a field's value; None: left out (NaN, infinities, other types).
    if x is True or x is False:
        return "true" if x else "false"
    if isinstance(x, int):
        return "%d" % x
    if isinstance(x, float) and x - x == 0:  # inf - inf and NaN are not 0
        return format_float(x)
    return None


def encode(head, fields):
    """One sample as compact JSON: head (b'{"t":%d' % t, t in Unix ms; or b"" for the fields
    alone), then fields, (name, value) pairs with bool, int or float values. Non-finite
    floats are left out: JSON has no NaN, the contract forbids it. A memoryview into the
    scratch buffer, valid until the next call (Outbox.add copies it)."""
    b = SCRATCH
    n = len(head)
    b[0:n] = head
    for name, x in fields:
        s = _value(x)
        if s is None:
            continue
        p = (',"%s":%s' % (name, s)).encode()
        k = n + len(p)
        if k >= len(b):  # bigger than the scratch (very many fields): the slow way
            out = head
            for name, x in fields:
                s = _value(x)
                if s is not None:
                    out += (',"%s":%s' % (name, s)).encode()
            return out + b"}"
        b[n:k] = p
        n = k
    b[n] = 0x7D  # }
    return _mv[:n + 1]


class Message:
    """The telemetry message in flight: the oldest `count` samples of the outbox. It keeps its
    seq and samples until acknowledged, so a retry sends the very same bytes.

    The payload is streamed piece by piece (piece(j) for j in range(pieces)) rather than
    joined: no allocation the size of the message, which a fragmented 64 KiB heap may not
    have in one piece. An index, not a generator: a generator object takes a block of heap
    that a long-running board may not have in one piece either (it stalled publishing)."""

    def __init__(self, outbox, seq, count, spooled=False, boot=-1):
        self.outbox = outbox
        self.boot = outbox.boot if boot < 0 else boot  # another: resent from the last start
        self.seq = seq
        self.count = count
        # Read back from the flash spool: still there until acknowledged, and each sample in
        # the outbox keeps the spool's 10-byte suffix ("*", CRC, newline).
        self.spooled = spooled
        self.pid = 0  # MQTT packet id once published
        sl = self.seal = outbox.seal
        self.head = b'{"v":%d,"boot":%d,"seq":%d,"samples":[' % (
            2 if sl else 1, self.boot, seq)
        n = len(self.head) + count + 1  # commas between samples, "]}" (or the seal's tail)
        if sl:
            n += len(sl.tail) - 2
        for i in range(count):
            n += len(self.part(i))
        self.size = n
        self.pieces = 2 * count + 1  # head, sample, ",", sample, .., "]}"

    def part(self, i):
        # The i-th sample; from RAM without a copy (a memoryview into the outbox's buffer).
        ob = self.outbox
        if self.spooled:
            return ob.mv[ob.offs[i]:ob.offs[i + 1] - 10]
        return ob.part(i)

    def piece(self, j):
        if j == 0:
            return self.head
        if j == self.pieces - 1:
            return self.seal.tail if self.seal else b"]}"
        return self.part(j >> 1) if j & 1 else b","


class Outbox:
    """Samples held in RAM: the message in flight (oldest first) followed by the samples not
    sent yet, back to back in one buffer allocated once (`buf`, offsets in `offs`): no heap
    object per sample, so a long run does not fragment the heap into holes too small for
    anything (what happened with a bytes object per sample on a 64 KiB heap).

    Bounded by max_bytes (the samples' bytes plus SAMPLE_OVERHEAD each): when a new sample
    does not fit, the unsent samples move to the flash spool (spool.py) if there is one, else
    the oldest unsent samples are dropped. The samples of the message in flight are never
    dropped, so a retry repeats it exactly. One message is in flight at a time.

    Order: [message in flight] [spool, oldest first] [unsent RAM samples]. The spool only
    takes unsent RAM samples and is sent before them, so samples go out oldest first. While
    the spool holds samples, everything goes through it: take() first moves the unsent RAM
    samples behind the spool's, then reads the oldest back into this buffer (no other RAM).
    """

    def __init__(self, boot, max_samples=50, max_bytes=12288):
        if not 1 <= max_samples <= 100:
            raise ValueError("max_samples must be 1..100")
        self.boot = boot
        self.max_samples = max_samples
        self.buf = None  # type: Any
        self.resize(max_bytes)
        self.count = 0  # samples held
        self.msg = None  # type: Message | None  # in flight: the oldest msg.count samples
        self.next_seq = 0
        self.nbytes = 0
        self.dropped = 0
        self.spool = None  # type: Any  # the spool.Spool, or None: RAM only
        self.seal = None  # type: Any  # the seal.Seal (a board with a device key), or None
        self.flash = 0  # flash budget of the spool (0: none)
        # The one Message object, set up anew for each message (one in flight at a time): a
        # long-fragmented heap may have no block for a new one (what a soak test found).
        self._m = Message(self, 0, 0)

    def resize(self, max_bytes):
        # Only while empty. At least one sample of any size fits (the newest is kept even
        # when it alone is over budget).
        self.max_bytes = max_bytes
        self.buf = None
        self.mv = None  # type: Any
        self.buf = bytearray(max(max_bytes, len(SCRATCH)))
        self.mv = memoryview(self.buf)
        # offs[i]: where the i-th oldest sample starts; offs[count]: the bytes in use. Even the
        # smallest sample (about 36 bytes) costs 36 + SAMPLE_OVERHEAD of the budget.
        self.offs = [0] * (max_bytes // (36 + SAMPLE_OVERHEAD) + 3)  # type: list

    def part(self, i):
        o = self.offs
        return self.mv[o[i]:o[i + 1]]

    def _cut(self, i, k):
        # Forget samples i..i+k-1: what follows moves down, in pieces no longer than the gap
        # (slice assignment copies with memcpy: source and target must not overlap).
        o = self.offs
        a = o[i]
        n = o[i + k] - a
        end = o[self.count]
        mv = self.mv
        try:
            while a + n < end:
                m = min(n, end - a - n)
                mv[a:a + m] = mv[a + n:a + n + m]
                a += m
        except MemoryError:
            # No heap even for a view: the rest byte by byte, which allocates nothing. A move
            # left half done would leave the buffer and the offsets at odds (samples twice).
            b = self.buf
            while a + n < end:
                b[a] = b[a + n]
                a += 1
        for j in range(i, self.count - k + 1):
            o[j] = o[j + k] - n
        self.count -= k

    def _ram_sent(self):
        m = self.msg
        return m.count if m is not None else 0

    def _flash(self):
        # Samples in the spool, less those of the message in flight read back from it (they
        # are counted in RAM; unless the spool was full and dropped them meanwhile).
        sp = self.spool
        if sp is None:
            return 0
        m = self.msg
        return sp.count - (m.count if m is not None and m.spooled and sp.inflight else 0)

    def pending(self):
        """Samples not in a message yet (RAM and flash)."""
        return self.count - self._ram_sent() + self._flash()

    def held(self):
        """Samples not acknowledged yet, in RAM and flash (health "buffered")."""
        return self.count + self._flash()

    def lost(self):
        """Samples dropped for want of room (health "dropped")."""
        return self.dropped + (self.spool.dropped if self.spool else 0)

    def full(self):
        return self.pending() >= self.max_samples

    def open_spool(self):
        """The flash spool (loaded at start when there is a flash budget: loading it later, in
        an outage, may find no room in a heap fragmented by a long run); None if none."""
        if self.spool is None and self.flash:
            try:
                from urbanpulse_fw import spool

                self.spool = spool.Spool("spool", self.flash)
            except MemoryError:
                return None
        return self.spool

    def spill(self, stop=False):
        """Move the unsent RAM samples to the flash spool (when RAM is full). stop: a clean
        stop (reboot, deep sleep, Ctrl-C), RAM is about to go: the samples of an unacknowledged
        message in flight go as well, before the others (they are the oldest), and the message
        is forgotten: a late PUBACK changes nothing, it is sent again after the start (at least
        once). A message read from the spool is still there, unacknowledged."""
        sent = self._ram_sent()
        if self.open_spool() is None:
            return
        if stop and self.msg is not None:
            spooled = self.msg.spooled  # if so, still in the spool: RAM can forget them
            self.msg = None
            if sent and not spooled:
                try:
                    from urbanpulse_fw import hw, spoolfirst

                    spoolfirst.prepend(self.spool, self.part, 0, sent)
                    hw.unload("spoolfirst")
                except MemoryError:  # no room for its code: kept all the same, order not
                    self.spool.append(self.part, 0, sent)
            self.spool.inflight = None
        if self.count > sent:
            sp = self.spool
            sp.wrote = 0
            try:
                sp.append(self.part, sent, self.count)
            except MemoryError:
                # Cut short: what reached the flash leaves RAM, or it would be sent twice.
                k = sp.wrote
                if not stop and k:
                    size = self.offs[sent + k] - self.offs[sent] + k * SAMPLE_OVERHEAD
                    self._cut(sent, k)
                    self.nbytes -= size
                raise
        if stop:
            self.count = 0
            self.nbytes = 0
            return
        self.nbytes -= self.offs[self.count] - self.offs[sent] + (
            self.count - sent) * SAMPLE_OVERHEAD
        self.count = sent

    def _room(self, n):
        # The new sample (n bytes) fits the budget, the buffer and the offsets.
        return (self.count + 2 < len(self.offs) and self.nbytes + n + SAMPLE_OVERHEAD
                <= self.max_bytes and self.offs[self.count] + n <= len(self.buf))

    def add(self, sample):
        n = len(sample)
        sent = self._ram_sent()
        if self.flash and not self._room(n):
            if self.count > sent:
                self.spill()
            if not self._room(n) and self.open_spool() is not None:
                # The message in flight fills the buffer (read back from the spool): the new
                # sample goes behind the spool's, as the unsent ones did.
                self.spool.append(lambda i: sample, 0, 1)
                return
        while self.count > sent and not self._room(n):
            # Drop the oldest unsent sample, right after the message in flight.
            self.nbytes -= self.offs[sent + 1] - self.offs[sent] + SAMPLE_OVERHEAD
            self._cut(sent, 1)
            self.dropped += 1
        o = self.offs
        a = o[self.count]
        if a + n > len(self.buf) or self.count + 2 > len(o):
            self.dropped += 1  # bigger than the whole buffer beside the message in flight
            return
        self.mv[a:a + n] = sample
        self.count += 1
        o[self.count] = a + n
        self.nbytes += n + SAMPLE_OVERHEAD

    def take(self):
        """Put up to max_samples of the oldest pending samples into the next message; None if
        there is nothing to send or a message is still in flight."""
        if self.msg is not None:
            return None
        sl = self.seal
        p = sl.pending if sl else None  # a sealed message the last start left in flight
        if self.spool is not None and self.spool.count:
            if self.count:
                self.spill()  # newer than the spool's: behind them, in order
            k = self.spool.read(self.mv, self.offs, min(
                p[2] if p else self.max_samples, len(self.offs) - 2))
            if k:
                self.count = k
                self.nbytes = self.offs[k] + k * SAMPLE_OVERHEAD
                self.msg = self._m
                if p and k == p[2]:
                    Message.__init__(self._m, self, p[1], k, True, p[0])
                    if sl.resume(self._m):
                        return self.msg  # the same bytes again, under their own boot and seq
                Message.__init__(self._m, self, self.next_seq, k, True)
        if self.msg is None:
            if not self.count:
                return None
            self.msg = self._m
            Message.__init__(self._m, self, self.next_seq, min(self.count, self.max_samples))
        if sl:
            sl.seal(self.msg)
        self.next_seq += 1
        return self.msg

    def ack(self, msg):
        """Forget the samples of the message in flight: the broker has them."""
        if msg is not self.msg or msg is None:
            return
        self.msg = None
        if msg.spooled:
            self.spool.ack()
        self.nbytes -= self.offs[msg.count] + msg.count * SAMPLE_OVERHEAD
        self._cut(0, msg.count)
