# Analog sound-level meter (DFRobot SEN0232 type: output voltage proportional to dB(A), time
# weighted by the module) on an ADC pin. The level is read once a second; each sample carries
# the period's LAeq as an energetic mean, 10*log10(mean(10^(L/10))), and LAmax, LAmin.
import math
import time

from urbanpulse_fw.drivers import base


class Sensor(base.Sensor):
    def __init__(self, adc, db_per_v=50.0, offset_db=0.0):
        self.adc = adc
        self.k = db_per_v
        self.off = offset_db
        self.next = time.ticks_ms()
        self.reset()

    def reset(self):
        self.n = 0
        self.e = 0.0  # sum of 10^(L/10 - 6): kept small for single-precision floats
        self.hi = 0.0
        self.lo = 999.0

    def level(self):
        a = self.adc
        uv = a.read_uv() if hasattr(a, "read_uv") else a.read_u16() * 3300000 // 65535
        if uv < 100000:
            return None  # under 0.1 V: the module's floor is 0.6 V (30 dB), so it is unplugged
        return uv * self.k / 1000000 + self.off

    def add(self):
        x = self.level()
        if x is None:
            return
        self.n += 1
        self.e += math.pow(10, x / 10 - 6)
        self.hi = max(self.hi, x)
        self.lo = min(self.lo, x)

    def tick(self, now):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.next) >= 0:
            self.next = time.ticks_add(self.next, 1000)
            if time.ticks_diff(now, self.next) >= 0:
                self.next = time.ticks_add(now, 1000)  # fell behind: no burst of readings
            self.add()

    def sample(self, t):
        self.tick(0)
        if not self.n:
            self.add()  # a period shorter than a second: one reading now
        if not self.n:
            return "range"
        laeq = 10 * math.log10(self.e / self.n) + 60
        hi, lo = self.hi, self.lo
        self.reset()
        if not (0 <= lo <= laeq + 0.01 and laeq <= hi + 0.01 and hi <= 160):
            return "range"
        return [("laeq", round(laeq, 1)), ("lamax", round(hi, 1)), ("lamin", round(lo, 1))]
