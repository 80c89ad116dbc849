# Sensirion SCD41 CO2 sensor on I2C (0x62), periodic mode: a new measurement every 5 s. Per
# its datasheet: 16-bit big-endian commands, answers in 16-bit words each followed by a CRC-8
# (polynomial 0x31, init 0xFF). CO2 in ppm; temperature = -45 + 175 * w / 65535,
# humidity = 100 * w / 65535.
import time

from urbanpulse_fw.drivers import base

if False:  # for type checkers only: const() is the compiler's own (an import would cost heap)
    from micropython import const

# Commands (datasheet 3.5 and 3.6).
_START_PERIODIC = const(0x21B1)
_STOP_PERIODIC = const(0x3F86)
_GET_DATA_READY = const(0xE4B8)
_DATA_READY = const(0x07FF)  # in its answer: any of these bits set means data is ready
_READ_MEASUREMENT = const(0xEC05)

STALE_MS = 15000  # three periods without a new measurement: the sensor stopped


def crc8_sensirion(data):
    """Sensirion CRC-8: polynomial 0x31, init 0xFF, no reflection; CRC(BE EF) = 0x92."""
    c = 0xFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


class Sensor(base.Sensor):
    wait_ms = 7000  # the first measurement comes 5 s after the start (asked once a second)

    def __init__(self, i2c, addr, th=False):
        self.i2c = i2c
        self.addr = addr
        self.th = th
        # The newest measurement's raw words (CO2, temperature, humidity), set in place: a
        # tuple and two floats made every 5 s and kept until the next fragment a long-running
        # 64 KiB heap. self.m: self.v once a measurement came, None while there is none.
        self.v = [0, 0, 0]
        self.m = None
        self.at = self.next = time.ticks_ms()
        self.bad = False

    def words(self, c, n=0, wait_ms=1):
        """Send command c; then read n words, or None if one fails its CRC."""
        self.i2c.writeto(self.addr, bytes((c >> 8, c & 255)))
        time.sleep_ms(wait_ms)
        b = self.i2c.readfrom(self.addr, 3 * n) if n else b""
        out = []
        for i in range(0, 3 * n, 3):
            if crc8_sensirion(b[i:i + 2]) != b[i + 2]:
                return None
            out.append(b[i] << 8 | b[i + 1])
        return out

    def tick(self, now):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.next) < 0:
            return
        self.next = time.ticks_add(now, 1000)  # ask once a second
        if not self.ready:
            # It may still be measuring from before a soft reset of the ESP32: stop first
            # (the sensor takes 500 ms), then start periodic measurement.
            self.words(_STOP_PERIODIC, 0, 500)
            self.words(_START_PERIODIC)
            self.ready = True
            self.err = None
            self.at = time.ticks_ms()
            return
        w = self.words(_GET_DATA_READY, 1)
        if w is None:
            self.bad = True
            return
        if w[0] & _DATA_READY:
            w = self.words(_READ_MEASUREMENT, 3)
            if w is None:
                self.bad = True
                return
            self.bad = False
            v = self.m = self.v
            v[0] = w[0]
            v[1] = w[1]
            v[2] = w[2]
            self.at = now
            self.dead = False

    def sample(self, t):
        self.tick(0)
        if not self.ready:
            return self.err or "timeout"  # to be set up again at the next poll
        if self.bad:
            return "checksum"
        if self.dead or time.ticks_diff(time.ticks_ms(), self.at) > STALE_MS:
            self.m = None
            self.dead = True  # until a measurement comes: no wrap of ticks makes it look fresh
            if time.ticks_diff(time.ticks_ms(), self.at) > STALE_MS:
                # Power cut of the sensor alone: it is idle again. Start it anew.
                self.ready = False
            return "timeout"
        m = self.m
        if m is None:
            return []  # the first measurement comes 5 s after the start
        if not 0 < m[0] <= 40000:
            return "range"
        if self.th:
            return [("co2", m[0]), ("temperature", round(-45 + 175 * m[1] / 65535, 2)),
                    ("humidity", round(100 * m[2] / 65535, 1))]
        return [("co2", m[0])]
