# Host stand-ins for the ESP32's machine.I2C, UART, Pin and ADC (the unix port has none), for
# the firmware on a PC (fleet simulator, tests); never copied to a board. Behind each bus
# object sits an emulated chip (host/emu_*.py) that answers at the bus level: registers,
# frames, checksums, CRCs, timing. Chips are made on first use; tests reach them with chip()
# and attach(), and a board's folder may hold hostchips.json ({"i2c0.118": "missing"}) to
# inject faults: "missing" (no answer: NACK), "stuck" (bus timeout), "checksum", ...
# Small on purpose: it shares the simulated board's 64 KiB heap.
import errno
import json
import os

_chips = {}  # "i2c0.118", "uart2", "pin27", "adc34" -> emulated chip
_faults = None
# Which chip answers at an I2C address (bay sensors: QMC5883L at 0x0D).
I2C_CHIPS = {118: "bme280", 119: "bme280", 98: "scd41", 13: "qmc5883l"}
relay = None  # the lamp relay's Pin, which the emulated energy meter sees


def seed(key):
    """Stable per board folder and chip, so each simulated board has its own values."""
    h = 5381
    for c in os.getcwd() + key:
        h = (h * 33 + ord(c)) & 0x3FFFFFFF
    return h


def chip(key, kind=None):
    """The chip at key; made (an emulated `kind`) on first use."""
    global _faults
    c = _chips.get(key)
    if c is None and kind:
        if _faults is None:
            try:
                with open("hostchips.json") as f:
                    _faults = json.load(f)
            except OSError:
                _faults = {}
        c = _chips[key] = __import__("emu_" + kind).Chip(seed(key))
        c.fault = _faults.get(key)
    return c


def attach(key, c):
    """Put a chip (e.g. with test settings) at key, replacing what was there."""
    _chips[key] = c
    return c


def reset():
    global relay
    _chips.clear()
    relay = None


def nack():
    return OSError(errno.ENODEV)


class I2C:
    def __init__(self, id, scl=None, sda=None, freq=0):
        self.id = id

    def dev(self, addr, b=None):
        c = chip("i2c%d.%d" % (self.id, addr), I2C_CHIPS.get(addr))
        if c is None or c.fault == "missing":
            raise nack()
        if c.fault == "stuck":
            raise OSError(errno.ETIMEDOUT)
        if b is not None:
            c.write(b)
        return c

    def writeto(self, addr, b):
        self.dev(addr, bytes(b))

    def readfrom(self, addr, n):
        return self.dev(addr).read(n)

    def writeto_mem(self, addr, reg, b):
        self.dev(addr, bytes((reg,)) + b)

    def readfrom_mem(self, addr, reg, n):
        return self.dev(addr, bytes((reg,))).read(n)


class UART:
    """A chip's serial line: it writes into .out (pump() brings it up to date) and gets
    what we write through rx()."""

    def __init__(self, id, baud=9600, tx=0, rx=0, chip=None):
        self.key = "uart%d" % id
        self.kind = chip

    def dev(self):
        d = chip(self.key, self.kind)
        if d.fault in ("missing", "stuck"):
            return None  # nobody talking: silence on the line
        d.pump()
        return d

    def any(self):
        d = self.dev()
        return len(d.out) if d else 0

    def read(self, n=None):
        d = self.dev()
        if not d or not d.out:
            return None
        b = d.out[:n] if n else d.out
        d.out = d.out[len(b):]
        return bytes(b)

    def write(self, b):
        d = self.dev()
        if d:
            d.rx(bytes(b))


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, n, mode=0, pull=None, chip=None):
        global relay
        self.n = n
        self.level = self.active = 0
        self.handler = None
        self.kind = chip
        if chip == "relay":
            relay = self
            self.kind = None

    def value(self, v=None):
        if self.kind:
            d = chip("pin%d" % self.n, self.kind)
            d.deliver(self)
            return d.level(self)
        if v is None:
            return self.level
        self.level = 1 if v else 0

    def irq(self, trigger=0, handler=None):
        self.handler = handler
        self.active = 1 if trigger == self.IRQ_RISING else 0


class Counter:
    """machine.Counter: a hardware unit counting the edges on a pin (the chip's, counted
    by the chip: emu_pulse.count)."""

    RISING = 1
    FALLING = 2

    def __init__(self, unit, src=None, edge=RISING, filter_ns=0):
        if src is None:  # from emuserver.py: Counter(pin)
            src = unit
        self.pin = src

    def value(self, v=None):
        d = chip("pin%d" % self.pin.n, self.pin.kind)
        n = d.count()
        if v is not None:
            d.counted = 0
        return n


class ADC:
    def __init__(self, pin, chip=None):
        self.key = "adc%d" % pin.n
        self.kind = chip

    def read_u16(self):
        return chip(self.key, self.kind).u16()

    def read_uv(self):
        # The ESP32's calibrated reading, on the emulated linear 0..3.3 V scale.
        return self.read_u16() * 3300000 // 65535
