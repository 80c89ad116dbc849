# Entry point: read the config, count the boot, run the main loop, reset on a fatal error.
#
# Modules are imported in this order on purpose: MicroPython compiles a module from source in
# one go, and on a 64 KiB heap the config validator (needed once) is compiled, used and
# unloaded before the main loop's modules are brought in.
import gc
import sys
import time


def _unload(name):
    # Forget a module needed only at start, so that its code does not hold heap for good.
    sys.modules.pop("urbanpulse_fw." + name, None)
    p = sys.modules.get("urbanpulse_fw")
    if p is not None and hasattr(p, name):
        delattr(p, name)


def start(path="config.json"):
    """(validated config dict, boot number); exits with a message on a bad config."""
    from urbanpulse_fw import bootcount, config

    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        print("urbanpulse: %s" % e)
        sys.exit(2)
    boot = bootcount.bump()
    _unload("config")
    _unload("bootcount")
    gc.collect()
    return cfg, boot


# The main loop's modules, imported one by one with a collection before each: compiling
# from source needs several KiB for a moment, and on a 64 KiB heap it only fits when the
# compiler's garbage of the previous module is gone (the order was measured to fit best).
_MODULES = ("telemetry", "mqtt_codec", "mqtt_conn", "mqtt_session", "mqtt", "sim.base",
            "clock", "uplink", "hw", "mainloop")


def main(path="config.json"):
    cfg, boot = start(path)
    for name in _MODULES:
        gc.collect()
        __import__("urbanpulse_fw." + name)
    from urbanpulse_fw import hw, mainloop

    loop = mainloop.MainLoop(cfg, boot)
    try:
        loop.run()
    except Exception as e:
        loop.log("fatal error, resetting")
        sys.print_exception(e)
        if hw.ON_BOARD:
            time.sleep(5)  # no tight reboot loop
        hw.reset()
