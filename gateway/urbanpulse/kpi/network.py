"""Network availability and data completeness (CONTRACT.md; EU 2008/50/EC thresholds)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from urbanpulse.contract.vocabulary import DEVICE_HEALTH_MEASUREMENT, KIND_MEASUREMENTS
from urbanpulse.influx.influxql import ident

from .context import RunContext, level_tags, time_range
from .windows import HOUR_MS, Window, hour_window

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


# -- the run step: hourly completeness, online now, daily capture ----------------------
def kind_counts(ctx: RunContext, start: int, end: int) -> dict[str, dict[int, int]]:
    """Samples per device and UTC hour in its kind's measurements."""
    out: dict[str, dict[int, int]] = defaultdict(dict)
    measurements = {m for k in ctx.by_kind for m in KIND_MEASUREMENTS.get(k, ())}
    for m in sorted(measurements):
        for device_id, rows in ctx.hourly_aggregate("count(*)", m, start, end).items():
            if m not in KIND_MEASUREMENTS.get(ctx.devices[device_id].kind, ()):
                continue
            for t, values in rows:
                n = int(max((v or 0) for v in values.values()))
                out[device_id][t] = max(out[device_id].get(t, 0), n)
    return out


def hourly(ctx: RunContext, span: Window) -> None:
    counts = kind_counts(ctx, span.start, span.end)
    for h in range(span.start, span.end, HOUR_MS):
        covered_s = (ctx.effective(hour_window(h)).end - h) / 1000
        if covered_s <= 0:
            continue
        per_district: dict[str, list[Completeness]] = defaultdict(list)
        for d in ctx.devices.values():
            c = completeness(counts.get(d.device_id, {}).get(h, 0), covered_s,
                                     d.interval_s)
            per_district[d.district].append(c)
            ctx.emit("kpi_network_hourly", ctx.device_tags(d), {
                "samples": c.samples, "expected": c.expected,
                "completeness": c.completeness, "valid": c.valid,
                # A count (1/0), not a bool: the district's `seen` in the same
                # measurement counts devices, and a field has one type per measurement.
                "seen": 1.0 if c.samples > 0 else 0.0,
            }, h)
        for district, cs in per_district.items():
            seen = sum(c.samples > 0 for c in cs)
            ctx.emit("kpi_network_hourly", level_tags("district", district), {
                "devices": len(cs), "seen": seen,
                "availability": availability(seen, len(cs)),
                "completeness": sum(c.completeness for c in cs) / len(cs),
            }, h)


def now(ctx: RunContext) -> None:
    if not ctx.devices:
        return
    longest = max(ctx.hold_ms(d) for d in ctx.devices.values())
    last_seen: dict[str, int] = {}
    measurements = {m for k in ctx.by_kind for m in KIND_MEASUREMENTS.get(k, ())}
    for m in sorted(measurements | {DEVICE_HEALTH_MEASUREMENT}):
        q = (f"SELECT * FROM {ident(m)} WHERE {time_range(ctx.now - longest, ctx.now + 1)} "
             "GROUP BY device_id ORDER BY time DESC LIMIT 1")
        for series in ctx.reader.query(q):
            device_id = series.get("tags", {}).get("device_id", "")
            if device_id in ctx.devices and series["values"]:
                t = int(series["values"][0][0])
                last_seen[device_id] = max(last_seen.get(device_id, 0), t)
    per_district: dict[str, list[bool]] = defaultdict(list)
    for d in ctx.devices.values():
        seen = last_seen.get(d.device_id)
        per_district[d.district].append(
            seen is not None and ctx.now - seen <= ctx.hold_ms(d)
        )
    everyone = [x for xs in per_district.values() for x in xs]
    groups = [(level_tags("district", k), v) for k, v in per_district.items()]
    groups.append(({"level": "city", "district": "all"}, everyone))
    for tags, online in groups:
        ctx.emit("kpi_network_now", tags, {
            "registered": len(online), "online": sum(online),
            "availability": availability(sum(online), len(online)),
        }, ctx.now)


def capture_daily(ctx: RunContext, window: Window) -> None:
    # Hours of the local day that have ended (today counts only its past hours).
    hours = [h for h in range(window.start, window.end, HOUR_MS) if h + HOUR_MS <= ctx.now]
    if not hours:
        return
    counts = kind_counts(ctx, window.start, window.end)
    per_district: dict[str, list[Capture]] = defaultdict(list)
    for d in ctx.devices.values():
        per_hour = counts.get(d.device_id, {})
        valid = sum(
            completeness(per_hour.get(h, 0), 3600, d.interval_s).valid for h in hours
        )
        c = capture(valid, len(hours))
        per_district[d.district].append(c)
        ctx.emit("kpi_capture_daily", ctx.device_tags(d), {
            "valid_hours": c.valid_hours, "capture": c.capture, "good": c.good,
        }, window.start)
    for district, cs in per_district.items():
        mean_capture = sum(c.capture for c in cs) / len(cs)
        ctx.emit("kpi_capture_daily", level_tags("district", district), {
            "valid_hours": sum(c.valid_hours for c in cs) / len(cs),
            "capture": mean_capture, "good": mean_capture >= GOOD_CAPTURE,
        }, window.start)
