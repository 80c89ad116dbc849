# Emulated A02YYUW ultrasonic sensor mounted mount_cm above the datum, looking down at the
# river: a frame FF H L SUM (distance in mm) every 100 ms. The level follows the simulated
# river (or the test's .level_cm); .outliers are distances (mm) sent once each, in turn;
# fault "checksum" sends wrong sums.
import time

from urbanpulse_fw import clock
from urbanpulse_fw.sim import water


class Chip:
    fault = None

    def __init__(self, seed=1, mount_cm=600):
        self.sim = water.Sensor(seed, 0.1)
        self.mount = mount_cm
        self.level_cm = None
        self.outliers = []
        self.out = b""
        self.t = time.ticks_ms()
        self.rng = self.sim.rng

    def pump(self):
        n = time.ticks_diff(time.ticks_ms(), self.t) // 100
        if n <= 0:
            return
        self.t = time.ticks_add(self.t, n * 100)
        level = self.level_cm
        if level is None:
            level = dict(self.sim.read(clock.now_ms()))["water_level"]
        for _ in range(min(n, 16)):
            if self.outliers:
                d = self.outliers.pop(0)
            else:
                d = int((self.mount - level) * 10 + 3 * self.rng.gauss())
                d = max(250, min(7500, d))
            h, lo = d >> 8, d & 255
            s = (0xFF + h + lo + (1 if self.fault == "checksum" else 0)) & 255
            self.out += bytes((0xFF, h, lo, s))
        self.out = self.out[-256:]

    def rx(self, b):
        pass
