# Simulated streetlight: on from dusk to dawn (day length follows the season), dimmed to
# 60 % late at night, standby power by day; the energy meter integrates power over time.
import math

from urbanpulse_fw.sim import base


class Sensor(base.Sensor):
    STANDBY_W = 0.5

    def setup(self):
        self.rated = round(self.rng.uniform(40, 120))
        self.mwh = None  # meter in integer mWh: single-precision floats would stall the count
        self.frac = 0.0
        self.power = 0.0

    def read(self, t):
        h, day, dt = self.step(t)
        r = self.rng
        if self.mwh is None:
            # A meter that has been running since 2024 at about 11.5 burning hours a day.
            days = max(0, (t // 1000 - 1704067200) // 86400)
            self.mwh = int(days * self.rated * 11.5 + r.uniform(0, 5000)) * 1000
        else:
            # The power of the last interval times its length: the meter only counts up.
            e = self.power * dt / 3.6 + self.frac
            whole = int(e)
            self.mwh += whole
            self.frac = e - whole
        day_len = 12 + 3.8 * math.sin(base.TAU * (day - 80) / 365.25)
        sunrise = 12.5 - day_len / 2
        sunset = 12.5 + day_len / 2
        lamp_on = h < sunrise - 0.25 or h > sunset + 0.25
        if lamp_on:
            dim = 60 if (h >= 23 or h < 5) else 100  # dimmed late at night
            self.power = base.clamp(self.rated * dim / 100 * (1 + 0.02 * r.gauss()) + 1, 1, 5000)
        else:
            dim = 0
            self.power = self.STANDBY_W
        return [("lamp_on", lamp_on), ("power", round(self.power, 1)), ("dim_level", dim),
                ("energy", round(self.mwh / 1000, 2))]
