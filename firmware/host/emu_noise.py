# Emulated analog sound-level meter (0.6..2.6 V = 30..130 dB(A), 50 dB per volt) on an ADC
# pin: the level follows the simulated street (quiet nights, rush hours) with second-to-second
# fluctuations and loud events; a test plays .levels (dB, one per reading) instead.
from urbanpulse_fw import clock
from urbanpulse_fw.sim import noise


class Chip:
    fault = None

    def __init__(self, seed=1):
        self.sim = noise.Sensor(seed, 1)
        self.levels = []

    def u16(self):
        if self.fault == "missing":
            return 40  # a floating input near 0 V
        if self.levels:
            db = self.levels.pop(0)
        else:
            r = self.sim.rng
            db = dict(self.sim.read(clock.now_ms()))["laeq"] + 2.5 * r.gauss()
            if r.chance(0.03):
                db += r.uniform(8, 25)  # a horn, a motorbike
        return max(0, min(65535, int(db / 50 / 3.3 * 65535 + 0.5)))
