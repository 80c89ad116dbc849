# The emulated chips of one simulated board, in their own MicroPython process (started by
# host/hostlink.py, in the board's folder, on the board's MICROPYPATH): answers the board's bus
# transactions with hostbus.py's objects and the chips behind them. Exits when the board does.
# The frames are binary (hostlink.py describes them): the board's side allocates no more than a
# C bus driver would; this side has a heap of its own and may.
import socket
import struct
import sys

import hostbus
from urbanpulse_fw import clock

REQUEST = "<HBiiiqBH"
REQUEST_LEN = struct.calcsize(REQUEST)
INT, NONE, BYTES, ERR, IRQ = range(5)

_now = [0]
_host_ms = clock.now_ms
# The board's wall clock (emulated, maybe not set yet), or when it is the host's, the host's.
clock.now_ms = lambda: _now[0] or _host_ms()
_objs = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(struct.pack("H", socket.AF_UNIX) + b"hostbus.sock\0")


def answer(kind, n=0):
    s.write(struct.pack("<BI", kind, n))


def irq(p):
    # A chip drives the pin: the board runs the handler now (pulse timing is kept).
    answer(IRQ, p.link_id)
    s.read(1)


def handle(o, args, name, d):
    if name == "Counter":  # hostbus.Counter(the Pin it counts)
        obj = _objs[o] = hostbus.Counter(_objs[args[0]])
        obj.link_id = o
        return None
    if name in ("I2C", "UART", "Pin", "ADC"):  # hostbus.I2C(id), UART(id, chip=), ...
        a = args[0]
        t = getattr(hostbus, name)
        chip = d.decode() if d else None
        obj = _objs[o] = t(a) if name == "I2C" else t(_objs[a] if name == "ADC" else a,
                                                         chip=chip)
        obj.link_id = o
        return None
    if name == "irq":
        args[1] = irq if args[1] else None
    elif d is not None:
        args.append(d)
    return getattr(_objs[o], name)(*args)


while True:
    try:
        h = s.read(REQUEST_LEN)
    except OSError:  # ECONNRESET: the board exited with a request unread
        break
    if not h or len(h) < REQUEST_LEN:
        break  # the board is gone
    o, n, a, b, c, _now[0], ln, ld = struct.unpack(REQUEST, h)
    name = s.read(ln).decode()
    d = s.read(ld) if n & 4 else None  # 4: a buffer (maybe empty) is the last argument
    try:
        r = handle(o, [a, b, c][:n & 3], name, d)
        if r is None:
            answer(NONE)
        elif isinstance(r, (bytes, bytearray)):
            answer(BYTES, len(r))
            s.write(r)
        else:
            answer(INT, r)
    except OSError as e:
        answer(ERR, e.args[0])
    except Exception as e:  # a bug in an emulated chip: the board sees a bus error
        sys.print_exception(e)
        answer(ERR, 5)
