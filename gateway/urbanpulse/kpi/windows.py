"""Time windows: UTC hours, local days in the city's time zone, and held states.

All instants are integer milliseconds since the Unix epoch (UTC), like stored timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from urbanpulse.contract.vocabulary import HOUR_MS as HOUR_MS  # the KPIs take it from here

DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, order=True)
class Window:
    """Half-open interval [start, end) in ms."""

    start: int
    end: int

    @property
    def hours(self) -> float:
        return (self.end - self.start) / HOUR_MS


def hour_start(t_ms: int) -> int:
    return t_ms - t_ms % HOUR_MS


def hour_window(start_ms: int) -> Window:
    return Window(start_ms, start_ms + HOUR_MS)


def hours_between(start_ms: int, end_ms: int) -> list[int]:
    """Starts of the UTC hours that overlap [start, end)."""
    first = hour_start(start_ms)
    return list(range(first, end_ms, HOUR_MS)) if end_ms > start_ms else []


def local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


def local_instant_ms(day: date, hour: int, tz: ZoneInfo) -> int:
    """``hour`` o'clock (0..24) local time on ``day`` as a UTC instant; 24 = next midnight."""
    if hour == 24:
        return local_midnight_ms(day + timedelta(days=1), tz)
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=tz).timestamp() * 1000)


def local_day_window(day: date, tz: ZoneInfo) -> Window:
    """A local calendar day: 23, 24 or 25 hours long across a DST change."""
    return Window(local_midnight_ms(day, tz), local_midnight_ms(day + timedelta(days=1), tz))


def local_date(t_ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(t_ms / 1000, tz=UTC).astimezone(tz).date()


def local_days_touching(hour_starts: Iterable[int], tz: ZoneInfo) -> list[date]:
    """Local days that share time with any of the given UTC hours."""
    days: set[date] = set()
    for start in hour_starts:
        days.add(local_date(start, tz))
        days.add(local_date(start + HOUR_MS - 1, tz))
    return sorted(days)


def spans(hour_starts: Iterable[int]) -> list[Window]:
    """Merge hour starts into contiguous windows, so one query covers adjacent hours."""
    out: list[Window] = []
    for start in sorted(set(hour_starts)):
        if out and out[-1].end == start:
            out[-1] = Window(out[-1].start, start + HOUR_MS)
        else:
            out.append(hour_window(start))
    return out


def clip(intervals: Iterable[Window], window: Window) -> list[Window]:
    out = []
    for iv in intervals:
        a, b = max(iv.start, window.start), min(iv.end, window.end)
        if b > a:
            out.append(Window(a, b))
    return out


def overlap_ms(a: Sequence[Window], b: Sequence[Window]) -> int:
    """Total time two sets of intervals share (each set free of self-overlap)."""
    total = 0
    for x in a:
        for y in b:
            total += max(0, min(x.end, y.end) - max(x.start, y.start))
    return total


def state_intervals(
    samples: Sequence[tuple[int, bool]], window: Window, hold_ms: int
) -> tuple[list[Window], list[Window]]:
    """(true intervals, known intervals) of a sampled on/off state inside ``window``.

    Each sample's state holds until the next sample, but at most ``hold_ms`` (a silent board
    is not assumed to keep its state for ever). ``samples`` sorted by time; a sample before
    the window carries its state into it.
    """
    on: list[Window] = []
    known: list[Window] = []
    last = len(samples) - 1
    for i, (t, state) in enumerate(samples):
        end = t + hold_ms
        if i < last and samples[i + 1][0] < end:
            end = samples[i + 1][0]
        a, b = max(t, window.start), min(end, window.end)
        if b > a:
            iv = Window(a, b)
            known.append(iv)
            if state:
                on.append(iv)
    return on, known


def total_ms(intervals: Iterable[Window]) -> int:
    return sum(iv.end - iv.start for iv in intervals)
