"""Parking occupancy: occupied spots / reporting spots, time-weighted (CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .context import RunContext
from .windows import HOUR_MS, Window, hour_window, state_intervals, total_ms


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


# -- the run step: hourly occupancy, bays free now -------------------------------------
def hourly(ctx: RunContext, span: Window) -> None:
    carry = ctx.carry_ms("parking")
    rows = ctx.raw("parking", ("occupied",), span.start - carry, span.end)
    states = {d: [(int(r[0]), bool(r[1])) for r in v if r[1] is not None]
              for d, v in rows.items()}
    for h in range(span.start, span.end, HOUR_MS):
        window = ctx.effective(hour_window(h))
        if window.end <= window.start:
            continue
        bays: dict[str, BayTime] = {}
        for device_id, samples in states.items():
            bay = bay_time(samples, window, ctx.hold_ms(ctx.devices[device_id]))
            if bay.known_ms > 0:
                bays[device_id] = bay
                ctx.emit("kpi_parking_hourly", ctx.device_tags(ctx.devices[device_id]),
                          {"occupancy": occupancy([bay]), "bays": 1}, h)
        for tags, members in ctx.groups(bays):
            ctx.emit("kpi_parking_hourly", tags, {
                "occupancy": occupancy(bays[m] for m in members),
                "bays": len(members),
            }, h)


def now(ctx: RunContext) -> None:
    carry = ctx.carry_ms("parking")
    if not carry:
        return
    rows = ctx.raw("parking", ("occupied",), ctx.now - carry, ctx.now + 1)
    occupied: dict[str, bool] = {}
    for device_id, values in rows.items():
        since = ctx.now - ctx.hold_ms(ctx.devices[device_id])
        fresh = [r for r in values if r[1] is not None and r[0] >= since]
        if fresh:
            occupied[device_id] = bool(fresh[-1][1])
    for tags, members in ctx.groups(occupied):
        taken = sum(occupied[m] for m in members)
        ctx.emit("kpi_parking_now", tags, {
            "occupied": taken, "free": len(members) - taken, "reporting": len(members),
            "occupancy": taken / len(members),
        }, ctx.now)
