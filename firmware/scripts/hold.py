# Sent by `urbanpulse flash` (over mpremote, with a call of hold() appended) to a board that may
# be running the firmware, before anything is copied: Ctrl-C stops the firmware, but not its
# watchdog (an ESP32's cannot be stopped), which would reset the board in the middle of the
# copy. So the board restarts (a reset stops the watchdog) and main.py, finding the marker,
# leaves it at the REPL for that one start, without starting the firmware or its watchdog.
import sys

import machine


def hold() -> None:
    with open("hold", "w") as f:
        f.write("urbanpulse flash")
    # The unix port (the tests' board) has no machine.reset: exit 3 is its reset.
    getattr(machine, "reset", lambda: sys.exit(3))()
