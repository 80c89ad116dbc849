# What the simulated sensors share: a seeded generator, daily-pattern shapes, the base class.
import math

TAU = 2 * math.pi


class Rng:
    """xorshift32: small, the same on every port, independent of the global `random`."""

    def __init__(self, seed):
        self.s = (seed & 0xFFFFFFFF) or 0x9E3779B9
        for _ in range(4):  # spread nearby seeds apart
            self.u32()

    def u32(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def random(self):
        return (self.u32() >> 8) / 16777216  # 24 bits: exact even in single precision

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.random()

    def gauss(self):
        x = 1.0 - self.random()  # (0, 1]
        return math.sqrt(-2.0 * math.log(x)) * math.cos(TAU * self.random())

    def chance(self, p):
        return self.random() < p

    def poisson(self, mean):
        if mean <= 0:
            return 0
        if mean > 30:
            return max(0, int(mean + math.sqrt(mean) * self.gauss() + 0.5))
        n = 0
        p = self.random()
        x = math.exp(-mean)
        while p > x:
            n += 1
            p *= self.random()
        return n


def local_hour(t, offset=0):
    """Hour of the local day as a float in [0, 24); t in Unix ms, offset from UTC in s."""
    return ((t // 1000 + offset) % 86400) / 3600


def day_of_year(t, offset=0):
    """Approximate day of the year, 0 = 1 January (good to a day; enough for seasons)."""
    return ((t // 1000 + offset) // 86400) % 365.2425


def clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def rush(h):
    """Traffic rush hours: morning peak at 8:00, broader evening peak around 17:30."""
    return math.exp(-((h - 8.0) / 1.5) ** 2) + 0.8 * math.exp(-((h - 17.5) / 2.0) ** 2)


def activity(h):
    """City activity: lowest at 4:00, highest at 16:00."""
    return 0.5 - 0.5 * math.cos(TAU * (h - 4.0) / 24)


def season(day):
    """-1 in mid January, +1 in mid July."""
    return -math.cos(TAU * (day - 15) / 365.25)


class Sensor:
    """A kind's module subclasses this as `Sensor`, with setup() for its own state and
    read(t) returning (field, value) pairs for a sample taken at t (Unix ms). It has the
    drivers' interface (sensors.py sets .name and .interval_ms); it never fails."""

    def __init__(self, seed, interval_s, offset=0):
        self.rng = Rng(seed)
        self.interval_s = interval_s
        self.offset = offset  # local time - UTC, s
        self.last = None
        self.setup()

    fault = None
    name = "sim"
    interval_ms = 5000

    def setup(self):
        pass

    def poll(self, now):
        pass

    def step(self, t):
        """(local hour, day of year, seconds since the previous reading)."""
        dt = self.interval_s if self.last is None or t <= self.last else (t - self.last) / 1000
        self.last = t
        return local_hour(t, self.offset), day_of_year(t, self.offset), dt

    def ar(self, x, dt, tau):
        """AR(1) step: unit-variance noise correlated over tau seconds."""
        x0 = math.exp(-dt / tau)
        return x * x0 + math.sqrt(1 - x0 * x0) * self.rng.gauss()
