# Entry point: read the config, count the boot, run the main loop, reset on a fatal error.
#
# Modules are imported in this order on purpose: what is needed only at start (startup.py,
# config.py, the sensors' builder) is loaded, used and unloaded before the main loop's modules
# are brought in, and each module is loaded after a collection (a 64 KiB heap is small).
import gc
import sys
import time

# The main loop's modules, imported one by one with a collection before each: compiling
# from source needs several KiB for a moment, and on a 64 KiB heap it only fits when the
# compiler's garbage of the previous module is gone (the order was measured to fit best).
_MODULES = ("telemetry", "mqtt", "uplink", "mainloop")


def main(path="config.json"):
    from urbanpulse_fw import clock, hw, startup

    cfg, boot, errors, trial = startup.start(path)
    if cfg["clock_start_ms"] >= 0:
        # Host only: run SCALE times faster, the wall clock reading start_ms now (0: unset).
        clock.SCALE = cfg["clock_scale"]
        clock._anchor = (cfg["clock_start_ms"], clock.ticks())
    cause, wdt = startup.hardware(cfg)
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

        wake = deepsleep.count()  # also before the RAM buffer: it loads hwmisc for a moment
    from urbanpulse_fw import mainloop

    loop = mainloop.MainLoop(cfg, boot, objs, errors, cause, wdt)
    if trial:
        loop.trial = time.ticks_add(clock.ticks(), int(cfg["rollback_s"] * 1000) * clock.SCALE)
    try:
        if cfg["wake_s"]:
            from urbanpulse_fw import deepsleep

            deepsleep.wake(loop, wake)
        else:
            loop.run()
    except Exception as e:
        loop.log("fatal error, resetting")
        sys.print_exception(e)
        if hw.ON_BOARD:
            time.sleep(5)  # no tight reboot loop
        hw.reset()
