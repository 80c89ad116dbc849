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


def now_ms():
    if hasattr(time, "time_ns"):
        return to_unix_ms(time.time_ns())
    return (int(time.time()) + EPOCH_OFFSET_S) * 1000  # second resolution only


def is_valid(t):
    return t >= MIN_VALID_MS


def local_hour(t, offset=0):
    """Hour of the local day as a float in [0, 24); t in Unix ms, offset from UTC in s."""
    return ((t // 1000 + offset) % 86400) / 3600


def day_of_year(t, offset=0):
    """Approximate day of the year, 0 = 1 January (good to a day; enough for seasons)."""
    return ((t // 1000 + offset) // 86400) % 365.2425
