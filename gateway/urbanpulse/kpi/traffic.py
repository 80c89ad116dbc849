"""Traffic flow: vehicles per hour, ``sum(vehicles) * 3600 / sum(period_s)`` (CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .context import RunContext, between, time_range
from .windows import HOUR_MS, Window


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


# -- the run step: hourly flow, daily totals -------------------------------------------
def hourly(ctx: RunContext, span: Window) -> None:
    rows = ctx.raw("traffic", ("vehicles", "period_s"), span.start, span.end)
    for h in range(span.start, span.end, HOUR_MS):
        flows: dict[str, Flow] = {}
        for device_id, values in rows.items():
            default_period = ctx.devices[device_id].interval_s
            counts = [(float(r[1]), float(r[2]) if r[2] is not None else default_period)
                      for r in between(values, h, h + HOUR_MS) if r[1] is not None]
            if counts:
                flows[device_id] = result = flow(counts)
                ctx.emit("kpi_traffic_hourly", ctx.device_tags(ctx.devices[device_id]),
                          {"vehicles": result.vehicles, "flow_vph": result.flow_vph}, h)
        for tags, members in ctx.groups(flows):
            vph = [flows[m].flow_vph for m in members if flows[m].flow_vph is not None]
            ctx.emit("kpi_traffic_hourly", tags, {
                "vehicles": sum(flows[m].vehicles for m in members),
                # The flow through a site is the sum of its counters' flows.
                "flow_vph": sum(v for v in vph if v is not None) if vph else None,
            }, h)


def daily(ctx: RunContext, window: Window) -> None:
    q = (f'SELECT sum("vehicles") AS vehicles FROM "traffic" WHERE '
         f"{time_range(window.start, window.end)} GROUP BY device_id")
    totals: dict[str, float] = {}
    for series in ctx.reader.query(q):
        device_id = series.get("tags", {}).get("device_id", "")
        if device_id in ctx.devices and series["values"][0][1] is not None:
            totals[device_id] = float(series["values"][0][1])
            ctx.emit("kpi_traffic_daily", ctx.device_tags(ctx.devices[device_id]),
                      {"vehicles": totals[device_id]}, window.start)
    for tags, members in ctx.groups(totals):
        ctx.emit("kpi_traffic_daily", tags,
                  {"vehicles": sum(totals[m] for m in members)}, window.start)
