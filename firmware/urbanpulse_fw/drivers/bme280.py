# Bosch BME280 (temperature, humidity, pressure) on I2C, forced mode, oversampling x1, from
# the datasheet (BST-BME280-DS002): chip id 0x60 at 0xD0, calibration at 0x88..0xA1 and
# 0xE1..0xE7, data at 0xF7..0xFE, and its integer compensation formulas (4.2.3).
import time

from urbanpulse_fw.drivers import base


def _u16(b, i):
    return b[i] | b[i + 1] << 8


def _s16(b, i):
    v = b[i] | b[i + 1] << 8
    return v - 65536 if v & 0x8000 else v


def calibration(c, h):
    """(T1..T3, P1..P9, H1..H6) from the 26 bytes at 0x88 and the 7 bytes at 0xE1."""
    t = (_u16(c, 0), _s16(c, 2), _s16(c, 4))
    p = (_u16(c, 6),) + tuple(_s16(c, i) for i in range(8, 24, 2))
    h4 = h[3] << 4 | h[4] & 0x0F
    h5 = h[5] << 4 | h[4] >> 4
    hh = (c[25], _s16(h, 0), h[2], h4 - 4096 if h4 & 0x800 else h4,
          h5 - 4096 if h5 & 0x800 else h5, h[6] - 256 if h[6] & 0x80 else h[6])
    return t, p, hh


def comp_t(adc, t):
    """(t_fine, temperature in 0.01 degC): BME280_compensate_T_int32."""
    t1, t2, t3 = t
    v1 = (((adc >> 3) - (t1 << 1)) * t2) >> 11
    v2 = (((((adc >> 4) - t1) * ((adc >> 4) - t1)) >> 12) * t3) >> 14
    tf = v1 + v2
    return tf, (tf * 5 + 128) >> 8


def comp_p(adc, tf, p):
    """Pressure in Pa as Q24.8 (divide by 256): BME280_compensate_P_int64."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = p
    v1 = tf - 128000
    v2 = v1 * v1 * p6
    v2 = v2 + ((v1 * p5) << 17)
    v2 = v2 + (p4 << 35)
    v1 = ((v1 * v1 * p3) >> 8) + ((v1 * p2) << 12)
    v1 = (((1 << 47) + v1) * p1) >> 33
    if v1 == 0:
        return 0  # avoid a division by zero
    n = (((1048576 - adc) << 31) - v2) * 3125
    r = abs(n) // abs(v1)  # C's division truncates towards zero
    r = -r if (n < 0) != (v1 < 0) else r
    v1 = (p9 * (r >> 13) * (r >> 13)) >> 25
    v2 = (p8 * r) >> 19
    return ((r + v1 + v2) >> 8) + (p7 << 4)


def comp_h(adc, tf, h):
    """Relative humidity in %RH as Q22.10 (divide by 1024): bme280_compensate_H_int32."""
    h1, h2, h3, h4, h5, h6 = h
    x = tf - 76800
    x = ((((adc << 14) - (h4 << 20) - (h5 * x)) + 16384) >> 15) * (
        ((((((x * h6) >> 10) * (((x * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    x = x - (((((x >> 15) * (x >> 15)) >> 7) * h1) >> 4)
    x = 0 if x < 0 else 419430400 if x > 419430400 else x
    return x >> 12


class Sensor(base.Sensor):
    def __init__(self, name, interval_ms, i2c, addr):
        super().__init__(name, interval_ms)
        self.i2c = i2c
        self.addr = addr
        self.cal = None

    def setup(self):
        i2c, a = self.i2c, self.addr
        if i2c.readfrom_mem(a, 0xD0, 1)[0] != 0x60:
            return "chip_id"
        if i2c.readfrom_mem(a, 0xF3, 1)[0] & 1:
            return "timeout"  # still copying its calibration from NVM (just powered up)
        self.cal = calibration(i2c.readfrom_mem(a, 0x88, 26), i2c.readfrom_mem(a, 0xE1, 7))
        if not (self.cal[0][0] and self.cal[1][0]):
            self.cal = None
            return "range"  # all-zero calibration: not a BME280's NVM
        i2c.writeto_mem(a, 0xF5, b"\x00")  # no IIR filter, standby irrelevant in forced mode
        i2c.writeto_mem(a, 0xF2, b"\x01")  # humidity x1 (applies at the next ctrl_meas write)
        self.ready = True
        return None

    def sample(self, t):
        if not self.ready:
            r = self.setup()
            if r:
                return r
        i2c, a = self.i2c, self.addr
        i2c.writeto_mem(a, 0xF4, b"\x25")  # temperature x1, pressure x1, forced mode
        time.sleep_ms(10)  # 9.3 ms at most for x1/x1/x1 (datasheet 9.1)
        n = 0
        while i2c.readfrom_mem(a, 0xF3, 1)[0] & 8:  # measuring
            n += 1
            if n > 10:
                return "timeout"
            time.sleep_ms(2)
        d = i2c.readfrom_mem(a, 0xF7, 8)
        ap = d[0] << 12 | d[1] << 4 | d[2] >> 4
        at = d[3] << 12 | d[4] << 4 | d[5] >> 4
        ah = d[6] << 8 | d[7]
        if ap == 0x80000 or at == 0x80000 or ah == 0x8000:
            # Reset values: nothing measured. The chip lost its settings (a brown-out of the
            # sensor alone): set it up again next time.
            self.ready = False
            return "range"
        tc, pc, hc = self.cal  # type: ignore[misc]
        tf, temp = comp_t(at, tc)
        pa = comp_p(ap, tf, pc) / 25600
        rh = comp_h(ah, tf, hc) / 1024
        if not (-40 <= temp / 100 <= 85 and 300 <= pa <= 1100):
            return "range"
        return [("temperature", round(temp / 100, 2)), ("humidity", round(rh, 1)),
                ("pressure", round(pa, 2))]
