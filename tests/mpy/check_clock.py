# Unix-epoch milliseconds whatever the port's epoch (ESP32: 2000, unix port: 1970).
import time

from mpytest import eq
from urbanpulse_fw import clock
from urbanpulse_fw.sim import base


def test_epoch_2000_conversion():
    eq(clock.to_unix_ms(0, clock.UNIX_TO_2000_S), 946684800000, "2000-01-01 in Unix ms")
    # 2025-11-21T04:40:00.123Z on an ESP32 (seconds since 2000 = Unix - 946684800).
    port_ns = (1763700000 - 946684800) * 1000000000 + 123456789
    eq(clock.to_unix_ms(port_ns, clock.UNIX_TO_2000_S), 1763700000123, "ESP32 time")


def test_epoch_1970_is_unchanged():
    eq(clock.to_unix_ms(1763700000123456789, 0), 1763700000123, "unix port time")


def test_this_port_detected():
    want = clock.UNIX_TO_2000_S if time.gmtime(0)[0] == 2000 else 0
    eq(clock.EPOCH_OFFSET_S, want, "offset from gmtime(0)")


def test_now_ms_is_unix_ms_and_int():
    t = clock.now_ms()
    assert isinstance(t, int), type(t)
    assert abs(t // 1000 - (time.time() + clock.EPOCH_OFFSET_S)) <= 2, t
    assert clock.is_valid(t), "the host clock is set"


def test_unsynced_clock_is_invalid():
    assert not clock.is_valid(946684800000 + 5000), "an ESP32 booted without NTP"
    assert not clock.is_valid(0)
    assert clock.is_valid(clock.MIN_VALID_MS)


def test_local_hour_and_day():
    t = 1763700000123  # 2025-11-21T04:40:00Z
    assert abs(base.local_hour(t) - (4 + 40 / 60)) < 1e-6
    assert abs(base.local_hour(t, 3600) - (5 + 40 / 60)) < 1e-6
    assert abs(base.local_hour(t, -5 * 3600) - (23 + 40 / 60)) < 1e-6, "wraps to the day before"
    doy = base.day_of_year(t)
    assert 322 <= doy <= 326, doy  # 21 November = day 324 counting from 0
