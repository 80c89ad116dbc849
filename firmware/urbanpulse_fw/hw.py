# The hardware layer, kept tiny: WiFi, unique id, reset, free heap, clock sync.
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


def unique_id():
    """Hardware id as hex (the MAC on the ESP32)."""
    if hasattr(machine, "unique_id"):
        b = machine.unique_id()
    else:
        w = _sta()
        b = w.config("mac") if w else b"\0" * 6
    return "".join("%02x" % x for x in b)


def free_heap():
    gc.collect()
    return gc.mem_free()


def reset():
    if ON_BOARD:
        machine.reset()
    sys.exit(1)  # on the host the fleet decides whether to restart the board


def sync_time():
    """Set the RTC from NTP (ESP32). True if it worked; the host clock is already right."""
    if not ON_BOARD:
        return True
    try:
        import ntptime

        ntptime.settime()
        return True
    except Exception:
        return False
