"""Parking occupancy: occupied spots / reporting spots, time-weighted (CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .windows import Window, state_intervals, total_ms


@dataclass(frozen=True)
class BayTime:
    """How long one bay was occupied and how long its state was known, in ms."""

    occupied_ms: int
    known_ms: int


def bay_time(samples: Sequence[tuple[int, bool]], window: Window, hold_ms: int) -> BayTime:
    """Each state holds until the next sample (at most ``hold_ms``); ``samples`` sorted,
    the last one before the window included so that its state carries in."""
    on, known = state_intervals(samples, window, hold_ms)
    return BayTime(total_ms(on), total_ms(known))


def occupancy(bays: Iterable[BayTime]) -> float | None:
    """Occupied bay-time / reporting bay-time; None when no bay reported."""
    occupied = known = 0
    for bay in bays:
        occupied += bay.occupied_ms
        known += bay.known_ms
    return occupied / known if known else None
