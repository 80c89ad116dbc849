# Ultrasonic distance sensor looking down at the river (A02YYUW, or a JSN-SR04T in mode 1) on
# a UART (9600 8N1). It sends a 4-byte frame every ~100 ms: FF, distance high, distance low
# (mm), sum = (FF + high + low) & FF. The level is the mounting height minus the median of
# the last pings, so a bird or a splash (one wild ping) does not move it.
import time

from urbanpulse_fw.drivers import base

if False:  # for type checkers only: const() is the compiler's own (an import would cost heap)
    from micropython import const

STALE_MS = 3000
_HEADER = const(0xFF)  # first byte of a frame
_MIN_MM = const(30)  # closer: the blind zone
_MAX_MM = const(7500)  # farther: no echo


class Sensor(base.Sensor):
    wait_ms = 2000  # a deep-sleep wake: the first pings (one every ~100 ms)

    def __init__(self, uart, mount_cm, pings=5):
        self.uart = uart
        self.mount = mount_cm
        self.n = pings
        self.mm = []  # the last pings, distance in mm, oldest first
        self.buf = b""
        self.at = self.heard = time.ticks_ms()
        self.bad = None  # why the last frame was refused

    def tick(self, now):
        n = self.uart.any()
        if not n:
            return
        b = self.buf + (self.uart.read(n) or b"")
        i = 0
        while i + 4 <= len(b):
            if b[i] != _HEADER:
                i += 1
                continue
            self.heard = time.ticks_ms()
            self.dead = False
            if (_HEADER + b[i + 1] + b[i + 2]) & 0xFF != b[i + 3]:
                self.bad = "checksum"
                i += 1
                continue
            d = b[i + 1] << 8 | b[i + 2]
            i += 4
            if not _MIN_MM <= d <= _MAX_MM:
                self.bad = "range"  # blind zone or no echo
                continue
            self.bad = None
            self.mm.append(d)
            if len(self.mm) > self.n:
                self.mm.pop(0)
            self.at = time.ticks_ms()
        self.buf = b[i:]

    def sample(self, t):
        self.tick(0)
        now = time.ticks_ms()
        if self.dead or time.ticks_diff(now, self.heard) > STALE_MS:
            self.mm = []
            self.dead = True  # until a frame comes: no wrap of ticks makes it look fresh
            return "timeout"  # silence on the line
        if self.bad:
            return self.bad  # the latest frame was corrupt or out of range
        if time.ticks_diff(now, self.at) > STALE_MS:
            self.mm = []
            return "timeout"
        if len(self.mm) < min(self.n, 3):
            return []  # just started: a median of fewer pings would let a wild one through
        s = sorted(self.mm)
        k = len(s)
        med = s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2
        return [("water_level", round(self.mount - med / 10, 1))]
