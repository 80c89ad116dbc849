# Simulated parking-bay sensor: a two-state process that flips rarely; the long-run occupancy
# is higher by day.
from urbanpulse_fw.sim import base


class Sensor(base.Sensor):
    MEAN_STAY_S = 5400

    def setup(self):
        self.busy = self.rng.uniform(0.6, 0.95)
        self.occupied = None

    def _target(self, h):
        return base.clamp(0.15 + self.busy * base.activity(h), 0.05, 0.95)

    def read(self, t):
        h, _day, dt = self.step(t)
        p = self._target(h)
        if self.occupied is None:
            self.occupied = self.rng.chance(p)
        elif self.occupied:
            self.occupied = not self.rng.chance(dt / self.MEAN_STAY_S)
        else:
            # Arrival rate chosen so the long-run occupancy is p.
            self.occupied = self.rng.chance(dt / self.MEAN_STAY_S * p / (1 - p))
        return [("occupied", self.occupied)]
