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


# Host only (config "host_clock"): time runs SCALE times faster for the schedules and the
# wall clock, so a day of sampling passes in minutes through the real code paths; and the
# wall clock can start unset (as an ESP32's does) until hw.sync_time() succeeds. On a board
# SCALE is 1 and _anchor None: ticks() is time.ticks_ms() and the RTC is the clock.
SCALE = 1
_MASK = time.ticks_add(0, -1)  # type: ignore[type-var]  # ticks wrap at a power of two: masking keeps them consistent
_anchor = None  # type: tuple | None  # (Unix ms, ticks()) of the emulated wall clock


def ticks():
    """Milliseconds for schedules (sampling, health, deep sleep), sped up on the host."""
    if SCALE == 1:
        return time.ticks_ms()
    return (time.ticks_ms() * SCALE) & _MASK  # type: ignore[operator]


def real_ms(ms):
    """Real milliseconds of a span of ticks() (for sleeping and socket timeouts)."""
    return ms // SCALE


def emulate(scale, start_ms):
    """Host only: run SCALE times faster, the wall clock reading start_ms now (0: unset)."""
    global SCALE, _anchor
    SCALE = scale
    _anchor = (start_ms, ticks())


def set_ms(t):
    """Set the emulated wall clock (the host's NTP stand-in); no effect on a board's RTC."""
    global _anchor
    if _anchor is not None:
        _anchor = (t, ticks())


def now_ms():
    if _anchor is not None:
        return _anchor[0] + time.ticks_diff(ticks(), _anchor[1])
    if hasattr(time, "time_ns"):
        return to_unix_ms(time.time_ns())
    return (int(time.time()) + EPOCH_OFFSET_S) * 1000  # second resolution only


def emulated():
    return _anchor is not None


def is_valid(t):
    return t >= MIN_VALID_MS


def local_hour(t, offset=0):
    """Hour of the local day as a float in [0, 24); t in Unix ms, offset from UTC in s."""
    return ((t // 1000 + offset) % 86400) / 3600


def day_of_year(t, offset=0):
    """Approximate day of the year, 0 = 1 January (good to a day; enough for seasons)."""
    return ((t // 1000 + offset) // 86400) % 365.2425
