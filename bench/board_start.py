"""The start of a board as app.py runs it, up to its main loop (``loop``), as MicroPython
source for the firmware benches to run on the unix port before what they measure."""

START = r"""
import gc, json, sys, time
from urbanpulse_fw import clock, hw, startup
r = startup.start()
cfg = r[0]
errors = r[2]
del r
cause, wdt = startup.hardware(cfg)
objs = startup.build_sensors(cfg, errors)
del startup
hw.unload("startup")
for name in ("telemetry", "mqtt", "uplink", "mainloop"):
    gc.collect()
    __import__("urbanpulse_fw." + name)
from urbanpulse_fw import mainloop
loop = mainloop.MainLoop(cfg, 1, objs, errors, cause, wdt)
"""
