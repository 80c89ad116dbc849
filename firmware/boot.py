# Runs first at every start of the board: chooses the firmware to run. The package flashed
# over USB, or an update installed over the air in ota/a or ota/b (urbanpulse_fw/ota.py). A
# new update runs on trial for one start: if that start ends (a crash, the watchdog, no
# broker in time) before the update confirmed itself, the next start goes back to the last
# good firmware. Kept small and never updated over the air: it is what undoes a bad update.
# (Few names: each one stays interned in RAM for good.)
import os
import sys

s = t = None
try:
    with open("ota/active") as f:
        s = f.read().strip()
except OSError:
    pass
try:
    with open("ota/trial") as f:
        t = f.read().split()  # [slot, starts so far]
except OSError:
    pass
try:
    if t and len(t) == 2 and t[1] == "0":
        with open("ota/trial", "w") as f:
            f.write(t[0] + " 1")
        s = t[0]
    elif t:  # its first start did not confirm it (or the marker is torn)
        os.rename("ota/trial", "ota/failed")
        print("UrbanPulse: the update on trial failed, back to the last good firmware")
except OSError:
    pass  # the count cannot be kept (flash full): not on trial, the last good one runs
if s:
    sys.path.insert(0, "ota/" + s)
del s, t
print("UrbanPulse firmware")
