# Bosch BME280 (temperature, humidity, pressure) on I2C, forced mode, oversampling x1, from
# the datasheet (BST-BME280-DS002): chip id 0x60 at 0xD0, calibration at 0x88..0xA1 and
# 0xE1..0xE7, data at 0xF7..0xFE, and its integer compensation formulas (4.2.3).
import time

from urbanpulse_fw.drivers import base

if False:  # for type checkers only: const() is the compiler's own (an import would cost heap)
    from micropython import const

# Registers (datasheet 5.3) and their bits.
_REG_ID = const(0xD0)
_CHIP_ID = const(0x60)
_REG_CALIB = const(0x88)  # 0x88..0xA1: T1..T3, P1..P9, H1
_REG_CALIB_H = const(0xE1)  # 0xE1..0xE7: H2..H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_MEASURING = const(0x08)
_IM_UPDATE = const(0x01)  # copying the calibration from NVM
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_DATA = const(0xF7)  # 0xF7..0xFE: pressure (20 bits), temperature (20), humidity (16)
_SKIPPED_20 = const(0x80000)  # a 20-bit reading's reset value: nothing measured
_SKIPPED_16 = const(0x8000)


def compensate(c, at, ap, ah):
    """(temperature in 0.01 degC, pressure in Pa as Q24.8, humidity in %RH as Q22.10) from
    the raw ADC values and the calibration c = (T1..T3, P1..P9, H1..H6): the datasheet's
    BME280_compensate_T_int32, BME280_compensate_P_int64 and bme280_compensate_H_int32, in
    one function (each function object costs heap)."""
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6 = c
    v1 = (((at >> 3) - (t1 << 1)) * t2) >> 11
    v2 = (((((at >> 4) - t1) * ((at >> 4) - t1)) >> 12) * t3) >> 14
    tf = v1 + v2  # t_fine
    temp = (tf * 5 + 128) >> 8
    v1 = tf - 128000
    v2 = v1 * v1 * p6
    v2 = v2 + ((v1 * p5) << 17)
    v2 = v2 + (p4 << 35)
    v1 = ((v1 * v1 * p3) >> 8) + ((v1 * p2) << 12)
    v1 = (((1 << 47) + v1) * p1) >> 33
    pa = 0  # avoid a division by zero
    if v1:
        n = (((1048576 - ap) << 31) - v2) * 3125
        r = abs(n) // abs(v1)  # C's division truncates towards zero
        r = -r if (n < 0) != (v1 < 0) else r
        v1 = (p9 * (r >> 13) * (r >> 13)) >> 25
        v2 = (p8 * r) >> 19
        pa = ((r + v1 + v2) >> 8) + (p7 << 4)
    x = tf - 76800
    x = ((((ah << 14) - (h4 << 20) - (h5 * x)) + 16384) >> 15) * (
        ((((((x * h6) >> 10) * (((x * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    x = x - (((((x >> 15) * (x >> 15)) >> 7) * h1) >> 4)
    x = 0 if x < 0 else 419430400 if x > 419430400 else x
    return temp, pa, x >> 12


class Sensor(base.Sensor):
    def __init__(self, i2c, addr):
        self.i2c = i2c
        self.addr = addr
        self.cal = [0] * 18  # T1..T3, P1..P9, H1..H6 (compensate), read at each set-up

    def sample(self, t):
        i2c, a = self.i2c, self.addr
        if not self.ready:  # set up (again: after a power cut the chip has lost it)
            if i2c.readfrom_mem(a, _REG_ID, 1)[0] != _CHIP_ID:
                return "chip_id"
            if i2c.readfrom_mem(a, _REG_STATUS, 1)[0] & _IM_UPDATE:
                return "timeout"  # still copying its calibration from NVM (just powered up)
            # 0x88..0xA1: T1 (unsigned), T2, T3, P1 (unsigned), P2..P9, a spare byte, H1;
            # 0xE1..0xE7: H2, H3, then H4 and H5 (12-bit, signed) share a byte, H6 (signed).
            # Decoded into self.cal in place, from small ints: no tuple the size of the
            # calibration, which a long-running heap may have no block for (a set-up comes
            # again after the sensor lost power).
            r = i2c.readfrom_mem(a, _REG_CALIB, 26)
            c = self.cal
            for i in range(12):
                v = r[2 * i] | r[2 * i + 1] << 8
                c[i] = v - 65536 if v > 32767 and i not in (0, 3) else v
            c[12] = r[25]
            r = i2c.readfrom_mem(a, _REG_CALIB_H, 7)
            v = r[0] | r[1] << 8
            c[13] = v - (v & 0x8000) * 2
            c[14] = r[2]
            v = r[3] << 4 | r[4] & 0x0F
            c[15] = v - (v & 0x800) * 2
            v = r[5] << 4 | r[4] >> 4
            c[16] = v - (v & 0x800) * 2
            c[17] = r[6] - (r[6] & 0x80) * 2
            if not (c[0] and c[3]):
                return "range"  # all-zero calibration: not a BME280's NVM
            i2c.writeto_mem(a, _REG_CONFIG, b"\x00")  # no IIR filter; standby: not in forced mode
            # Humidity x1 (applies at the next write of ctrl_meas).
            i2c.writeto_mem(a, _REG_CTRL_HUM, b"\x01")
            self.ready = True
        i2c.writeto_mem(a, _REG_CTRL_MEAS, b"\x25")  # temperature x1, pressure x1, forced mode
        time.sleep_ms(10)  # 9.3 ms at most for x1/x1/x1 (datasheet 9.1)
        n = 0
        while i2c.readfrom_mem(a, _REG_STATUS, 1)[0] & _MEASURING:
            n += 1
            if n > 10:
                return "timeout"
            time.sleep_ms(2)
        d = i2c.readfrom_mem(a, _REG_DATA, 8)
        ap = d[0] << 12 | d[1] << 4 | d[2] >> 4
        at = d[3] << 12 | d[4] << 4 | d[5] >> 4
        ah = d[6] << 8 | d[7]
        if ap == _SKIPPED_20 or at == _SKIPPED_20 or ah == _SKIPPED_16:
            # Reset values: nothing measured. The chip lost its settings (a brown-out of the
            # sensor alone): set it up again next time.
            self.ready = False
            return "range"
        temp, pa, rh = compensate(self.cal, at, ap, ah)
        pa /= 25600
        rh /= 1024
        if not (-40 <= temp / 100 <= 85 and 300 <= pa <= 1100):
            return "range"
        return [("temperature", round(temp / 100, 2)), ("humidity", round(rh, 1)),
                ("pressure", round(pa, 2))]
