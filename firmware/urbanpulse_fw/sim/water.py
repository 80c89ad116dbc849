# Simulated water-level gauge: slow drift, a small tide-like swing, rain surges that decay.
import math

from urbanpulse_fw.sim import base


class Sensor(base.Sensor):
    def setup(self):
        self.mean = self.rng.uniform(40, 400)
        self.drift = 0.0
        self.surge = 0.0

    def read(self, t):
        h, _day, dt = self.step(t)
        r = self.rng
        self.drift = self.ar(self.drift, dt, 6 * 3600)
        self.surge *= math.exp(-dt / (4 * 3600))
        if r.chance(dt / (3 * 86400)):  # a rain event every few days
            self.surge += r.uniform(20, 150)
        level = self.mean + 15 * self.drift + self.surge + 2 * math.sin(base.TAU * h / 12.4)
        level += 0.3 * r.gauss()
        return [("water_level", round(base.clamp(level, -500, 5000), 1))]
