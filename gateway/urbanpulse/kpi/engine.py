"""The KPI engine: stored telemetry in, ``kpi_*`` measurements out (README "KPIs").

A run recomputes every hourly window that overlaps the last ``[kpi] lookback_h`` hours, the
hours marked dirty by late data (``note_samples``), and the local days those hours touch.
Points are written with the same series and timestamp each time, so a recomputed window
replaces the old values. Queries go per measurement and time span with ``GROUP BY
device_id`` (never per device), so a run costs a few queries whatever the fleet's size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from urbanpulse.config import KpiSettings, Settings
from urbanpulse.influx.writer import PointWriter, V1Writer, WriteError, make_writer
from urbanpulse.registry.devices import Registry

from . import air, network, noise, parking, streetlight, traffic, water
from .context import Reader, RunContext
from .noise import DayPeriods
from .windows import (
    HOUR_MS,
    Window,
    hour_start,
    hours_between,
    local_day_window,
    local_days_touching,
    spans,
)

log = logging.getLogger("urbanpulse.kpi")

# Late data older than this is not recomputed (a board with a wrong clock must not make
# every run recompute years).
MAX_DIRTY_AGE_MS = 31 * 24 * HOUR_MS
# The gateway notes late samples when it receives them, and stores them up to a batch delay
# (or a retry) later: a mark this recent is also kept for the next run, which then sees them.
SETTLE_S = 10.0
WRITE_CHUNK = 5000

# Each family's step for a span of whole hours, in the order a run computes them.
HOURLY: tuple[Callable[[RunContext, Window], None], ...] = (
    air.hourly, noise.hourly, parking.hourly, traffic.hourly, streetlight.hourly, water.hourly,
    network.hourly,
)



def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class RunReport:
    hours: int
    days: int
    points: int
    seconds: float
    # Non-finite values left out, by measurement.field (see RunContext.emit).
    dropped: dict[str, int] = field(default_factory=dict)


class KpiEngine:
    def __init__(
        self,
        settings: Settings,
        registry: Callable[[], Registry],
        *,
        reader: Reader | None = None,
        writer: PointWriter | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings: KpiSettings = settings.kpi
        # One notion of "online" for liveness and the KPIs.
        self.timeout_factor = settings.liveness.timeout_factor
        self.tz = ZoneInfo(self.settings.timezone)
        self.periods = DayPeriods(
            self.settings.day_start_h, self.settings.evening_start_h, self.settings.night_start_h
        )
        self._registry = registry
        # Queries use the 1.x /query API, which InfluxDB 2/3 also serve (DBRP mapping).
        self._owned: list[PointWriter] = []  # connections opened here, closed by close()
        if reader is None:
            own_reader = V1Writer(settings.influx)
            self._owned.append(own_reader)
            reader = own_reader
        if writer is None:
            writer = make_writer(settings.influx)
            self._owned.append(writer)
        self._reader: Reader = reader
        self._writer: PointWriter = writer
        self._clock = clock
        self._dirty: dict[int, float] = {}  # hour start -> when last noted (monotonic)
        self.settle_s = SETTLE_S
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connections the engine opened itself (not ones it was given)."""
        for own in self._owned:
            own.close()
        self._owned.clear()

    # -- late data ---------------------------------------------------------------------------
    def note_samples(self, device_id: str, t_ms_min: int, t_ms_max: int) -> None:
        """Mark the hours holding samples [t_ms_min, t_ms_max] for recomputing; cheap and
        thread-safe (the gateway calls it from its message path)."""
        last = hour_start(max(t_ms_min, t_ms_max))
        first = max(hour_start(min(t_ms_min, t_ms_max)), last - MAX_DIRTY_AGE_MS)
        with self._lock:
            noted = time.monotonic()
            for h in range(first, last + HOUR_MS, HOUR_MS):
                self._dirty[h] = noted

    @property
    def dirty_hours(self) -> int:
        with self._lock:
            return len(self._dirty)

    # -- a run -------------------------------------------------------------------------------
    def run(self, now: int | None = None, keep_dirty: bool = False) -> RunReport:
        """One run. ``keep_dirty``: late samples noted at receipt may not be stored yet (the
        gateway's spool holds points): compute their windows, and again at the next run."""
        started = time.monotonic()
        now = self._clock() if now is None else now
        current = hour_start(now)
        hours = set(hours_between(now - self.settings.lookback_h * HOUR_MS, now + 1))
        with self._lock:
            dirty = self._dirty
            if keep_dirty:
                self._dirty = dict(dirty)
            else:
                settled_before = time.monotonic() - self.settle_s
                self._dirty = {h: t for h, t in dirty.items() if t > settled_before}
        hours |= {h for h in dirty if now - MAX_DIRTY_AGE_MS <= h <= current}
        # The AQI of an hour averages the 24 hours up to it: late data moves 24 AQI values.
        aqi_hours = {h + k * HOUR_MS for h in hours for k in range(air.AQI_HOURS)} - hours
        aqi_hours = {h for h in aqi_hours if h <= current}
        try:
            days = local_days_touching(hours, self.tz)
            ctx = self.compute(sorted(hours), days, now, sorted(aqi_hours))
            lines, deletes = ctx.lines, ctx.deletes
            for q in deletes:
                try:
                    self._reader.query(q)
                except WriteError as exc:
                    if exc.retryable:
                        raise
                    # InfluxDB 2/3's 1.x API reads only: old crossing events may then stay.
                    log.warning("could not replace old kpi_water_crossing points: %s", exc)
            for i in range(0, len(lines), WRITE_CHUNK):
                self._writer.write(lines[i : i + WRITE_CHUNK])
        except Exception:
            with self._lock:
                for h, noted in dirty.items():  # try these windows again next run
                    self._dirty[h] = max(noted, self._dirty.get(h, noted))
            raise
        report = RunReport(
            len(hours), len(days), len(lines), time.monotonic() - started, dict(ctx.dropped)
        )
        if ctx.dropped:
            log.warning(
                "kpi run: non-finite values left out (stored readings out of bounds?): %s",
                ", ".join(f"{name} x{n}" for name, n in sorted(ctx.dropped.items())),
            )
        log.info(
            "kpi run: %d hours, %d days, %d points in %.2f s",
            report.hours,
            report.days,
            report.points,
            report.seconds,
        )
        return report

    def compute(
        self, hours: Sequence[int], days: Sequence[date], now: int,
        aqi_hours: Sequence[int] = (),
    ) -> RunContext:
        """The run's line-protocol points (``lines``) for the given hours and local days (and
        the AQI alone for ``aqi_hours``), and the DELETE statements to run before writing them
        (``deletes``: event points
        of recomputed windows)."""
        ctx = RunContext(
            self.settings, self._registry(), now, self._reader, self.tz, self.timeout_factor
        )
        for span in spans(aqi_hours):
            air.hourly(ctx, span, aqi_only=True)
        for span in spans(hours):
            for family in HOURLY:
                family(ctx, span)
        for day in days:
            window = local_day_window(day, self.tz)
            noise.daily(ctx, day, self.periods)
            traffic.daily(ctx, window)
            streetlight.daily(ctx, window)
            network.capture_daily(ctx, window)
        parking.now(ctx)
        network.now(ctx)
        return ctx
