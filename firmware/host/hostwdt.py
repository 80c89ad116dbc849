# Host stand-in for machine.WDT (the unix port has none), never copied to a board. A watcher
# process (a shell loop started with the board) checks how long ago feed() wrote to the file
# `wdt_fed` in the board's folder; past the timeout it does what the ESP32's watchdog does:
# resets the board, i.e. kills this process at once (SIGKILL, no clean-up), after noting
# "wdt" as the reset cause for the next start. A process, not a thread: no heap, no GIL.
#
# It stands in for C code, so it keeps what C would: the watcher's start is a module of its
# own, forgotten once it ran (hostwdtgo.py), and feed() writes one byte to a file kept open
# (opening the file on every feed left a file object and a string to collect each time).
import sys
import time


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.last = time.ticks_ms()
        self.f = open("wdt_fed", "wb")  # noqa: SIM115  (open for as long as the board runs)
        self.f.write(b"1")
        __import__("hostwdtgo").start(timeout)
        del sys.modules["hostwdtgo"]

    def feed(self):
        # A write per pass would be slow: at most every 200 ms (timeouts are seconds).
        if time.ticks_diff(time.ticks_ms(), self.last) >= 200:
            self.last = time.ticks_ms()
            self.f.seek(0)
            self.f.write(b"1")  # the file's time is what the watcher reads
