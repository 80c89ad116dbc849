# Emulated Sensirion SCD41 on I2C 0x62: 16-bit commands, words answered with CRC-8, periodic
# mode with a new measurement every 5 s; commands it does not accept in its state are NACKed.
# CO2 follows the traffic rush hours of the simulated city (or the test's .fixed values).
import time

from hostbus import nack
from urbanpulse_fw import clock
from urbanpulse_fw.drivers.scd41 import crc8_sensirion
from urbanpulse_fw.sim import base


class Chip:
    fault = None

    def __init__(self, seed=1):
        self.rng = base.Rng(seed)
        self.start = None  # ticks when periodic measurement started
        self.taken = 0  # measurements read so far
        self.resp = b""
        self.fixed = None  # (co2, temperature, humidity)
        self.period_ms = 5000

    def words(self, ws):
        b = b""
        for w in ws:
            two = bytes((w >> 8, w & 255))
            c = crc8_sensirion(two)
            if self.fault == "checksum":
                c ^= 0x5A
            b += two + bytes((c,))
        self.resp = b

    def made(self):
        if self.start is None:
            return 0
        return time.ticks_diff(time.ticks_ms(), self.start) // self.period_ms

    def write(self, b):
        c = b[0] << 8 | b[1]
        self.resp = b""
        if c == 0x3F86:  # stop_periodic_measurement
            self.start = None
        elif c == 0x21B1:  # start_periodic_measurement
            if self.start is not None:
                raise nack()
            self.start = time.ticks_ms()
            self.taken = 0
        elif c == 0xE4B8:  # get_data_ready_status: low 11 bits non-zero = ready
            self.words((0x8006 if self.made() > self.taken else 0x8000,))
        elif c == 0xEC05 and self.made() > self.taken:  # read_measurement
            self.taken = self.made()
            co2, t, rh = self.fixed or self.physics()
            self.words((co2, round((t + 45) * 65535 / 175), round(rh * 65535 / 100)))
        else:
            raise nack()

    def read(self, n):
        if len(self.resp) < n:
            raise nack()
        r = self.resp[:n]
        self.resp = b""
        return r

    def physics(self):
        h = base.local_hour(clock.now_ms())
        co2 = 420 + 180 * base.rush(h) + 60 * base.activity(h) + 15 * self.rng.gauss()
        return int(base.clamp(co2, 400, 5000)), 15 + 5 * base.activity(h), 55.0
