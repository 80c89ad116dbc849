"""Is the pipeline making progress? Write timings for the watchdog and for /metrics.

``ObservedWriter`` wraps the InfluxDB writer the batcher uses and records when each write
starts and ends. A write that has been in flight longer than the watchdog period means the
pipeline is stuck (a store that accepted the connection and never answers, with a long
``[influx] timeout_s``): the gateway stops pinging systemd, which restarts it. A store that
refuses connections is not stuck: its writes fail fast, the batcher retries with backoff and
the broker keeps the messages; restarting would not help.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass

from urbanpulse.influx.writer import PointWriter

# Seconds; the upper bounds of the write latency histogram's buckets.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class LatencySnapshot:
    buckets: tuple[tuple[float, int], ...]  # (upper bound, cumulative count)
    count: int
    sum_s: float
    last_s: float | None


class ObservedWriter:
    """A PointWriter that times each write; thread-safe."""

    def __init__(self, inner: PointWriter) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self._last_activity = time.monotonic()  # a write started or ended
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._last: float | None = None

    def write(self, lines: list[str]) -> None:
        started = time.monotonic()
        with self._lock:
            self._busy_since = started
            self._last_activity = started
        ok = False
        try:
            self.inner.write(lines)
            ok = True
        finally:
            elapsed = time.monotonic() - started
            with self._lock:
                self._busy_since = None
                self._last_activity = started + elapsed
                if ok and lines:
                    # Only stored batches: a failed attempt's time says nothing about latency.
                    self._counts[bisect.bisect_left(LATENCY_BUCKETS, elapsed)] += 1
                    self._sum += elapsed
                    self._last = elapsed

    def ensure_database(self) -> None:
        self.inner.ensure_database()

    def close(self) -> None:
        self.inner.close()

    def busy_for(self, now: float | None = None) -> float:
        """How long the write in flight has been running (0 when none is)."""
        with self._lock:
            since = self._busy_since
        if since is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - since)

    def idle_for(self, now: float | None = None) -> float:
        """How long since a write last started or ended (0 while one runs)."""
        with self._lock:
            if self._busy_since is not None:
                return 0.0
            last = self._last_activity
        return max(0.0, (time.monotonic() if now is None else now) - last)

    def latency(self) -> LatencySnapshot:
        with self._lock:
            counts = list(self._counts)
            total, last = self._sum, self._last
        cumulative, running = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return LatencySnapshot(tuple(cumulative), running, total, last)
