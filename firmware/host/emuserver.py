# The emulated chips of one simulated board, in their own MicroPython process (started by
# host/hostlink.py, in the board's folder, on the board's MICROPYPATH): answers the board's bus
# transactions with hostbus.py's objects and the chips behind them. Exits when the board does.
import binascii
import json
import socket
import struct
import sys

import hostbus
from urbanpulse_fw import clock

_now = [0]
clock.now_ms = lambda: _now[0]  # the board's wall clock (emulated, maybe not set yet)
_objs = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(struct.pack("H", socket.AF_UNIX) + b"hostbus.sock\0")


def dec(a):
    if type(a) is dict:
        return binascii.unhexlify(a["b"]) if "b" in a else _objs[a["o"]]
    return a


def irq(p):
    # A chip drives the pin: the board runs the handler now (pulse timing is kept).
    s.write(json.dumps(["i", p.link_id]) + "\n")
    s.readline()


while True:
    line = s.readline()
    if not line:
        break  # the board is gone
    m = json.loads(line)
    try:
        if m[0] == "n":
            _now[0] = m[5]
            o = _objs[m[1]] = getattr(hostbus, m[2])(
                *[dec(a) for a in m[3]], **{k: dec(v) for k, v in m[4].items()})
            o.link_id = m[1]
            r = None
        else:
            _now[0] = m[4]
            o = _objs[m[1]]
            args = [dec(a) for a in m[3]]
            if m[2] == "irq":
                args[1] = irq if args[1] else None
            r = getattr(o, m[2])(*args)
            if isinstance(r, (bytes, bytearray)):
                r = {"b": binascii.hexlify(r).decode()}
        s.write(json.dumps(["r", r]) + "\n")
    except OSError as e:
        s.write(json.dumps(["e", e.args[0]]) + "\n")
    except Exception as e:  # a bug in an emulated chip: the board sees a bus error
        sys.print_exception(e)
        s.write('["e", 5]\n')
