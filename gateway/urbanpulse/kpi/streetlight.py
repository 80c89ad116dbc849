"""Street lighting: energy from the meter (robust to a reset), burning hours, faults.

Faults are lamps on in daylight or off at night (CONTRACT.md), judged against sunrise and
sunset at the lamp (``sun``), with a margin around both for photocell and schedule slack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .context import RunContext, between, level_tags
from .sun import darkness, daylight
from .windows import HOUR_MS, Window, hour_window, overlap_ms, state_intervals, total_ms


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


# -- the run step: energy, burning hours and faults per lamp and district --------------
def hourly(ctx: RunContext, span: Window) -> None:
    _windows(ctx, span, hourly=True)


def daily(ctx: RunContext, window: Window) -> None:
    _windows(ctx, window, hourly=False)


def _windows(ctx: RunContext, span: Window, *, hourly: bool) -> None:
    carry = ctx.carry_ms("streetlight")
    rows = ctx.raw("streetlight", ("lamp_on", "energy"), span.start - carry, span.end)
    windows = ([hour_window(h) for h in range(span.start, span.end, HOUR_MS)]
               if hourly else [span])
    measurement = "kpi_streetlight_hourly" if hourly else "kpi_streetlight_daily"
    for window in windows:
        lamps: dict[str, LampWindow] = {}
        effective = ctx.effective(window)
        for device_id, values in rows.items():
            d = ctx.devices[device_id]
            # The window's samples and those before it that can still carry in.
            upto = between(values, window.start - ctx.hold_ms(d), window.end)
            if not any(r[0] >= window.start for r in upto):
                continue  # nothing reported in this window
            lamp = lamp_window(
                [(int(r[0]), bool(r[1])) for r in upto if r[1] is not None],
                [(int(r[0]), float(r[2])) for r in upto if r[2] is not None],
                effective,
                lat=d.lat if d.lat is not None else ctx.s.latitude,
                lon=d.lon if d.lon is not None else ctx.s.longitude,
                hold_ms=ctx.hold_ms(d),
                margin_ms=int(ctx.s.twilight_margin_min * 60_000),
                fault_min_h=ctx.s.fault_min_h,
            )
            lamps[device_id] = lamp
            ctx.emit(measurement, ctx.device_tags(d), {
                "energy_wh": lamp.energy_wh, "burning_h": lamp.burning_h,
                "day_on_h": lamp.day_on_h, "night_off_h": lamp.night_off_h,
                "fault": lamp.fault,
            }, window.start)
        if hourly:
            continue
        for district, members in ctx.districts(lamps).items():
            ls = [lamps[m] for m in members]
            ctx.emit(measurement, level_tags("district", district), {
                "energy_wh": sum(x.energy_wh for x in ls),
                "burning_h": sum(x.burning_h for x in ls),
                "day_on_h": sum(x.day_on_h for x in ls),
                "night_off_h": sum(x.night_off_h for x in ls),
                "faults": sum(x.fault for x in ls),
            }, window.start)
