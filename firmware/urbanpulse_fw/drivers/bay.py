# Parking bay sensor: a QMC5883L magnetometer (I2C 0x0D) under the bay. A car's steel bends
# the earth's field; the bay is occupied while the disturbance from the empty-bay baseline
# stays above a threshold. Hysteresis: a lower release threshold, and a state changes only
# after the new condition held for dwell_s, so a car driving past does not flip it. The
# first reading after a start decides at once (a deep-sleep wake has no time to dwell). A
# baseline learnt from the first reading (the bay empty when the board is installed) is kept
# in flash (BASE_FILE): a reset or a wake with a car in the bay must not learn the car.
import math
import time

from urbanpulse_fw.drivers import base

if False:  # for type checkers only: const() is the compiler's own (an import would cost heap)
    from micropython import const

# QMC5883L registers (datasheet 9.2) and status bits.
_REG_DATA = const(0x00)  # 0x00..0x05: X, Y, Z, 16 bits each, little-endian
_REG_STATUS = const(0x06)
_DRDY = const(0x01)  # new data ready
_OVL = const(0x02)  # overflow
_REG_CONTROL = const(0x09)
_REG_SET_RESET = const(0x0B)
_REG_ID = const(0x0D)
_CHIP_ID = const(0xFF)

STALE_MS = 5000
BASE_FILE = "bay_base"  # one bay sensor per board: the QMC5883L has one I2C address


def _s16(b, i):
    v = b[i] | b[i + 1] << 8
    return v - 65536 if v & 0x8000 else v


class Sensor(base.Sensor):
    wait_ms = 1500  # set up at the first poll, read at the next (every 250 ms)

    def __init__(self, i2c, addr, threshold, dwell_s, baseline=None):
        self.i2c = i2c
        self.addr = addr
        self.thr = threshold
        self.dwell = int(dwell_s * 1000)
        if baseline is None:
            try:
                with open(BASE_FILE) as f:
                    baseline = [float(x) for x in f.read().split()]
            except (OSError, ValueError):
                pass
        self.base = baseline  # learnt from the first reading when not configured
        self.occ = False
        self.since = None  # when the opposite condition started
        self.at = self.next = time.ticks_ms()
        self.got = False
        self.dev = 0.0

    def setup(self):
        i2c, a = self.i2c, self.addr
        if i2c.readfrom_mem(a, _REG_ID, 1)[0] != _CHIP_ID:
            return "chip_id"
        i2c.writeto_mem(a, _REG_SET_RESET, b"\x01")  # SET/RESET period, as the datasheet recommends
        i2c.writeto_mem(a, _REG_CONTROL, b"\x1d")  # continuous, 200 Hz, 8 gauss, oversampling 512
        self.ready = True
        return None

    def tick(self, now):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.next) < 0:
            return
        self.next = time.ticks_add(now, 250)
        if not self.ready:
            self.err = self.setup()
            self.at = now
            return
        i2c, a = self.i2c, self.addr
        st = i2c.readfrom_mem(a, _REG_STATUS, 1)[0]
        if not st & _DRDY:
            # No new data (200 per second when measuring): after 2 s it lost its settings
            # (a brown-out of the chip alone), so set it up again.
            if time.ticks_diff(now, self.at) > 2000:
                self.ready = False
            return
        d = i2c.readfrom_mem(a, _REG_DATA, 6)
        if st & _OVL:
            return  # overflow: field beyond the range, not a valid reading
        v = (_s16(d, 0), _s16(d, 2), _s16(d, 4))
        self.at = now
        self.dead = False
        b = self.base
        if b is None:
            b = self.base = list(v)
            with open(BASE_FILE, "w") as f:
                f.write("%d %d %d" % v)
        dev = self.dev = math.sqrt((v[0] - b[0]) ** 2 + (v[1] - b[1]) ** 2 + (v[2] - b[2]) ** 2)
        want = dev > (self.thr * 0.6 if self.occ else self.thr)
        if not self.got:
            self.got = True
            self.occ = want  # nothing to dwell on yet
        if want == self.occ:
            self.since = None
            if not want and dev < self.thr / 3:
                for i in range(3):  # follow the slow drift of an empty bay (temperature)
                    b[i] += (v[i] - b[i]) / 256
        elif self.since is None:
            self.since = now
        elif time.ticks_diff(now, self.since) >= self.dwell:
            self.occ = want
            self.since = None

    def sample(self, t):
        self.tick(0)
        if not self.ready:
            return self.err or "timeout"  # to be set up again at the next poll
        if self.dead or time.ticks_diff(time.ticks_ms(), self.at) > STALE_MS:
            self.dead = True  # until a reading comes: no wrap of ticks makes it look fresh
            return "timeout"
        if not self.got:
            return []  # just set up: the first reading comes at the next poll
        return [("occupied", self.occ)]
