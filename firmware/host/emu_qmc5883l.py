# Emulated QMC5883L magnetometer under a parking bay (I2C 0x0D): chip id 0xFF at 0x0D, data
# X/Y/Z little-endian at 0x00..0x05, status (data ready) at 0x06, control at 0x09..0x0B.
# The field is the earth's plus a parked car's (the simulated bay's occupancy, or the test's
# .occupied) plus a car driving past now and then (.pass_car(ms) from a test).
import time

from emu_regs import Regs
from urbanpulse_fw import clock
from urbanpulse_fw.sim import parking

CAR = (420, -380, 950)  # what a parked car's steel adds, in counts (8 gauss range)
PASSING = (260, -200, 520)  # a car driving past: a weaker, short disturbance


class Chip(Regs):
    def __init__(self, seed=1):
        super().__init__()
        self.sim = parking.Sensor(seed, 1)
        r = self.sim.rng
        self.earth = (int(r.uniform(-1500, 1500)), int(r.uniform(-1500, 1500)),
                      int(r.uniform(2000, 4000)))
        self.r[0x0D] = 0xFF
        self.occupied = None
        self.passing = time.ticks_ms()
        self.auto_traffic = True  # random cars driving past

    def pass_car(self, ms):
        self.passing = time.ticks_add(time.ticks_ms(), ms)

    def store(self, reg, v):
        self.r[reg] = v
        if reg == 0x0A and v & 0x80:  # soft reset
            self.r[0x09] = 0

    def load(self, reg):
        continuous = self.r[0x09] & 3 == 1
        self.r[0x06] = 1 if continuous else 0
        if reg != 0 or not continuous:
            return
        now = time.ticks_ms()
        rng = self.sim.rng
        occ = self.occupied
        if occ is None:
            occ = dict(self.sim.read(clock.now_ms()))["occupied"]
        if self.auto_traffic and rng.chance(0.004):  # about one car every minute at 4 reads/s
            self.pass_car(int(rng.uniform(800, 2500)))
        v = []
        for i in range(3):
            x = self.earth[i] + (CAR[i] if occ else 0) + int(4 * rng.gauss())
            if time.ticks_diff(self.passing, now) > 0:
                x += PASSING[i]
            v += (x & 255, (x >> 8) & 255)
        self.r[0:6] = bytes(v)
