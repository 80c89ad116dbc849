# Simulated soil probe: moisture dries out over days and jumps after rain; temperature lags
# and damps the daily air cycle.
import math

from urbanpulse_fw.sim import base


class Sensor(base.Sensor):
    def setup(self):
        self.moisture = self.rng.uniform(18, 40)
        self.t_bias = self.rng.uniform(-1, 1)

    def read(self, t):
        h, day, dt = self.step(t)
        r = self.rng
        # Dries towards 8 % over days, faster in the afternoon; rain now and then.
        dry = (0.3 + base.activity(h)) * dt / (4 * 86400)
        self.moisture -= (self.moisture - 8) * dry
        if r.chance(dt / (3 * 86400)):
            self.moisture += r.uniform(5, 20)
        self.moisture = base.clamp(self.moisture, 3, 60)
        # Soil lags and damps the air's daily cycle.
        temp = 11 + 8 * base.season(day) + 2.5 * math.cos(base.TAU * (h - 18) / 24) + self.t_bias
        return [("soil_moisture", round(base.clamp(self.moisture + 0.2 * r.gauss(), 0, 100), 1)),
                ("soil_temperature", round(base.clamp(temp + 0.1 * r.gauss(), -40, 80), 1))]
