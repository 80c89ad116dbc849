# The hardware layer, kept tiny: WiFi, unique id, reset, free heap, watchdog,
# reset cause, deep sleep, RTC memory, battery ADC (the status LED: mainloop.py).
# On the ESP32 `network` and `machine` are the real ones; on the host `network` comes from
# firmware/host/ (put on MICROPYPATH by the fleet and the tests, never copied to a board).
import gc
import sys

import machine

try:
    import network
except ImportError:  # host without the stand-ins on the path: behave as always connected
    network = None  # type: ignore[assignment]

# The unix port (fleet simulator, tests) reports the host OS here.
ON_BOARD = sys.platform not in ("linux", "darwin")

_wlan = None


def _sta():
    global _wlan
    if _wlan is None and network is not None:
        _wlan = network.WLAN(network.STA_IF)
        _wlan.active(True)
    return _wlan


def wifi_connect(ssid, password):
    """Start joining the network (returns at once); poll wifi_isconnected()."""
    w = _sta()
    if w is not None and not w.isconnected():
        try:
            w.connect(ssid, password or "")
        except OSError as e:  # e.g. the ESP32 is still busy with the previous attempt
            print("wifi:", e)


def wifi_isconnected():
    w = _sta()
    return w is None or w.isconnected()


def wifi_rssi():
    """Signal strength in dBm, or None when unknown."""
    w = _sta()
    try:
        return w.status("rssi")
    except Exception:
        return None


def free_heap():
    gc.collect()
    return gc.mem_free()


# A start that fails waits this long, then resets (start_failed).
START_RETRY_S = 30 if ON_BOARD else 1


def start_failed(e):
    """A start that cannot finish (no usable config, a module that does not load, no memory)
    resets the board after a while, as a fatal error in the main loop does: at the REPL (an
    exception out of main.py) a mounted board would stay offline for good, and an immediate
    soft reset (sys.exit) loops too fast for a technician to get in over USB."""
    if isinstance(e, ValueError):  # config.ConfigError: its message names the key
        print("urbanpulse: %s" % e)
    else:
        sys.print_exception(e)
    print("urbanpulse: start failed, resetting in %d s (Ctrl-C: the REPL)" % START_RETRY_S)
    import time

    time.sleep(START_RETRY_S)
    reset("start")


def rtc_memory(data=None):
    """The bytes kept in RTC memory across a reset and deep sleep, not a power cut (a file on
    the host); with data, set. Read and written through rtc_get and rtc_set."""
    if ON_BOARD:
        r = machine.RTC()
        if data is None:
            return r.memory()
        r.memory(data)
        return data
    if data is None:
        try:
            with open("rtcmem", "rb") as f:
                return f.read()
        except OSError:
            return b""
    with open("rtcmem", "wb") as f:
        f.write(data)
    return data


def rtc_get():
    """(deep-sleep wake count, intent of the last reset) from RTC memory, as bytes (b"":
    none): the count, then a space and the intent."""
    count, _, intent = rtc_memory().partition(b" ")
    return count, intent


def rtc_set(count, intent=b""):
    rtc_memory(count + b" " + intent if intent else count)


def reset(intent):
    """Reset the board; the next start reports `intent` as its reset cause (hwmisc): an
    ESP32 reports a machine.reset() as it reports a crash (HARD_RESET), so the intent is
    written to RTC memory first. Whatever fails there, the reset happens."""
    try:
        rtc_set(rtc_get()[0], intent.encode())
    except Exception:
        pass
    if ON_BOARD:
        machine.reset()
    with open("reset_cause", "w") as f:  # what machine.reset_cause() gives next (host only)
        f.write("hard")
    sys.exit(3)  # hwmisc.EXIT_RESET: the fleet or the test starts the board again


def unload(name):
    """Forget a module loaded for a moment (its code would hold heap for good)."""
    sys.modules.pop("urbanpulse_fw." + name, None)
    p = sys.modules.get("urbanpulse_fw")
    if p is not None and hasattr(p, name):
        delattr(p, name)
