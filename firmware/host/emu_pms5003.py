# Emulated Plantower PMS5003 in active mode: a 32-byte frame (42 4D, length 28, 13 big-endian
# words, 16-bit sum) every second on its TX line, with the simulated city's particles (or the
# test's .fixed (pm1, pm25, pm10)). Faults: "checksum" sends wrong sums.
import time

from urbanpulse_fw import clock
from urbanpulse_fw.sim import air


class Chip:
    fault = None

    def __init__(self, seed=1):
        self.sim = air.Sensor(seed, 1)
        self.out = b""
        self.t = time.ticks_ms()
        self.fixed = None
        self.period_ms = 1000
        self.sleeping = False
        self.commands = []  # the sleep (0) / wake (1) commands received

    def frame(self, pm1, pm25, pm10):
        w = (pm1, pm25, pm10, pm1, pm25, pm10, 50 * pm10, 15 * pm10, 3 * pm10, pm10, pm10 // 4,
             pm10 // 10, 0)
        b = bytearray(b"\x42\x4d\x00\x1c")
        for x in w:
            b += bytes((x >> 8, x & 255))
        s = sum(b) + (1 if self.fault == "checksum" else 0)
        return bytes(b) + bytes(((s >> 8) & 255, s & 255))

    def pump(self):
        n = time.ticks_diff(time.ticks_ms(), self.t) // self.period_ms
        if n <= 0:
            return
        self.t = time.ticks_add(self.t, n * self.period_ms)
        if self.sleeping:
            return
        pm = self.fixed
        if pm is None:
            d = dict(self.sim.read(clock.now_ms()))
            pm = (int(d["pm1"]), int(d["pm25"]), int(d["pm10"]))
        for _ in range(min(n, 3)):
            self.out += self.frame(*pm)
        self.out = self.out[-256:]  # the ESP32's UART receive buffer

    def rx(self, b):
        # Commands: 42 4D, command, data (2 bytes), 16-bit sum. E4 00 00: sleep, E4 00 01: wake.
        if (len(b) == 7 and b[:2] == b"\x42\x4d" and sum(b[:5]) == b[5] << 8 | b[6]
                and b[2] == 0xE4):
            self.sleeping = not b[4]
            self.commands.append(b[4])
