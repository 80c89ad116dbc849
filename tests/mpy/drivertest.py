# Helpers for the driver checks: a fresh emulated world, and waiting on conditions.
import time

import hostbus
from urbanpulse_fw import bus, clock, sensors


def build(entries, kind="air"):
    """Sensors for these entries on fresh emulated chips; fails on any config error."""
    hostbus.reset()
    bus._i2c.clear()
    objs, errors = sensors.build(entries, kind, 1)
    assert not errors, errors
    return objs


def one(entry, kind="air"):
    return build([entry], kind)[0]


def read(s):
    return dict(s.read(clock.now_ms()))


def poll_until(s, cond, timeout_ms=3000, what="condition"):
    """Poll the sensor (as the main loop does) until cond(read fields) holds; the fields."""
    t0 = time.ticks_ms()
    while True:
        s.poll(time.ticks_ms())
        d = read(s)
        if cond(d):
            return d
        if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
            raise AssertionError("timed out waiting for %s: last %r, fault %r"
                                 % (what, d, s.fault))
        time.sleep_ms(20)


def poll_for(s, ms):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < ms:
        s.poll(time.ticks_ms())
        time.sleep_ms(20)


def near(got, want, tol, what):
    assert abs(got - want) <= tol, "%s: got %r, want %r +- %r" % (what, got, want, tol)
