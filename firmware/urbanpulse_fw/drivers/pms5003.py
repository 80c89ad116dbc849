# Plantower PMS5003 particle counter on a UART (9600 8N1), active mode: it sends a 32-byte
# frame about every second: 42 4D, length (28), 13 big-endian words, checksum = the 16-bit
# sum of all bytes before it. We report the "atmospheric environment" PM1/PM2.5/PM10.
# Its fan and laser last about 8000 hours: when samples are minutes apart it sleeps between
# them (command E4) and wakes 30 s before the next one, as the datasheet asks for stable data.
import time

from urbanpulse_fw.drivers import base

if False:  # for type checkers only: const() is the compiler's own (an import would cost heap)
    from micropython import const

# Frames start with 42 4D; commands are 42 4D, command, data (2 bytes), sum (2 bytes).
_START = const(b"\x42\x4d")
_FRAME_LENGTH = const(28)  # the length field: the bytes after it
_SLEEP = const(b"\x42\x4d\xe4\x00\x00\x01\x73")  # command E4, data 0: sleep
_WAKE = const(b"\x42\x4d\xe4\x00\x01\x01\x74")  # command E4, data 1: wake up

STALE_MS = 10000  # frames come every 0.2..2.3 s; none for this long means it stopped
WARM_MS = 30000  # after waking: the fan needs this long before the data is stable


class Sensor(base.Sensor):
    def __init__(self, uart):
        self.uart = uart
        self.buf = b""
        self.pm = None
        self.at = self.heard = time.ticks_ms()  # when the last good frame came (or we started)
        self.bad = False  # the last frame had a wrong checksum or length
        self.asleep = False
        self.wake = self.warm = self.at

    def tick(self, now):
        if self.asleep:
            if time.ticks_diff(time.ticks_ms(), self.wake) >= 0:  # wake it up
                self.uart.write(_WAKE)
                self.asleep = False
                self.pm = None
                # No fault for the warm-up: frames (and data) are expected from its end on.
                self.warm = self.heard = self.at = time.ticks_add(time.ticks_ms(), WARM_MS)
            return
        n = self.uart.any()
        if not n:
            return
        b = self.buf + (self.uart.read(n) or b"")
        while True:
            i = b.find(_START)
            if i < 0:
                b = b[-1:]  # a lone 0x42 may start the next frame
                break
            b = b[i:]
            if len(b) < 32:
                break
            f = b[:32]
            self.heard = time.ticks_ms()
            self.dead = False
            s = 0
            for x in f[:30]:
                s += x
            if f[2] << 8 | f[3] != _FRAME_LENGTH or s & 0xFFFF != f[30] << 8 | f[31]:
                self.bad = True
                b = b[2:]  # resynchronise on the next 42 4D
                continue
            self.bad = False
            if time.ticks_diff(self.heard, self.warm) >= 0:  # not while the fan spins up
                self.pm = (f[10] << 8 | f[11], f[12] << 8 | f[13], f[14] << 8 | f[15])
                self.at = time.ticks_ms()
            b = b[32:]
        self.buf = b[-63:]

    def sample(self, t):
        if self.asleep:  # sampled earlier than planned (a new interval): wake it now
            self.wake = time.ticks_ms()
            self.tick(0)
            return []
        self.tick(0)
        now = time.ticks_ms()
        if self.dead or time.ticks_diff(now, self.heard) > STALE_MS:
            self.pm = None
            self.dead = True  # until a frame comes: no wrap of ticks makes it look fresh
            return "timeout"  # silence on the line
        if self.bad:
            return "checksum"  # the latest frame was corrupt: no sample from an older one
        if time.ticks_diff(now, self.at) > STALE_MS:
            return "timeout"
        pm = self.pm
        if pm is None:
            return []  # just started: no frame yet
        if pm[2] > 2000 or not pm[0] <= pm[1] <= pm[2]:
            return "range"
        if self.interval_ms > 3 * WARM_MS:
            self.uart.write(_SLEEP)
            self.asleep = True
            # Awake and warm a little (a tenth of the warm-up) before the next sample.
            self.wake = time.ticks_add(now, self.interval_ms - WARM_MS - WARM_MS // 10)
        return [("pm1", pm[0]), ("pm25", pm[1]), ("pm10", pm[2])]
