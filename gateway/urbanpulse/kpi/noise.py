"""Noise indicators: energetic means (Leq) and Lden (EU Environmental Noise Directive)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from .context import Fields, RunContext, between, clean, level_tags
from .windows import HOUR_MS, Window, local_day_window, local_instant_ms


def energetic_mean(levels: Iterable[float]) -> float | None:
    """``10*log10(mean(10^(L/10)))``; None for no levels."""
    powers = [10 ** (level / 10) for level in levels]
    if not powers:
        return None
    return 10 * math.log10(sum(powers) / len(powers))


@dataclass(frozen=True)
class DayPeriods:
    """Local hours where day, evening and night start (EU END default 07, 19, 23)."""

    day_start_h: int = 7
    evening_start_h: int = 19
    night_start_h: int = 23

    def __post_init__(self) -> None:
        if not 0 <= self.day_start_h < self.evening_start_h < self.night_start_h <= 24:
            raise ValueError(
                "need 0 <= day_start_h < evening_start_h < night_start_h <= 24, got "
                f"{self.day_start_h}, {self.evening_start_h}, {self.night_start_h}"
            )

    def windows(self, day: date, tz: ZoneInfo) -> dict[str, list[Window]]:
        """The UTC intervals of each period within the local day (night = its two ends)."""

        def at(hour: int) -> int:
            return local_instant_ms(day, hour, tz)

        night = [Window(at(0), at(self.day_start_h)), Window(at(self.night_start_h), at(24))]
        return {
            "day": [Window(at(self.day_start_h), at(self.evening_start_h))],
            "evening": [Window(at(self.evening_start_h), at(self.night_start_h))],
            "night": [w for w in night if w.end > w.start],
        }


def lden(
    lday: float, levening: float, lnight: float, hours: tuple[float, float, float] = (12, 4, 8)
) -> float:
    """Lden with evening +5 dB and night +10 dB, each period weighted by its hours."""
    hd, he, hn = hours
    total = hd * 10 ** (lday / 10) + he * 10 ** ((levening + 5) / 10) + hn * 10 ** (
        (lnight + 10) / 10
    )
    return 10 * math.log10(total / (hd + he + hn))


@dataclass(frozen=True)
class NoiseDay:
    lday: float | None
    levening: float | None
    lnight: float | None
    lden: float | None
    samples: int
    hours: tuple[float, float, float]


def noise_day(
    samples: Sequence[tuple[int, float]], day: date, tz: ZoneInfo, periods: DayPeriods
) -> NoiseDay:
    """Lday/Levening/Lnight/Lden of one local day from (t_ms, LAeq) samples.

    Periods are taken in local time, so on a DST change the night is 7 or 9 hours long and
    weighs accordingly. Lden needs all three periods to have data.
    """
    wins = periods.windows(day, tz)
    levels: dict[str, list[float]] = {name: [] for name in wins}
    count = 0
    for t, level in samples:
        for name, ivs in wins.items():
            if any(iv.start <= t < iv.end for iv in ivs):
                levels[name].append(level)
                count += 1
                break
    hours = tuple(sum(iv.hours for iv in wins[n]) for n in ("day", "evening", "night"))
    ld, le, ln = (energetic_mean(levels[n]) for n in ("day", "evening", "night"))
    den = None
    if ld is not None and le is not None and ln is not None:
        den = lden(ld, le, ln, (hours[0], hours[1], hours[2]))
    return NoiseDay(ld, le, ln, den, count, (hours[0], hours[1], hours[2]))


# -- the run step: hourly LAeq per device and site, daily Lden -------------------------
def hourly(ctx: RunContext, span: Window) -> None:
    rows = ctx.raw("noise", ("laeq", "lamax", "lamin"), span.start, span.end)
    for h in range(span.start, span.end, HOUR_MS):
        per_device: dict[str, Fields] = {}
        for device_id, values in rows.items():
            inside = between(values, h, h + HOUR_MS)
            if not inside:
                continue
            fields = _noise_fields(inside)
            per_device[device_id] = fields
            ctx.emit("kpi_noise_hourly", ctx.device_tags(ctx.devices[device_id]),
                      fields, h)
        for (district, site), members in ctx.sites(per_device).items():
            laeqs = [float(per_device[m]["laeq"]) for m in members if "laeq" in per_device[m]]
            maxs = [float(per_device[m]["lamax"]) for m in members if "lamax" in per_device[m]]
            mins = [float(per_device[m]["lamin"]) for m in members if "lamin" in per_device[m]]
            ctx.emit("kpi_noise_hourly", level_tags("site", district, site), {
                "laeq": energetic_mean(laeqs),
                "lamax": max(maxs) if maxs else None,
                "lamin": min(mins) if mins else None,
                "samples": sum(float(per_device[m]["samples"]) for m in members),
            }, h)


def daily(ctx: RunContext, day: date, periods: DayPeriods) -> None:
    window = local_day_window(day, ctx.tz)
    rows = ctx.raw("noise", ("laeq",), window.start, window.end)
    for device_id, values in rows.items():
        samples = [(int(r[0]), float(r[1])) for r in values if r[1] is not None]
        if not samples:
            continue
        result = noise_day(samples, day, ctx.tz, periods)
        ctx.emit("kpi_noise_daily", ctx.device_tags(ctx.devices[device_id]), {
            "lden": result.lden, "lday": result.lday, "levening": result.levening,
            "lnight": result.lnight, "samples": result.samples,
        }, window.start)


def _noise_fields(rows: Sequence[Sequence[Any]]) -> Fields:
    laeq = [float(r[1]) for r in rows if r[1] is not None]
    lamax = [float(r[2]) for r in rows if r[2] is not None]
    lamin = [float(r[3]) for r in rows if r[3] is not None]
    return clean({
        "laeq": energetic_mean(laeq),
        "lamax": max(lamax) if lamax else None,
        "lamin": min(lamin) if lamin else None,
        "samples": len(rows),
    })
