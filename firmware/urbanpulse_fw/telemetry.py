# Telemetry messages, CONTRACT.md v1:
#   {"v":1,"boot":B,"seq":S,"samples":[{"t":ms,...},...]}
# 1..100 samples, oldest first; seq counts messages from 0 within one boot.
#
# Samples are kept as small pre-encoded JSON byte strings and a message is streamed to the
# socket chunk by chunk: no big string is ever built, which matters on a 64 KiB heap.

if False:  # for type checkers only: no typing module on the board
    from typing import Any

# Heap taken by one buffered sample besides its bytes (object header, allocation rounding,
# slot), so that the budget is about RAM rather than payload.
SAMPLE_OVERHEAD = 48


def format_float(x):
    """Up to 4 decimals, trailing zeros cut but one kept ("100.0": still a float in JSON).
    repr() would give 8.199999999999999 for round(8.2, 1)."""
    s = ("%.4f" % x).rstrip("0")
    if s[-1] == ".":
        s += "0"
    return "0.0" if s == "-0.0" else s


def encode_sample(t, fields):
    """One sample as compact JSON bytes: t in Unix ms, fields (name, value) pairs with bool,
    int or float values. Non-finite floats are left out: JSON has no NaN, the contract
    forbids it."""
    return stamp(t, encode_fields(fields))


def stamp(t, rest):
    """A sample from its time and encode_fields() (kept apart while the clock is not set)."""
    return b'{"t":%d' % t + rest


def encode_fields(fields):
    out = []
    for name, x in fields:
        if x is True or x is False:
            s = "true" if x else "false"
        elif isinstance(x, int):
            s = "%d" % x
        elif isinstance(x, float) and x - x == 0:  # inf - inf and NaN are not 0
            s = format_float(x)
        else:
            continue
        out.append(',"%s":%s' % (name, s))
    out.append("}")
    return "".join(out).encode()


class Message:
    """The telemetry message in flight: the oldest `count` samples of the outbox. It keeps its
    seq and samples until acknowledged, so a retry sends the very same bytes.

    The payload is streamed (chunks()) rather than joined: no allocation the size of the
    message, which a fragmented 64 KiB heap may not have in one piece."""

    def __init__(self, outbox, seq, count, spooled=None):
        self.outbox = outbox
        self.seq = seq
        self.count = count
        self.spooled = spooled  # samples read from the flash spool, or None: the outbox's
        self.pid = 0  # MQTT packet id once published
        self.head = b'{"v":1,"boot":%d,"seq":%d,"samples":[' % (outbox.boot, seq)
        n = len(self.head) + count + 1  # commas between samples, "]}"
        for i in range(count):
            n += len(self.sample(i))
        self.size = n

    def sample(self, i):
        return self.spooled[i] if self.spooled is not None else self.outbox.sample(i)

    def chunks(self):
        yield self.head
        for i in range(self.count):
            if i:
                yield b","
            yield self.sample(i)
        yield b"]}"

    def payload(self):
        return b"".join(self.chunks())


