# Starts the host watchdog's watcher process for host/hostwdt.py: a module of its own so that
# hostwdt.py can forget this code and its strings once the watcher runs (the board's 64 KiB
# heap). Never copied to a board.
import os


def start(timeout):
    # $PPID of the background loop is this micropython process; it ends with it.
    os.system("(while kill -0 $PPID 2>/dev/null; do"
              " a=$(( $(date +%%s%%3N) - $(stat -c %%.3Y wdt_fed | tr -d .) ));"
              " if [ $a -gt %d ]; then echo wdt > reset_cause;"
              " echo 'hostwdt: not fed for %d ms, resetting'; kill -9 $PPID; exit; fi;"
              " sleep 0.1; done) </dev/null &" % (timeout, timeout))
