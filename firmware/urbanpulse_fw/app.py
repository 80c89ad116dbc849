# The start (main.py): read the config, count the boot, build the sensors, load the main
# loop's modules and make the main loop, which main.py then runs (MainLoop.go: the loop, or a
# deep-sleep wake, and a reset on a fatal error) once this module is forgotten: its code would
# otherwise hold about 1 KiB of the heap for as long as the board runs.
#
# Modules are imported in this order on purpose: what is needed only at start (startup.py,
# config.py, the sensors' builder) is loaded, used and unloaded before the main loop's modules
# are brought in, and each module is loaded after a collection (a 64 KiB heap is small).
import gc

# The main loop's modules, imported one by one with a collection before each: compiling
# from source needs several KiB for a moment, and on a 64 KiB heap it only fits when the
# compiler's garbage of the previous module is gone (the order was measured to fit best).
_MODULES = ("telemetry", "mqtt", "uplink", "mainloop")


def main(path="config.json"):
    """The main loop, made ready to run (MainLoop.go)."""
    from urbanpulse_fw import clock, hw, startup

    cfg, boot, errors, trial = startup.start(path)
    if cfg["clock_start_ms"] >= 0:
        # Host only: run SCALE times faster, the wall clock reading start_ms now (0: unset).
        clock.SCALE = cfg["clock_scale"]
        if cfg["clock_wrap_ms"] is not None:
            clock.wrap(cfg["clock_wrap_ms"])
        t = cfg["clock_start_ms"]
        try:  # after a deep sleep: where its RTC would be (deepsleep.py)
            with open("hostclock") as f:
                t = int(f.read())
        except (OSError, ValueError):
            pass
        clock._anchor = [t, clock.ticks()]
    cause, wdt = startup.hardware(cfg)
    n = startup.crashes(cause)
    if n >= startup.SAFE_AFTER:
        cfg.pop("sensors")
        objs = []  # type: list
        errors.append("safe mode: %d unplanned resets in a row; no sensors until a reboot "
                      "command" % n)
    else:
        objs = startup.build_sensors(cfg, errors)
    del startup
    hw.unload("startup")
    for name in _MODULES:
        gc.collect()
        __import__("urbanpulse_fw." + name)
    wake = None
    if cfg["wake_s"]:
        gc.collect()
        from urbanpulse_fw import deepsleep  # before the heap fills up

        wake = deepsleep.count()
    from urbanpulse_fw import mainloop

    loop = mainloop.MainLoop(cfg, boot, objs, errors, cause, wdt)
    loop.wake = wake
    if trial or cfg["fw_trial"]:
        loop.trial = clock.add(clock.ticks(), int(cfg["rollback_s"] * 1000) * clock.SCALE)
    return loop
