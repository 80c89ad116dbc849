"""Network availability and data completeness (CONTRACT.md; EU 2008/50/EC thresholds)."""

from __future__ import annotations

from dataclasses import dataclass

VALID_HOUR = 0.75  # an hour's data counts as valid at >= 75 % of the expected samples
GOOD_CAPTURE = 0.90  # a day's data capture is good at >= 90 % valid hours


def expected_samples(covered_s: float, interval_s: float) -> float:
    return covered_s / interval_s


@dataclass(frozen=True)
class Completeness:
    samples: int
    expected: float
    completeness: float
    valid: bool


def completeness(samples: int, covered_s: float, interval_s: float) -> Completeness:
    """Samples received / expected in ``covered_s`` seconds, capped at 1 (a board that
    reports faster than registered is complete, not 'more than complete')."""
    expected = expected_samples(covered_s, interval_s)
    share = min(1.0, samples / expected) if expected > 0 else 0.0
    return Completeness(samples, expected, share, share >= VALID_HOUR)


@dataclass(frozen=True)
class Capture:
    valid_hours: int
    capture: float
    good: bool


def capture(valid_hours: int, hours: float) -> Capture:
    """Share of a day's hours (23, 24 or 25; fewer for today so far) with valid data."""
    share = valid_hours / hours if hours > 0 else 0.0
    return Capture(valid_hours, share, share >= GOOD_CAPTURE)


def availability(online: int, registered: int) -> float | None:
    return online / registered if registered else None
