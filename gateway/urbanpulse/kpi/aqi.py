"""US EPA Air Quality Index (2024 PM2.5 revision), as in CONTRACT.md.

``I = (Ihi-Ilo)/(BPhi-BPlo)*(C-BPlo)+Ilo`` rounded to the nearest integer, with PM2.5
truncated to 0.1 ug/m3 and PM10 to 1 ug/m3 first; above the top breakpoint the AQI is 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (BPlo, BPhi, Ilo, Ihi)
PM25_BREAKPOINTS: tuple[tuple[float, float, int, int], ...] = (
    (0.0, 9.0, 0, 50),
    (9.1, 35.4, 51, 100),
    (35.5, 55.4, 101, 150),
    (55.5, 125.4, 151, 200),
    (125.5, 225.4, 201, 300),
    (225.5, 325.4, 301, 500),
)
PM10_BREAKPOINTS: tuple[tuple[float, float, int, int], ...] = (
    (0, 54, 0, 50),
    (55, 154, 51, 100),
    (155, 254, 101, 150),
    (255, 354, 151, 200),
    (355, 424, 201, 300),
    (425, 604, 301, 500),
)
# EPA category names by the top of their AQI range.
CATEGORIES: tuple[tuple[int, str], ...] = (
    (50, "Good"),
    (100, "Moderate"),
    (150, "Unhealthy for Sensitive Groups"),
    (200, "Unhealthy"),
    (300, "Very Unhealthy"),
    (500, "Hazardous"),
)


def _truncate(value: float, decimals: int) -> float:
    scale: float = 10.0**decimals
    # The epsilon keeps 35.9 (stored as 35.8999...) from truncating to 35.8.
    return math.floor(value * scale + 1e-9) / scale


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _index(c: float, table: tuple[tuple[float, float, int, int], ...]) -> int:
    if c < 0:
        raise ValueError(f"concentration {c!r} is negative")
    for bp_lo, bp_hi, i_lo, i_hi in table:
        if c <= bp_hi:
            return _round_half_up((i_hi - i_lo) / (bp_hi - bp_lo) * (c - bp_lo) + i_lo)
    return 500


def aqi_pm25(concentration: float) -> int:
    return _index(_truncate(concentration, 1), PM25_BREAKPOINTS)


def aqi_pm10(concentration: float) -> int:
    return _index(_truncate(concentration, 0), PM10_BREAKPOINTS)


def category(aqi: int) -> str:
    for top, name in CATEGORIES:
        if aqi <= top:
            return name
    return CATEGORIES[-1][1]


@dataclass(frozen=True)
class Aqi:
    aqi: int
    aqi_pm25: int | None
    aqi_pm10: int | None
    dominant: str
    category: str


def aqi(pm25: float | None, pm10: float | None) -> Aqi | None:
    """The AQI of the pollutants given (24-hour means); None if neither is."""
    i25 = None if pm25 is None else aqi_pm25(pm25)
    i10 = None if pm10 is None else aqi_pm10(pm10)
    if i25 is None and i10 is None:
        return None
    # Ties go to PM2.5, the pollutant the index is usually driven by.
    if i10 is None or (i25 is not None and i25 >= i10):
        assert i25 is not None
        return Aqi(i25, i25, i10, "pm25", category(i25))
    return Aqi(i10, i25, i10, "pm10", category(i10))
