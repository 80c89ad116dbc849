# The board's machine.I2C, UART, Pin, ADC and Counter on a PC, as thin proxies: every bus
# transaction goes over a Unix socket to a separate MicroPython process (host/emuserver.py,
# started when this module is imported) where hostbus.py and the emulated chips (emu_*.py)
# answer. The board's own 64 KiB heap then holds what a real board holds: the drivers, not
# the chips.
# Never copied to a board. Checks that drive chips in-process (tests/mpy) import hostbus.
#
# It stands in for C code, so it allocates what C would: a call leaves nothing on the heap but
# the bytes a read returns (no JSON, no per-call dicts, lists, strings or closures that would
# fragment the 64 KiB heap). A call is a binary frame packed into a preallocated buffer; the
# answer's header is read into the same buffer. Frames, little-endian (emuserver.py decodes
# them):
#   request: object id (H), how many of a, b, c are arguments (B; | 4: the bytes are the last
#            argument), a, b, c (i), the board's clock in ms or 0 (q), length of the name (B)
#            and of the bytes (H), then the name (a method, or to make the object its type:
#            I2C, UART, Pin, ADC) and the bytes (a buffer; to make an object the chip's name);
#   answer:  INT, NONE, BYTES, ERR or IRQ (B), a number (I): INT its value, BYTES its length
#            (the bytes follow), ERR an errno, IRQ the id of a pin whose interrupt handler the
#            board runs now (it answers with one byte; the answer it waits for comes after).
import struct
import sys

from urbanpulse_fw import clock

# The emulator process, started now (bus.py imports this module once a driver needs a bus),
# by a module of its own that is forgotten at once: its code and strings would stay here.
_s = __import__("hostspawn").link()  # the link to the emulator process
del sys.modules["hostspawn"]
del sys
_objs = [None]  # id -> proxy (ids from 1): the chip may run a Pin's interrupt handler
_q = bytearray(26)  # the request's header, then the answer's
_o = _m = None  # the proxy and method name of the call __getattr__ hands out


def _call(a=None, b=None, c=None):
    # _o's method _m. machine's argument orders: ints, then maybe a buffer last
    # (writeto_mem(addr, reg, buf)).
    d = a if b is None else b if c is None else c
    if isinstance(d, int) or type(d) is bool:  # (a bool is no int here in MicroPython)
        d = None
    n = (a is not None) + (b is not None) + (c is not None) - (d is not None)
    # The board's clock, for the chips' time of day; 0: not emulated (no host_clock, no NTP
    # yet), the emulator reads the host's own, as clock.now_ms() would here (with a big int).
    struct.pack_into("<HBiiiqBH", _q, 0, _o.id, n if d is None else n | 4, a if n else 0,
                     b if n > 1 else 0, c if n > 2 else 0,
                     clock.now_ms() if clock._anchor else 0, len(_m), 0 if d is None else len(d))
    _s.write(_q)
    _s.write(_m)
    if d:
        _s.write(d)
    while True:
        if _s.readinto(_q, 5) < 5:
            raise OSError(5)  # EIO: the emulator process is gone
        v = _q[1] | _q[2] << 8 | _q[3] << 16 | _q[4] << 24
        k = _q[0]
        if k == 0:  # INT
            return v
        if k == 1:  # NONE
            return None
        if k == 2:  # BYTES: just what the caller asked for
            return _s.read(v)
        if k == 3:  # ERR
            raise OSError(v)
        p = _objs[v]  # IRQ: the chip drives a pin
        p.handler(p)
        _s.write(b"h")


class Pin:
    """A proxy of any of the four types, with machine.Pin's constants: I2C, UART and ADC are
    this class too (a class each would cost a few hundred bytes of heap). The emulator is told
    the type, known from bus.py's arguments: I2C(id, scl=, sda=, freq=), UART(id, baud, tx=,
    rx=, chip=), ADC(Pin, chip=), Pin(n, mode, pull, chip=); only what hostbus.py uses goes
    over: the bus or pin number (the ADC's pin), and the chip."""

    IN = 1
    OUT = 3
    PULL_UP = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1
    RISING = 1  # machine.Counter's
    FALLING = 2

    def __init__(self, n, *a, **kw):
        global _o, _m
        self.id = len(_objs)
        _objs.append(self)
        p = isinstance(n, Pin)
        _o = self
        if "src" in kw:  # Counter(unit, src=pin, edge=, filter_ns=): the pin's chip counts
            _m = "Counter"
            _call(kw["src"].id)
            return
        _m = "I2C" if "scl" in kw else "UART" if "tx" in kw else "ADC" if p else "Pin"
        _call(n.id if p else n, kw.get("chip"))

    def __getattr__(self, name):
        # Any other method, e.g. i2c.readfrom_mem(a, r, n): _call, told whose and which.
        global _o, _m
        _o = self
        _m = name
        return _call

    def irq(self, trigger=0, handler=None):
        global _o, _m
        self.handler = handler
        _o = self
        _m = "irq"
        _call(trigger, handler is not None)


I2C = UART = ADC = Counter = Pin
