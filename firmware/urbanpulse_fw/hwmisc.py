# The rarely needed part of the hardware layer, loaded for a moment and unloaded again (RAM):
# reset cause, deep sleep, watchdog, battery voltage, unique id, NTP.
import os
import sys

import machine

from urbanpulse_fw import hw
from urbanpulse_fw.hw import ON_BOARD

# Exit codes of a board process on the host, where there is no reset: the fleet and the tests
# start the board again (with its flash, i.e. its folder, as it was).
EXIT_RESET = 3
EXIT_DEEPSLEEP = 4


def host_exit(cause, code):
    # What the next start reports as its reset cause (the ESP32 knows it by itself).
    with open("reset_cause", "w") as f:
        f.write(cause)
    sys.exit(code)


def deepsleep(ms):
    """Sleep with everything off but the RTC; the board then boots afresh. On the host the
    process exits with EXIT_DEEPSLEEP after writing the sleep time to `deepsleep_ms`."""
    if ON_BOARD:
        machine.deepsleep(ms)
    with open("deepsleep_ms", "w") as f:
        f.write("%d" % ms)
    host_exit("deepsleep", EXIT_DEEPSLEEP)


_CAUSES = (("PWRON_RESET", "power"), ("HARD_RESET", "hard"), ("WDT_RESET", "wdt"),
           ("DEEPSLEEP_RESET", "deepsleep"), ("SOFT_RESET", "soft"))


def _machine_cause():
    if hasattr(machine, "reset_cause"):
        c = machine.reset_cause()
        for name, text in _CAUSES:
            if getattr(machine, name, None) == c:
                return text
        return "unknown"
    try:  # the host: what hw.reset() and the stand-ins wrote
        with open("reset_cause") as f:
            c = f.read().strip()
        os.remove("reset_cause")
        return c
    except OSError:
        return "power"


def reset_cause():
    """Why this boot happened: power, wdt or deepsleep as the chip tells; after a reset the
    firmware meant (hw.reset), its intent: reboot, config, rollback, fatal, memory, start;
    after any other (a panic, a reset by something else): crash."""
    c = _machine_cause()
    count, intent = hw.rtc_get()
    if intent:
        hw.rtc_set(count)  # told once
    if c in ("hard", "soft"):
        return intent.decode() if intent else "crash"
    return c


def watchdog(timeout_ms):
    """The hardware watchdog (machine.WDT; once started it cannot be stopped), or the host
    stand-in (firmware/host/hostwdt.py), which kills the process like a reset would."""
    if hasattr(machine, "WDT"):
        return machine.WDT(timeout=timeout_ms)
    import hostwdt  # type: ignore[import-not-found]

    return hostwdt.WDT(timeout=timeout_ms)


def battery_volts(pin, ratio):
    """Battery voltage through a divider on an ADC pin, or None (no ADC, e.g. the host)."""
    if pin is None or not hasattr(machine, "ADC"):
        return None
    try:
        a = machine.ADC(machine.Pin(pin))
        a.atten(machine.ADC.ATTN_11DB)
        return round(a.read_uv() * ratio / 1000000, 3)
    except Exception:
        return None


def unique_id():
    """Hardware id as hex (the MAC on the ESP32)."""
    if hasattr(machine, "unique_id"):
        b = machine.unique_id()
    else:
        w = hw._sta()
        b = w.config("mac") if w else b"\0" * 6
    return "".join("%02x" % x for x in b)
