# Simulated traffic counter: vehicles counted per period (Poisson around an hourly flow with
# rush-hour peaks), average speed falls as the road fills.
from urbanpulse_fw.sim import base


class Sensor(base.Sensor):
    def setup(self):
        self.capacity = self.rng.uniform(400, 1800)  # vehicles per hour the road takes
        self.free_speed = self.rng.uniform(35, 75)

    def read(self, t):
        h, _day, dt = self.step(t)
        r = self.rng
        # Vehicles per hour.
        flow = self.capacity * (0.03 + 0.4 * base.activity(h) + 0.55 * base.rush(h))
        period = max(1, int(dt + 0.5))
        vehicles = min(100000, r.poisson(flow * period / 3600))
        out = [("vehicles", vehicles), ("period_s", period)]
        if vehicles:  # no average speed without a vehicle
            load = min(1.0, flow / self.capacity)
            speed = self.free_speed * (1 - 0.6 * load * load) + 3 * r.gauss()
            out.append(("speed_avg", round(base.clamp(speed, 3, 200), 1)))
        return out
