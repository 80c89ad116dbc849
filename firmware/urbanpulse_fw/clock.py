# Wall-clock time as Unix-epoch milliseconds (UTC), whatever the port's own epoch.
import time

UNIX_TO_2000_S = 946684800
# The ESP32 port counts from 2000-01-01, the unix port from 1970-01-01.
EPOCH_OFFSET_S = UNIX_TO_2000_S if time.gmtime(0)[0] == 2000 else 0
# Anything earlier means the RTC was never set (an unsynced ESP32 starts at 2000-01-01).
MIN_VALID_MS = 1577836800000  # 2020-01-01T00:00:00Z


def to_unix_ms(ns, offset=EPOCH_OFFSET_S):
    """Port-epoch nanoseconds to Unix-epoch milliseconds (an int, never a float: the ESP32's
    single-precision floats cannot hold a millisecond timestamp)."""
    return ns // 1000000 + offset * 1000


# Host only (config "host_clock", set by app.py): time runs SCALE times faster for the
# schedules and the wall clock, so a day of sampling passes in minutes through the real code
# paths; and the wall clock can start unset (as an ESP32's does) until NTP succeeds (the
# host's ntptime.py sets _anchor). On a board SCALE is 1 and _anchor None: ticks() is
# time.ticks_ms() and the RTC is the clock. Real milliseconds of a span of ticks() (sleeping,
# socket timeouts): span // SCALE.
SCALE = 1
_MASK = time.ticks_add(0, -1)  # type: ignore[type-var]  # ticks wrap at a power of two: masking keeps them consistent
_anchor = None  # type: tuple | None  # (Unix ms, ticks()) of the emulated wall clock


def ticks():
    """Milliseconds for schedules (sampling, health, deep sleep), sped up on the host."""
    if SCALE == 1:
        return time.ticks_ms()
    return (time.ticks_ms() * SCALE) & _MASK  # type: ignore[operator]


def now_ms():
    if _anchor is not None:
        return _anchor[0] + time.ticks_diff(ticks(), _anchor[1])
    if hasattr(time, "time_ns"):
        return to_unix_ms(time.time_ns())
    return (int(time.time()) + EPOCH_OFFSET_S) * 1000  # second resolution only


def is_valid(t):
    return t >= MIN_VALID_MS
