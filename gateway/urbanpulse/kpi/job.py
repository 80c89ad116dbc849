"""``KpiJob``: the KPI engine run every ``[kpi] interval_s`` inside the gateway.

The gateway wires it as::

    self.kpi = KpiJob(settings, lambda: self.registry_watcher.registry)  # own connections
    # in the message path, when a message holds samples older than the current UTC hour:
    self.kpi.note_samples(device_id, min(t), max(t))
    self.kpi.start()   # in Gateway.start(): a thread running every [kpi] interval_s
    self.kpi.stop()    # in Gateway.stop()

or, without a thread of its own, ``run_due(time.monotonic())`` from ``Gateway.run()``'s loop
(a run then delays registry reloads and statistics by its duration).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from urbanpulse.config import Settings
from urbanpulse.influx.writer import PointWriter
from urbanpulse.registry.devices import Registry

from .context import Reader
from .engine import KpiEngine, RunReport

log = logging.getLogger("urbanpulse.kpi")


class KpiJob:
    def __init__(
        self,
        settings: Settings,
        registry: Callable[[], Registry],
        *,
        reader: Reader | None = None,
        writer: PointWriter | None = None,
        backlog: Callable[[], bool] = lambda: False,
    ) -> None:
        self.enabled = settings.kpi.enabled
        # True while received points wait to be stored (the gateway's spool after an outage):
        # windows that late data touched are then recomputed until it has been stored.
        self._backlog = backlog
        self.interval_s = settings.kpi.interval_s
        self.engine = KpiEngine(settings, registry, reader=reader, writer=writer)
        self.last_report: RunReport | None = None
        self.runs = 0
        self.failures = 0
        self._next_due = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note_samples(self, device_id: str, t_ms_min: int, t_ms_max: int) -> None:
        """Late data: recompute the windows these samples fall in at the next run."""
        if self.enabled:
            self.engine.note_samples(device_id, t_ms_min, t_ms_max)

    def run_due(self, now: float) -> bool:
        """Run once if enabled and ``interval_s`` has passed since the last run (``now`` from
        time.monotonic()). A failure is logged and retried at the next interval."""
        if not self.enabled or now < self._next_due:
            return False
        self._next_due = now + self.interval_s
        try:
            self.last_report = self.engine.run(keep_dirty=self._backlog())
            self.runs += 1
        except Exception as exc:
            # InfluxDB away or a bug: the gateway keeps storing data; dirty windows are kept.
            self.failures += 1
            log.error("kpi run failed, retrying in %.0f s: %s", self.interval_s, exc)
        return True

    def start(self) -> None:
        """Run every ``interval_s`` in a thread, the first run one interval from now: at the
        gateway's start the stored data lags (the broker's backlog and the spool are stored
        first, boards reconnect), and a "now" KPI computed then would report boards offline
        that are not."""
        if not self.enabled or self._thread is not None:
            return
        self._next_due = time.monotonic() + self.interval_s
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kpi", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due(time.monotonic())
            self._stop.wait(max(0.05, self._next_due - time.monotonic()))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the thread (a run in progress finishes first) and close connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.engine.close()
