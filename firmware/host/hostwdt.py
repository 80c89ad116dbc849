# Host stand-in for machine.WDT (the unix port has none), never copied to a board. A watcher
# process (a shell loop started with the board) checks how long ago feed() touched the file
# `wdt_fed` in the board's folder; past the timeout it does what the ESP32's watchdog does:
# resets the board, i.e. kills this process at once (SIGKILL, no clean-up), after noting
# "wdt" as the reset cause for the next start. A process, not a thread: no heap, no GIL.
import os
import time


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.last = time.ticks_ms()
        self.feeds = 0
        self._touch()
        # $PPID of the background loop is this micropython process; it ends with it.
        os.system("(while kill -0 $PPID 2>/dev/null; do"
                  " a=$(( $(date +%%s%%3N) - $(stat -c %%.3Y wdt_fed | tr -d .) ));"
                  " if [ $a -gt %d ]; then echo wdt > reset_cause;"
                  " echo 'hostwdt: not fed for %d ms, resetting'; kill -9 $PPID; exit; fi;"
                  " sleep 0.1; done) </dev/null &" % (timeout, timeout))

    def _touch(self):
        with open("wdt_fed", "w") as f:
            f.write("%d" % self.feeds)

    def feed(self):
        self.feeds += 1
        # A file write per pass would be slow: at most every 200 ms (timeouts are seconds).
        if time.ticks_diff(time.ticks_ms(), self.last) >= 200:
            self.last = time.ticks_ms()
            self._touch()
