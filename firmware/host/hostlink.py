# The board's machine.I2C, UART, Pin and ADC on a PC, as thin proxies: every bus transaction
# goes over a Unix socket to a separate MicroPython process (host/emuserver.py, started here
# on first use) where hostbus.py and the emulated chips (emu_*.py) answer. The board's own
# 64 KiB heap then holds what a real board holds: the drivers, not the chips. Never copied to
# a board. Checks that drive chips in-process (tests/mpy) import hostbus instead.
import binascii
import json
import os
import socket
import struct
import sys

from urbanpulse_fw import clock

_s = None  # the link to the emulator process
_n = 0
_pins = {}  # id -> Pin proxy with an interrupt handler


def _enc(a):
    if isinstance(a, (bytes, bytearray, memoryview)):
        return {"b": binascii.hexlify(a).decode()}
    return {"o": a.id} if isinstance(a, _Obj) else a


def _link():
    global _s
    if _s is None:
        path = "hostbus.sock"
        try:
            os.remove(path)
        except OSError:
            pass
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0")
        ls.listen(1)
        os.system("MICROPYPATH=%s %s -X heapsize=2m -c 'import emuserver' &" % (
            ":".join(p for p in sys.path if p), sys.executable))
        _s = ls.accept()[0]
        ls.close()
        os.remove(path)
    return _s


def _call(msg):
    s = _link()
    s.write(json.dumps(msg) + "\n")
    while True:
        r = json.loads(s.readline())
        if r[0] == "i":  # the chip drives a pin: run its interrupt handler now
            p = _pins[r[1]]
            p.handler(p)
            s.write('["h"]\n')
            continue
        if r[0] == "e":
            raise OSError(r[1])
        v = r[1]
        return binascii.unhexlify(v["b"]) if type(v) is dict else v


class _Obj:
    def __init__(self, *args, **kw):
        global _n
        _n += 1
        self.id = _n
        _call(["n", self.id, type(self).__name__, [_enc(a) for a in args],
               {k: _enc(v) for k, v in kw.items()}, clock.now_ms()])

    def _c(self, name, *args):
        return _call(["c", self.id, name, [_enc(a) for a in args], clock.now_ms()])


class I2C(_Obj):
    def writeto(self, addr, b):
        self._c("writeto", addr, b)

    def readfrom(self, addr, n):
        return self._c("readfrom", addr, n)

    def writeto_mem(self, addr, reg, b):
        self._c("writeto_mem", addr, reg, b)

    def readfrom_mem(self, addr, reg, n):
        return self._c("readfrom_mem", addr, reg, n)


class UART(_Obj):
    def any(self):
        return self._c("any")

    def read(self, n=None):
        return self._c("read", n)

    def write(self, b):
        self._c("write", b)


class Pin(_Obj):
    IN = 1
    OUT = 3
    PULL_UP = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def value(self, v=None):
        return self._c("value", v)

    def irq(self, trigger=0, handler=None):
        self.handler = handler
        _pins[self.id] = self
        self._c("irq", trigger, handler is not None)


class ADC(_Obj):
    def read_u16(self):
        return self._c("read_u16")

