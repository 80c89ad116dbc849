# Simulated noise monitor: LAeq follows city activity (quiet at night, louder at rush
# hours); lamin <= laeq <= lamax always.
from urbanpulse_fw.sim import base


class Sensor(base.Sensor):
    def setup(self):
        self.site = self.rng.uniform(-6, 6)
        self.noise = 0.0

    def read(self, t):
        h, _day, dt = self.step(t)
        r = self.rng
        self.noise = self.ar(self.noise, dt, 300)
        laeq = 42 + 20 * base.activity(h) + 6 * base.rush(h) + self.site + 2 * self.noise
        laeq = base.clamp(laeq, 25, 110)
        lamin = base.clamp(laeq - r.uniform(3, 10), 20, laeq)
        lamax = base.clamp(laeq + r.uniform(3, 8 + 12 * base.activity(h)), laeq, 140)
        return [("laeq", round(laeq, 1)), ("lamax", round(lamax, 1)), ("lamin", round(lamin, 1))]
