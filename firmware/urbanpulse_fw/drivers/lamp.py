# Streetlight: the lamp's relay on an output pin, switched from dusk to dawn by the sun's
# position at the post (or by a remote command until the next dusk or dawn), and an optional
# PZEM-004T meter for power and energy. lamp_on is the relay's state; power near zero while
# it is on is what the gateway's KPI flags as a broken lamp.
#
# A reset must not switch the street's lights: the relay's pad is held through it (ESP32 pad
# hold), and the schedule's last decision is kept in flash (STATE, written when it changes,
# twice a day), so a board that starts without the time (no WiFi, no NTP yet) keeps the lamp
# as it was instead of lighting it at noon.
import math
import time

from urbanpulse_fw import bus, clock
from urbanpulse_fw.drivers import base

RAD = math.pi / 180
STATE = "lamp_night"


def saved():
    """The schedule's last decision before this start (True: night), or None."""
    try:
        with open(STATE) as f:
            return f.read(1) == "1"
    except OSError:
        return None


def start_level(auto):
    """The relay's level at start, before the driver decides: the last decision, or lit."""
    n = saved() if auto else False
    return 0 if n is False else 1


def sun_altitude(t, lat, lon):
    """Solar altitude in degrees at Unix ms t (low-precision almanac: within ~0.5 degree)."""
    d = (t - 946728000000) / 86400000  # days since J2000.0 (2000-01-01 12:00 UTC)
    g = (357.529 + 0.98560028 * d) % 360 * RAD
    q = (280.459 + 0.98564736 * d) % 360
    lam = (q + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g)) * RAD
    e = (23.439 - 0.00000036 * d) * RAD
    ra = math.atan2(math.cos(e) * math.sin(lam), math.cos(lam)) / RAD
    dec = math.asin(math.sin(e) * math.sin(lam))
    # Whole days and the fraction apart: single-precision floats on the ESP32.
    days = (t - 946728000000) // 86400000
    frac = (t - 946728000000) % 86400000 / 86400000
    gmst = (18.697374558 + 0.06570982441908 * days + 24.06570982441908 * frac) % 24
    h = (gmst * 15 + lon - ra) * RAD
    la = lat * RAD
    s = math.sin(la) * math.sin(dec) + math.cos(la) * math.cos(dec) * math.cos(h)
    return math.asin(max(-1.0, min(1.0, s))) / RAD


class Sensor(base.Sensor):
    def __init__(self, relay, meter=None, lat=52.37, lon=4.9, auto=True):
        self.relay = relay
        self.meter = meter
        self.lat = lat
        self.lon = lon
        self.auto = auto
        self.night = saved() if auto else None  # the schedule's last decision
        self.manual = None  # a remote command's decision, until the schedule changes
        self.next = time.ticks_ms()
        self.values = None  # the meter's last reading, all of it (volts, amps, ...)
        self.apply()

    def set_lamp(self, on):
        """Switch the lamp now (True/False); None goes back to the schedule."""
        self.manual = on
        self.apply()

    def apply(self):
        if self.manual is not None:
            on = self.manual
        elif self.night is not None:
            on = self.night
        else:
            # No valid clock yet (WiFi or NTP down since power-on): lit, as a dark street is
            # the worse failure; off without a schedule (auto false: commands only).
            on = self.auto
        bus.held_value(self.relay, 1 if on else 0)

    def tick(self, now):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.next) < 0:
            return
        self.next = time.ticks_add(now, 30000)
        t = clock.now_ms()
        if self.auto and clock.is_valid(t):
            # On a little after sunset (sun 3 degrees below the horizon) until before sunrise.
            night = sun_altitude(t, self.lat, self.lon) < -3
            if night != self.night:
                self.night = night
                self.manual = None
                try:
                    with open(STATE, "w") as f:
                        f.write("1" if night else "0")
                except OSError:
                    pass  # kept in RAM: only a reset would forget it
        self.apply()

    def sample(self, t):
        self.next = time.ticks_ms()
        self.tick(0)
        out = [("lamp_on", self.relay.value() == 1)]
        if self.meter is None:
            return out
        m = self.meter.read()
        if type(m) is str:
            # The relay state is still known: report it, and the meter's fault.
            self.fault = m
            return out
        self.values = m
        if m[2] > 5000:
            self.fault = "range"
            return out
        return out + [("power", m[2]), ("energy", m[3])]
