# Peacefair PZEM-004T v3 energy meter, Modbus RTU over a UART (9600 8N1): "read input
# registers" (function 0x04) from 0x0000, 10 registers; every frame ends with a CRC-16/MODBUS,
# low byte first. Registers: voltage 0.1 V; current 0.001 A and power 0.1 W (32 bits, low
# word first); energy 1 Wh (32 bits); frequency 0.1 Hz; power factor 0.01; alarm.
import struct
import time

if False:  # for type checkers only: const() is the compiler's own (an import would cost heap)
    from micropython import const

_READ_INPUT = const(0x04)  # Modbus function: read input registers
_EXCEPTION = const(0x80)  # set in the function code of an exception answer
_REGISTERS = const(10)  # read from register 0: voltage .. alarm

TIMEOUT_MS = 200  # 25 bytes take 26 ms at 9600 baud; the meter answers within ~100 ms


def frame(body):
    """body followed by its CRC-16/MODBUS (reflected polynomial 0xA001, init 0xFFFF), low
    byte first."""
    c = 0xFFFF
    for b in body:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return bytes(body) + bytes((c & 255, c >> 8))


class Meter:
    def __init__(self, uart, addr=1):
        self.uart = uart
        self.addr = addr
        self.req = frame((addr, _READ_INPUT, 0, 0, 0, _REGISTERS))

    def read(self):
        """(volts, amps, watts, wh, hz, pf) or a fault string."""
        u = self.uart
        if u.any():
            u.read()  # stale bytes from an earlier, late answer
        u.write(self.req)
        t0 = time.ticks_ms()
        b = b""
        while len(b) < 25:
            n = u.any()
            if n:
                b += u.read(n) or b""
                if len(b) >= 5 and b[1] == _READ_INPUT | _EXCEPTION:
                    return "modbus" if frame(b[:3]) == b[:5] else "checksum"  # exception answer
            elif time.ticks_diff(time.ticks_ms(), t0) > TIMEOUT_MS:
                return "timeout"
            else:
                time.sleep_ms(5)
        if (b[0] != self.addr or b[1] != _READ_INPUT or b[2] != 2 * _REGISTERS
                or frame(b[:23]) != b[:25]):
            return "checksum"
        r = struct.unpack(">10H", b[3:23])
        return (r[0] / 10, (r[1] | r[2] << 16) / 1000, (r[3] | r[4] << 16) / 10,
                r[5] | r[6] << 16, r[7] / 10, r[8] / 100)
