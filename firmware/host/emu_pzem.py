# Emulated PZEM-004T v3 energy meter: answers Modbus RTU "read input registers" (0x04) with
# CRC-16/MODBUS about 20 ms after a request; ignores frames with a wrong CRC or another
# address (as the real one does); Modbus exception 0x02 for registers it does not have. The
# load is a lamp of .rated W behind the emulated relay (hostbus.relay); energy counts up.
import time

import hostbus
from urbanpulse_fw.drivers.pzem import frame
from urbanpulse_fw.sim import base


class Chip:
    fault = None

    def __init__(self, seed=1, addr=1):
        self.rng = base.Rng(seed)
        self.addr = addr
        self.rated = round(self.rng.uniform(40, 120))
        self.wh = 9000.0 + self.rng.uniform(0, 50000)  # a meter that has been running
        self.t = time.ticks_ms()
        self.out = b""
        self.pending = None
        self.due = self.t
        self.watts = None  # a test's load, else the lamp

    def power(self):
        if self.watts is not None:
            return self.watts
        r = hostbus.relay
        if r is None or not r.level:
            return 0.0
        return self.rated * (1 + 0.01 * self.rng.gauss())

    def pump(self):
        if self.pending and time.ticks_diff(time.ticks_ms(), self.due) >= 0:
            self.out += self.pending
            self.pending = None

    def rx(self, b):
        now = time.ticks_ms()
        p = self.power()
        self.wh += p * time.ticks_diff(now, self.t) / 3600000
        self.t = now
        if len(b) != 8 or frame(b[:6]) != b or b[0] not in (self.addr, 0xF8):
            return
        if b[1] != 4:
            body = bytes((self.addr, b[1] | 0x80, 1))
        elif b[2:6] != b"\x00\x00\x00\x0a":
            body = bytes((self.addr, 0x84, 2))
        else:
            a = int(p / 230 * 1000)
            w = int(p * 10)
            e = int(self.wh)
            regs = (2301, a & 0xFFFF, a >> 16, w & 0xFFFF, w >> 16, e & 0xFFFF, e >> 16, 500,
                    95 if p else 0, 0)
            body = bytearray((self.addr, 4, 20))
            for r in regs:
                body += bytes((r >> 8, r & 255))
        f = frame(body)
        if self.fault == "checksum":
            f = f[:-1] + bytes((f[-1] ^ 0xFF,))
        self.pending = f
        self.due = time.ticks_add(now, 20)
