"""Sunrise and sunset from the NOAA solar position algorithm.

The equations of NOAA's Solar Calculator (gml.noaa.gov/grad/solcalc/calcdetails.html, after
Meeus, "Astronomical Algorithms"): sun's declination and the equation of time from the Julian
century, and the hour angle at which the sun's centre is 0.833 degrees below the horizon
(refraction and the solar disc). Each event is iterated at its own time, which keeps the
result within a minute of NOAA's calculator between the polar circles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .windows import DAY_MS, Window

_EPOCH_JD = 2440587.5  # Julian day of 1970-01-01T00:00Z
SUNRISE_ZENITH_DEG = 90.833


def _solar(t_ms: float) -> tuple[float, float]:
    """(declination in degrees, equation of time in minutes) at instant ``t_ms``."""
    jc = (t_ms / DAY_MS + _EPOCH_JD - 2451545.0) / 36525.0
    l0 = (280.46646 + jc * (36000.76983 + jc * 0.0003032)) % 360
    m = 357.52911 + jc * (35999.05029 - 0.0001537 * jc)
    e = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
    mr = math.radians(m)
    c = (
        math.sin(mr) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
        + math.sin(2 * mr) * (0.019993 - 0.000101 * jc)
        + math.sin(3 * mr) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * jc)
    app_long = math.radians(l0 + c - 0.00569 - 0.00478 * math.sin(omega))
    eps0 = 23 + (26 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60) / 60
    eps = math.radians(eps0 + 0.00256 * math.cos(omega))
    decl = math.degrees(math.asin(math.sin(eps) * math.sin(app_long)))
    y = math.tan(eps / 2) ** 2
    l0r = math.radians(l0)
    eot = 4 * math.degrees(
        y * math.sin(2 * l0r)
        - 2 * e * math.sin(mr)
        + 4 * e * y * math.sin(mr) * math.cos(2 * l0r)
        - 0.5 * y * y * math.sin(4 * l0r)
        - 1.25 * e * e * math.sin(2 * mr)
    )
    return decl, eot


def _hour_angle(lat: float, decl: float) -> float | None:
    """Hour angle of sunrise in degrees; None when the sun does not cross the horizon."""
    latr, declr = math.radians(lat), math.radians(decl)
    x = math.cos(math.radians(SUNRISE_ZENITH_DEG)) / (
        math.cos(latr) * math.cos(declr)
    ) - math.tan(latr) * math.tan(declr)
    if x < -1 or x > 1:
        return None
    return math.degrees(math.acos(x))


@dataclass(frozen=True)
class SunDay:
    """Sunrise and sunset (ms) of a UTC date; ``polar`` "day"/"night" when there is none."""

    sunrise: int | None
    sunset: int | None
    polar: str | None = None


def sun_day(day: date, lat: float, lon: float) -> SunDay:
    """Sunrise and sunset around solar noon of the UTC date ``day`` at (lat, lon)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000

    def event(sign: int) -> int | None:
        t = midnight + (720 - 4 * lon) * 60_000  # start at approximate solar noon
        for _ in range(3):
            decl, eot = _solar(t)
            ha = _hour_angle(lat, decl)
            if ha is None:
                return None
            t = midnight + (720 - 4 * lon - eot + sign * 4 * ha) * 60_000
        return round(t)

    rise, set_ = event(-1), event(+1)
    if rise is None or set_ is None:
        decl, _ = _solar(midnight + (720 - 4 * lon) * 60_000)
        # Sun above the horizon at noon all day long, or below it.
        polar = "day" if lat * decl > 0 else "night"
        return SunDay(None, None, polar)
    return SunDay(rise, set_)


def _sun_up(window: Window, lat: float, lon: float, margin_ms: int) -> list[Window]:
    """Intervals when the sun is up, each widened by ``margin_ms`` at both ends (negative
    margin: narrowed), for the UTC dates around ``window``."""
    first = datetime.fromtimestamp(window.start / 1000, tz=UTC).date()
    last = datetime.fromtimestamp(window.end / 1000, tz=UTC).date()
    out: list[Window] = []
    day = first - timedelta(days=1)
    while day <= last + timedelta(days=1):
        s = sun_day(day, lat, lon)
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        if s.sunrise is not None and s.sunset is not None:
            a, b = s.sunrise - margin_ms, s.sunset + margin_ms
            if b > a:
                out.append(Window(a, b))
        elif s.polar == "day":
            out.append(Window(midnight * 1000, midnight * 1000 + DAY_MS))
        day += timedelta(days=1)
    return out


def daylight(window: Window, lat: float, lon: float, margin_ms: int = 0) -> list[Window]:
    """Parts of ``window`` when the sun has been up at least ``margin_ms`` and will be for
    at least ``margin_ms`` more: a lamp burning then is a fault."""
    return _clip_sorted(_sun_up(window, lat, lon, -margin_ms), window)


def darkness(window: Window, lat: float, lon: float, margin_ms: int = 0) -> list[Window]:
    """Parts of ``window`` more than ``margin_ms`` after sunset and before sunrise: a lamp
    off then is a fault."""
    up = _clip_sorted(_sun_up(window, lat, lon, margin_ms), window)
    out: list[Window] = []
    cursor = window.start
    for iv in up:
        if iv.start > cursor:
            out.append(Window(cursor, iv.start))
        cursor = max(cursor, iv.end)
    if cursor < window.end:
        out.append(Window(cursor, window.end))
    return out


def _clip_sorted(intervals: list[Window], window: Window) -> list[Window]:
    merged: list[Window] = []
    for iv in sorted(intervals):
        a, b = max(iv.start, window.start), min(iv.end, window.end)
        if b <= a:
            continue
        if merged and a <= merged[-1].end:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, b))
        else:
            merged.append(Window(a, b))
    return merged
