"""Street lighting: energy from the meter (robust to a reset), burning hours, faults.

Faults are lamps on in daylight or off at night (CONTRACT.md), judged against sunrise and
sunset at the lamp (``sun``), with a margin around both for photocell and schedule slack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .sun import darkness, daylight
from .windows import HOUR_MS, Window, overlap_ms, state_intervals, total_ms


def meter_energy(readings: Sequence[tuple[int, float]], since_ms: int) -> float:
    """Energy (Wh) counted by a cumulative meter between readings at or after ``since_ms``
    and the reading before each. A drop is a reset (power cut, replaced meter): the meter
    counted the new reading from 0, so that is the energy after the reset. Never negative.
    ``readings`` sorted by time; include the last reading before the window as baseline."""
    energy = 0.0
    previous: float | None = None
    for t, value in readings:
        if previous is not None and t >= since_ms:
            energy += value - previous if value >= previous else value
        previous = value
    return energy


@dataclass(frozen=True)
class LampWindow:
    energy_wh: float
    burning_h: float
    day_on_h: float
    night_off_h: float
    fault: bool


def lamp_window(
    states: Sequence[tuple[int, bool]],
    readings: Sequence[tuple[int, float]],
    window: Window,
    *,
    lat: float,
    lon: float,
    hold_ms: int,
    margin_ms: int,
    fault_min_h: float,
) -> LampWindow:
    """One lamp over ``window``: ``states`` (t, lamp_on) and ``readings`` (t, energy Wh),
    both sorted and including the last sample before the window."""
    on, known = state_intervals(states, window, hold_ms)
    off = _minus(known, on)
    day_on = overlap_ms(on, daylight(window, lat, lon, margin_ms))
    night_off = overlap_ms(off, darkness(window, lat, lon, margin_ms))
    day_on_h, night_off_h = day_on / HOUR_MS, night_off / HOUR_MS
    return LampWindow(
        energy_wh=meter_energy(readings, window.start) if readings else 0.0,
        burning_h=total_ms(on) / HOUR_MS,
        day_on_h=day_on_h,
        night_off_h=night_off_h,
        fault=day_on_h + night_off_h >= fault_min_h,
    )


def _minus(known: list[Window], on: list[Window]) -> list[Window]:
    """``known`` intervals not in ``on`` (``on`` is a subset, same boundaries)."""
    on_set = set(on)
    return [iv for iv in known if iv not in on_set]
