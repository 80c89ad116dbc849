"""Traffic flow: vehicles per hour, ``sum(vehicles) * 3600 / sum(period_s)`` (CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Flow:
    vehicles: float
    flow_vph: float | None


def flow(counts: Iterable[tuple[float, float]]) -> Flow:
    """From (vehicles, period_s) pairs; flow is None when no period was counted."""
    vehicles = seconds = 0.0
    for count, period_s in counts:
        vehicles += count
        seconds += period_s
    return Flow(vehicles, vehicles * 3600 / seconds if seconds > 0 else None)
