"""Water level: last and highest level, rate of rise, alert threshold crossings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WaterWindow:
    level: float
    level_max: float
    rise_cm_h: float | None


def water_window(samples: Sequence[tuple[int, float]]) -> WaterWindow | None:
    """``samples`` (t_ms, cm) in the window, sorted. The rate of rise is the least-squares
    slope in cm/h (robust to one noisy reading); None with fewer than two instants."""
    if not samples:
        return None
    rise = None
    if len({t for t, _ in samples}) >= 2:
        hours = [t / 3_600_000 for t, _ in samples]
        rise = statistics.linear_regression(hours, [v for _, v in samples]).slope
    return WaterWindow(samples[-1][1], max(v for _, v in samples), rise)


@dataclass(frozen=True)
class Crossing:
    t: int
    direction: str  # "up" or "down"
    level: float


def crossings(
    samples: Sequence[tuple[int, float]], threshold_cm: float, since_ms: int
) -> list[Crossing]:
    """Crossings of the threshold by samples at or after ``since_ms``; earlier samples (the
    last one before the window) only give the level crossed from. At the threshold = above."""
    out: list[Crossing] = []
    previous: float | None = None
    for t, level in samples:
        if previous is not None and t >= since_ms:
            if previous < threshold_cm <= level:
                out.append(Crossing(t, "up", level))
            elif level < threshold_cm <= previous:
                out.append(Crossing(t, "down", level))
        previous = level
    return out