class Outbox:
    """Samples held in RAM: the message in flight (oldest first) followed by the samples not
    sent yet, in a ring of slots allocated once (no list growing and shrinking on the heap).

    Bounded by max_bytes (approximate heap bytes of the samples): when a new sample does not
    fit, the unsent samples move to the flash spool (spool.py) if there is one, else the
    oldest unsent samples are dropped. The samples of the message in flight are never
    dropped, so a retry repeats it exactly. One message is in flight at a time.

    Order: [message in flight] [spool, oldest first] [unsent RAM samples]. The spool only
    takes unsent RAM samples and is sent before them, so samples go out oldest first.
    """

    def __init__(self, boot, max_samples=50, max_bytes=12288):
        if not 1 <= max_samples <= 100:
            raise ValueError("max_samples must be 1..100")
        self.boot = boot
        self.max_samples = max_samples
        self.resize(max_bytes)
        self.head = 0  # slot of the oldest sample
        self.count = 0  # samples held
        self.msg = None  # type: Message | None  # in flight: the oldest msg.count samples
        self.next_seq = 0
        self.nbytes = 0
        self.dropped = 0
        self.spool = None  # type: Any  # the spool.Spool, or None: RAM only
        self.flash = 0  # flash budget of the spool (0: none)

    def resize(self, max_bytes):
        # Only while empty. Even the smallest sample (about 36 bytes) costs 36 +
        # SAMPLE_OVERHEAD of the budget.
        self.max_bytes = max_bytes
        self.slots = [None] * (max_bytes // (36 + SAMPLE_OVERHEAD) + self.max_samples + 1)  # type: list

    def sample(self, i):
        """The i-th oldest sample held."""
        return self.slots[(self.head + i) % len(self.slots)]

    def _ram_sent(self):
        m = self.msg
        return m.count if m is not None and m.spooled is None else 0

    def pending(self):
        """Samples not in a message yet (RAM and flash)."""
        return self.count - self._ram_sent() + (self.spool.count if self.spool else 0) - (
            len(self.msg.spooled) if self.msg is not None and self.msg.spooled else 0)

    def held(self):
        """Samples not acknowledged yet, in RAM and flash (health "buffered")."""
        return self.count + (self.spool.count if self.spool else 0)

    def lost(self):
        """Samples dropped for want of room (health "dropped")."""
        return self.dropped + (self.spool.dropped if self.spool else 0)

    def full(self):
        return self.pending() >= self.max_samples

    def open_spool(self):
        """The flash spool (loaded at start when there is a flash budget); None if none."""
        if self.spool is None and self.flash:
            try:
                from urbanpulse_fw import spool

                self.spool = spool.Spool("spool", self.flash)
            except MemoryError:
                return None
        return self.spool

    def spill(self):
        """Move the unsent RAM samples to the flash spool (before a reboot or deep sleep, and
        when RAM is full)."""
        sent = self._ram_sent()
        if self.count <= sent or self.open_spool() is None:
            return
        n = len(self.slots)
        self.spool.append(self.sample(i) for i in range(sent, self.count))
        for i in range(sent, self.count):
            j = (self.head + i) % n
            self.nbytes -= len(self.slots[j]) + SAMPLE_OVERHEAD
            self.slots[j] = None
        self.count = sent

    def add(self, sample):
        slots = self.slots
        n = len(slots)
        sent = self._ram_sent()
        if self.flash and self.count > sent and (
                self.count == n or self.nbytes + len(sample) + SAMPLE_OVERHEAD > self.max_bytes):
            self.spill()
        while self.count > sent and (self.count == n or self.nbytes + len(sample)
                                     + SAMPLE_OVERHEAD > self.max_bytes):
            # Drop the oldest unsent sample, right after the message in flight: move the
            # message's samples up by one slot over it, then free the head slot.
            self.nbytes -= len(self.sample(sent)) + SAMPLE_OVERHEAD
            for i in range(sent, 0, -1):
                slots[(self.head + i) % n] = slots[(self.head + i - 1) % n]
            slots[self.head] = None
            self.head = (self.head + 1) % n
            self.count -= 1
            self.dropped += 1
        slots[(self.head + self.count) % n] = sample
        self.count += 1
        self.nbytes += len(sample) + SAMPLE_OVERHEAD

    def take(self):
        """Put up to max_samples of the oldest pending samples into the next message; None if
        there is nothing to send or a message is still in flight."""
        if self.msg is not None:
            return None
        if self.spool is not None and self.spool.count:
            # As many as the RAM budget allows: they are held in RAM until acknowledged.
            got = self.spool.read(max(1, min(self.max_samples,
                                             self.max_bytes // (100 + SAMPLE_OVERHEAD))))
            if got:
                self.msg = Message(self, self.next_seq, len(got), got)
        if self.msg is None:
            if not self.count:
                return None
            self.msg = Message(self, self.next_seq, min(self.count, self.max_samples))
        self.next_seq += 1
        return self.msg

    def ack(self, msg):
        """Forget the samples of the message in flight: the broker has them."""
        if msg is not self.msg or msg is None:
            return
        self.msg = None
        if msg.spooled is not None:
            self.spool.ack()
            return
        for _ in range(msg.count):
            self.nbytes -= len(self.slots[self.head]) + SAMPLE_OVERHEAD
            self.slots[self.head] = None
            self.head = (self.head + 1) % len(self.slots)
        self.count -= msg.count
