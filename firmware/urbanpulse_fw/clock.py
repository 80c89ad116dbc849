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
#
# ticks() wraps at a power of two: 2^30 on an ESP32 (its small ints are 31 bits), so a span
# of ticks means something in diff() up to 2^29 ms (6.2 days) only; the unix port's wrap at
# 2^62 hides that. On the host, host_clock.wrap_in_s (wrap()) makes ticks() wrap at 2^30
# that many board seconds after the start, and diff() and add() follow: tests cross a wrap.
SCALE = 1
_MASK = time.ticks_add(0, -1)  # type: ignore[type-var]  # ticks wrap at a power of two: masking keeps them consistent
_offset = 0
_anchor = None  # type: list | None  # [Unix ms, ticks()] of the emulated wall clock
diff = time.ticks_diff  # for ticks() values, always through these two
add = time.ticks_add


def ticks():
    """Milliseconds for schedules (sampling, health, deep sleep), sped up on the host."""
    if SCALE == 1 and not _offset:
        return time.ticks_ms()
    return (time.ticks_ms() * SCALE + _offset) & _MASK  # type: ignore[operator]


def _diff(a, b):
    d = (a - b) & _MASK
    return d - _MASK - 1 if d > _MASK >> 1 else d


def _add(a, d):
    return (a + d) & _MASK


def wrap(in_ms):
    """Host only: from now on ticks() wrap at 2^30, as an ESP32's, in_ms (board ms) from now."""
    global _MASK, _offset, diff, add
    _offset = 0
    _MASK = (1 << 30) - 1
    _offset = (_MASK + 1 - in_ms - ticks()) & _MASK
    diff = _diff
    add = _add


def recent(now, t, span):
    """t, or now - span if t is further back: a deadline left unserviced for longer than half
    the tick period would look to be in the future."""
    return t if diff(now, t) <= span else add(now, -span)


def now_ms():
    a = _anchor
    if a is not None:
        # Moved on at each call (in place: no allocation), so that no span of ticks it
        # measures is long enough to wrap.
        t = ticks()
        a[0] += diff(t, a[1])
        a[1] = t
        return a[0]
    if hasattr(time, "time_ns"):
        return to_unix_ms(time.time_ns())
    return (int(time.time()) + EPOCH_OFFSET_S) * 1000  # second resolution only


def is_valid(t):
    return t >= MIN_VALID_MS
