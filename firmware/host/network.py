# Host stand-in for MicroPython's `network` module, for the firmware on the unix port (fleet
# simulator, tests); never copied to a board. Only what urbanpulse_fw/hw.py uses: the host
# is always online, so connect() succeeds at once. Kept tiny: it stands in for C code, and the
# board's heap is 64 KiB.
import os
import sys

STA_IF = 0

# The host's Ctrl-C (gateway/urbanpulse/devtools/hostboard.py): the unix port raises
# KeyboardInterrupt from its SIGINT handler wherever the C code is, and one that lands in a
# garbage collection locks the heap for good. A board's REPL raises it between bytecodes. So
# a board started by hostboard.launch (which sets this variable) has a non-blocking pipe as
# stdin, and its end is the stop, raised here, in the call the main loop makes on every pass.
# Reading an empty non-blocking pipe gives None and allocates nothing.
_stop = sys.stdin.buffer if os.getenv("URBANPULSE_HOST_STOP") else None
# A board on a serial-like port (tests/support/pty_board.py): its stdin is the REPL's line,
# and Ctrl-C (0x03) on it interrupts the running firmware, as an ESP32's UART does (its
# interrupt character); other bytes that come while the firmware runs are dropped.
_tty = None
if os.getenv("URBANPULSE_HOST_TTY"):
    import select

    _tty = select.poll()
    _tty.register(sys.stdin, select.POLLIN)

# Stable per board folder (the board runs in its own), so each simulated board has its own
# RSSI and MAC.
_h = 5381
for _c in os.getcwd():
    _h = (_h * 33 + ord(_c)) & 0xFFFFFFFF
del _c


class WLAN:
    ssid = None

    def __init__(self, *args):
        pass

    def connect(self, ssid, *args):
        self.ssid = ssid

    def isconnected(self):
        if _stop and _stop.read(1) is not None:  # closed (b""), or written to
            raise KeyboardInterrupt  # the clean stop that follows does not come back here
        if _tty:
            for _ in _tty.ipoll(0):
                if sys.stdin.buffer.read(1) == b"\x03":
                    raise KeyboardInterrupt
        return self.ssid is not None

    def status(self, *args):
        return -60 - _h % 25 if args == ("rssi",) else _h

    active = status  # active(True): always active (hw.py ignores what it returns)

    def config(self, *args):
        return bytes([2, 0x55, _h >> 24, (_h >> 16) & 255, (_h >> 8) & 255, _h & 255])  # "mac"
