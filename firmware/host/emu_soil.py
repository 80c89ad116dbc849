# Emulated capacitive soil moisture probe on an ADC pin: the raw reading falls from .dry (in
# air) to .wet (in water) with the simulated soil's moisture; a test sets .raw instead.
from urbanpulse_fw import clock
from urbanpulse_fw.sim import soil


class Chip:
    fault = None

    def __init__(self, seed=1, dry=52000, wet=21000):
        self.sim = soil.Sensor(seed, 60)
        self.dry = dry
        self.wet = wet
        self.raw = None

    def u16(self):
        if self.fault == "missing":
            return 120
        if self.raw is not None:
            return self.raw
        m = dict(self.sim.read(clock.now_ms()))["soil_moisture"]
        return int(self.dry - m / 100 * (self.dry - self.wet) + 80 * self.sim.rng.gauss())
