"""Air quality: hourly means per device, site and district, and the AQI (formulas in aqi.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from urbanpulse.contract.lineprotocol import FieldValue

from . import aqi as aqi_
from .context import Fields, RunContext, clean
from .windows import HOUR_MS, Window

AIR_FIELDS = ("pm1", "pm25", "pm10", "no2", "o3", "co2", "temperature", "humidity", "pressure")
AQI_HOURS = 24
AQI_VALID_HOURS = 18


def hourly(ctx: RunContext, span: Window, *, aqi_only: bool = False) -> None:
    means_sel = ", ".join(f'mean("{f}") AS "{f}"' for f in AIR_FIELDS)
    aqi_start = span.start - (AQI_HOURS - 1) * HOUR_MS
    means = ctx.hourly_aggregate(means_sel, "air_quality", aqi_start, span.end)
    counts = ({} if aqi_only else
              ctx.hourly_aggregate("count(*)", "air_quality", span.start, span.end))
    hours = range(span.start, span.end, HOUR_MS)
    by_hour: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for device_id, rows in means.items():
        for t, values in rows:
            by_hour[t][device_id] = values
    samples: dict[tuple[int, str], int] = {}
    for device_id, rows in counts.items():
        for t, values in rows:
            samples[(t, device_id)] = int(max((v or 0) for v in values.values()))
    for h in hours:
        aqi_hour(ctx, h, by_hour)
        if aqi_only:
            continue
        current = by_hour.get(h, {})
        for device_id, values in current.items():
            fields: dict[str, FieldValue | None] = {f: values.get(f) for f in AIR_FIELDS}
            fields["samples"] = samples.get((h, device_id), 0)
            ctx.emit("kpi_air_hourly", ctx.device_tags(ctx.devices[device_id]), fields, h)
        for tags, members in ctx.groups(current):
            agg: dict[str, FieldValue | None] = {}
            for f in AIR_FIELDS:
                vals = [current[m][f] for m in members if current[m].get(f) is not None]
                agg[f] = sum(vals) / len(vals) if vals else None
            agg["samples"] = sum(samples.get((h, m), 0) for m in members)
            ctx.emit("kpi_air_hourly", tags, agg, h)


def aqi_hour(
    ctx: RunContext, h: int, by_hour: Mapping[int, Mapping[str, Mapping[str, Any]]]
) -> None:
    """AQI for hour ``h`` from the 24 hourly means of the window ending with ``h``."""
    series: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for k in range(AQI_HOURS):
        for device_id, values in by_hour.get(h - k * HOUR_MS, {}).items():
            for f in ("pm25", "pm10"):
                if values.get(f) is not None:
                    series[device_id][f].append(values[f])
            if values.get("pm25") is not None or values.get("pm10") is not None:
                series[device_id]["hours"].append(1.0)
    results: dict[str, tuple[aqi_.Aqi, Fields]] = {}
    for device_id, data in series.items():
        pm25 = sum(data["pm25"]) / len(data["pm25"]) if data["pm25"] else None
        pm10 = sum(data["pm10"]) / len(data["pm10"]) if data["pm10"] else None
        result = aqi_.aqi(pm25, pm10)
        if result is None:
            continue
        n = len(data["hours"])
        fields = clean({
            "pm25_24h": pm25, "pm10_24h": pm10, "aqi": result.aqi,
            "aqi_pm25": result.aqi_pm25, "aqi_pm10": result.aqi_pm10,
            "dominant": result.dominant, "category": result.category,
            "hours": n, "valid": n >= AQI_VALID_HOURS,
        })
        results[device_id] = (result, fields)
        ctx.emit("kpi_aqi", ctx.device_tags(ctx.devices[device_id]), fields, h)
    for tags, members in ctx.groups(results):
        ctx.emit("kpi_aqi", tags, _max_aqi([results[m] for m in members]), h)


def _max_aqi(results: Sequence[tuple[aqi_.Aqi, Fields]]) -> Fields:
    """A site's or district's AQI: its worst device, among valid devices when any is."""
    valid = [r for r in results if r[1].get("valid")]
    pool = valid or list(results)
    worst = max(pool, key=lambda r: r[0].aqi)
    fields = dict(worst[1])
    fields["valid"] = bool(valid)
    return fields
