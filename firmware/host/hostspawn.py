# Starts the emulated chips' process (host/emuserver.py) for host/hostlink.py and returns the
# Unix socket connected to it. A module of its own so that hostlink.py can forget this code
# once the link is up (the board's 64 KiB heap). Never copied to a board.
import os
import socket
import struct
import sys


def link():
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.remove("hostbus.sock")
    except OSError:
        pass
    ls.bind(struct.pack("H", socket.AF_UNIX) + b"hostbus.sock\0")
    ls.listen(1)
    # In the board's folder, from the files on the MICROPYPATH the board was started with (a
    # ROMFS mount on sys.path is the board's own); it exits when the board does.
    path = os.getenv("MICROPYPATH") or ":".join(p for p in sys.path if p)
    os.system("MICROPYPATH=%s %s -X heapsize=2m -c 'import emuserver' &" % (path, sys.executable))
    s = ls.accept()[0]
    ls.close()
    os.remove("hostbus.sock")
    return s
