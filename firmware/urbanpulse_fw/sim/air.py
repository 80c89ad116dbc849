# Simulated air-quality station: PM peaks at rush hours and under the night inversion,
# temperature and humidity follow the day and the season, pressure drifts slowly.
import math

from urbanpulse_fw.sim import base


class Sensor(base.Sensor):
    def setup(self):
        r = self.rng
        self.site = r.uniform(0.6, 1.6)  # how polluted the street is
        self.t_bias = r.uniform(-1.5, 1.5)
        self.noise = r.gauss()
        self.pressure = r.uniform(1000, 1025)

    def read(self, t):
        h, day, dt = self.step(t)
        r = self.rng
        self.noise = self.ar(self.noise, dt, 900)
        # Rush-hour exhaust plus a night-time inversion that traps particles.
        pm25 = self.site * (5 + 22 * base.rush(h) + 4 * (1 - base.activity(h)))
        pm25 *= math.exp(0.3 * self.noise)
        pm25 = base.clamp(pm25 + 0.3 * r.gauss(), 0.5, 1500)
        pm10 = pm25 * r.uniform(1.4, 1.9)
        pm1 = pm25 * r.uniform(0.6, 0.8)
        daily = math.cos(base.TAU * (h - 15) / 24)  # warmest at 15:00
        temp = 11 + 9 * base.season(day) + 5 * daily + self.t_bias + 0.2 * r.gauss()
        hum = 68 - 18 * daily + 4 * self.noise + r.gauss()
        # A random walk pulled back towards 1013 hPa over days.
        self.pressure += 0.3 * math.sqrt(dt / 3600) * r.gauss()
        self.pressure -= (self.pressure - 1013) * min(1, dt / 864000)
        self.pressure = base.clamp(self.pressure, 960, 1050)
        return [("pm1", round(pm1, 1)), ("pm25", round(pm25, 1)), ("pm10", round(pm10, 1)),
                ("temperature", round(base.clamp(temp, -40, 50), 1)),
                ("humidity", round(base.clamp(hum, 5, 100), 1)),
                ("pressure", round(self.pressure, 1))]
