"""Water level: last and highest level, rate of rise, alert threshold crossings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from urbanpulse.contract.lineprotocol import FieldValue

from .context import RunContext, between, time_range
from .windows import HOUR_MS, Window


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


# -- the run step: hourly level and rise, threshold crossings --------------------------
def hourly(ctx: RunContext, span: Window) -> None:
    carry = ctx.carry_ms("water")
    rows = ctx.raw("water", ("water_level",), span.start - carry, span.end)
    # Crossing events of the recomputed span are replaced, not added to.
    ctx.deletes.append(
        f'DELETE FROM "kpi_water_crossing" WHERE {time_range(span.start, span.end)}'
    )
    for device_id, values in rows.items():
        d = ctx.devices[device_id]
        levels = [(int(r[0]), float(r[1])) for r in values if r[1] is not None]
        threshold = d.threshold_cm
        for h in range(span.start, span.end, HOUR_MS):
            inside = between(levels, h, h + HOUR_MS)
            result = water_window(inside)
            if result is None:
                continue
            fields: dict[str, FieldValue | None] = {
                "water_level": result.level, "level_max": result.level_max,
                "rise_cm_h": result.rise_cm_h,
            }
            if threshold is not None:
                fields.update(threshold_cm=threshold, above=result.level >= threshold)
            ctx.emit("kpi_water", ctx.device_tags(d), fields, h)
        if threshold is not None:
            for c in crossings(levels, threshold, span.start):
                ctx.emit("kpi_water_crossing", ctx.device_tags(d), {
                    "direction": c.direction, "water_level": c.level, "threshold_cm": threshold,
                }, c.t)
