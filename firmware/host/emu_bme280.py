# Emulated Bosch BME280 on I2C: chip id, calibration NVM, ctrl_hum/ctrl_meas/status and the
# data registers. A forced measurement takes 8 ms (status bit 3 "measuring" meanwhile) and
# latches raw ADC values that the datasheet's compensation turns into the simulated air's
# temperature, humidity and pressure (or the test's .fixed values, or raw .adc values).
import time

from emu_regs import Regs
from urbanpulse_fw import clock
from urbanpulse_fw.drivers import bme280
from urbanpulse_fw.sim import air

# Calibration of the datasheet's worked example (T, P) and a typical part (H).
T_CAL = (27504, 26435, -1000)
P_CAL = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
H_CAL = (75, 362, 0, 313, 50, 30)


def _le(v):
    v &= 0xFFFF
    return (v & 255, v >> 8)


def _search(f, target, lo, hi, rising):
    """The ADC value (lo..hi) whose compensated value f(adc) is closest to target."""
    while lo < hi:
        mid = (lo + hi) // 2
        if (f(mid) < target) == rising:
            lo = mid + 1
        else:
            hi = mid
    return lo


class Chip(Regs):
    def __init__(self, seed=1, t_cal=T_CAL, p_cal=P_CAL, h_cal=H_CAL):
        super().__init__()
        r = self.r
        r[0xD0] = 0x60
        b = []
        for v in t_cal + p_cal:
            b += _le(v)
        r[0x88:0x88 + 24] = bytes(b)
        h1, h2, h3, h4, h5, h6 = h_cal
        r[0xA1] = h1
        r[0xE1:0xE8] = bytes(_le(h2) + (h3, (h4 >> 4) & 255, (h4 & 15) | (h5 & 15) << 4,
                                         (h5 >> 4) & 255, h6 & 255))
        r[0xF7:0xFF] = b"\x80\x00\x00\x80\x00\x00\x80\x00"  # reset values: no measurement
        self.cal = (t_cal, p_cal, h_cal)
        self.sim = air.Sensor(seed, 5)
        self.fixed = None  # {"temperature": .., "humidity": .., "pressure": ..} from a test
        self.adc = None  # (adc_T, adc_P, adc_H) from a test
        self.until = time.ticks_ms()

    def store(self, reg, v):
        self.r[reg] = v
        if reg == 0xE0 and v == 0xB6:
            self.r[0xF4] = 0  # soft reset
        if reg == 0xF4 and v & 3 in (1, 2):  # forced mode: measure now
            self.until = time.ticks_add(time.ticks_ms(), 8)
            at, ap, ah = self.adc or self.raw()
            if not self.r[0xF2] & 7:
                ah = 0x8000  # humidity oversampling 0: skipped
            self.r[0xF7:0xFF] = bytes((ap >> 12, (ap >> 4) & 255, (ap & 15) << 4, at >> 12,
                                       (at >> 4) & 255, (at & 15) << 4, ah >> 8, ah & 255))
            self.r[0xF4] = v & 0xFC  # back to sleep mode when done

    def load(self, reg):
        busy = time.ticks_diff(self.until, time.ticks_ms()) > 0
        self.r[0xF3] = 8 if busy else 0

    def raw(self):
        d = self.fixed or dict(self.sim.read(clock.now_ms()))
        c = self.cal[0] + self.cal[1] + self.cal[2]
        f = bme280.compensate
        # Temperature first: pressure and humidity depend on it (t_fine).
        at = _search(lambda a: f(c, a, 0, 0)[0], round(d["temperature"] * 100), 0, 0xFFFFF,
                     True)
        ap = _search(lambda a: f(c, at, a, 0)[1], round(d["pressure"] * 25600), 0, 0xFFFFF,
                     False)
        ah = _search(lambda a: f(c, at, ap, a)[2], round(d["humidity"] * 1024), 0, 0xFFFF,
                     True)
        return at, ap, ah
