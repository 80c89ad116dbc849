"""The gateway's counters since start, and the one table that names them.

``COUNTERS`` is read by ``Stats.snapshot()`` (the ``gateway_stats`` measurement) and by
``/metrics``; the pipeline only ever calls the methods below, which take the lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from urbanpulse.contract.messages import Reason


@dataclass(frozen=True)
class CounterSpec:
    key: str  # gateway_stats field
    metric: str  # /metrics name, without the prefix and _total
    help: str


COUNTERS: tuple[CounterSpec, ...] = (
    CounterSpec("received", "messages_received",
                "MQTT messages received (telemetry, health, status)"),
    CounterSpec("accepted", "messages_accepted", "messages that passed the envelope checks"),
    CounterSpec("duplicates", "messages_duplicate",
                "redelivered messages recognised and not stored again"),
    CounterSpec("stored_points", "points_stored", "points InfluxDB stored"),
    CounterSpec("refused_points", "points_refused", "points InfluxDB refused for good"),
    CounterSpec("write_errors", "write_errors", "failed InfluxDB write attempts"),
    CounterSpec("spooled_points", "points_spooled", "points written to the disk spool"),
    CounterSpec("replayed_points", "points_replayed", "spooled points later stored in InfluxDB"),
    CounterSpec("dead_letter_points", "points_dead_letter",
                "refused points set aside (dead-letter file)"),
    CounterSpec("writes", "writes", "InfluxDB write attempts"),
)
# Sums over the reasons, kept beside the per-reason counts (rejected_{reason}).
REJECTION_TOTALS: tuple[CounterSpec, ...] = (
    CounterSpec("rejected_messages", "messages_rejected", "messages rejected whole"),
    CounterSpec("rejected_samples", "samples_rejected", "samples (health: fields) rejected"),
)


class Stats:
    """Counters since start. Thread-safe: paho's thread and the batcher's both count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((spec.key for spec in COUNTERS), 0)
        # Time spent in write requests: mean latency = write_seconds_total / writes.
        self._write_seconds = 0.0
        self._rejected_messages: Counter[str] = Counter()
        self._rejected_samples: Counter[str] = Counter()
        # Other processes' counters added into ours ([service] workers): each worker's
        # latest snapshot, and what workers that ended had counted (totals never go back).
        self._external: dict[str, dict[str, int | float]] = {}
        self._retired: dict[str, int | float] = {}

    def _add(self, **counts: int) -> None:
        with self._lock:
            for key, n in counts.items():
                self._counts[key] += n

    def received(self) -> None:
        self._add(received=1)

    def accepted(self) -> None:
        self._add(accepted=1)

    def duplicate(self) -> None:
        """A redelivered message, recognised: accepted, not stored again."""
        self._add(accepted=1, duplicates=1)

    def rejected(self, reason: Reason, *, whole: bool) -> None:
        """``whole``: the message; else one of its samples (health: one field)."""
        with self._lock:
            counter = self._rejected_messages if whole else self._rejected_samples
            counter[reason.value] += 1

    def spooled(self, points: int) -> None:
        self._add(spooled_points=points)

    def replayed(self, points: int) -> None:
        self._add(replayed_points=points)

    def write(self, seconds: float, *, stored: int = 0, failed: bool = False) -> None:
        """One write request to InfluxDB: ``stored`` points, or ``failed``."""
        with self._lock:
            self._counts["writes"] += 1
            self._write_seconds += seconds
            self._counts["stored_points"] += stored
            self._counts["write_errors"] += int(failed)

    def dead_lettered(self, points: int) -> None:
        """Points InfluxDB refused for good, set aside in the dead-letter file."""
        self._add(refused_points=points, dead_letter_points=points)

    def set_external(self, name: str, snapshot: Mapping[str, int | float]) -> None:
        """The latest counters (a ``snapshot()``) of another process, ``name``."""
        with self._lock:
            self._external[name] = dict(snapshot)

    def retire_external(self, name: str) -> None:
        """``name`` ended (a restarted worker counts from 0 again): its counts stay."""
        with self._lock:
            for key, n in self._external.pop(name, {}).items():
                self._retired[key] = self._retired.get(key, 0) + n

    def snapshot(self) -> dict[str, int | float]:
        """Counters; all ints except ``write_seconds_total`` (always a float, so that the
        field keeps one type in gateway_stats)."""
        with self._lock:
            snap: dict[str, int | float] = dict(self._counts)
            snap["write_seconds_total"] = round(self._write_seconds, 6)
            snap["rejected_messages"] = sum(self._rejected_messages.values())
            snap["rejected_samples"] = sum(self._rejected_samples.values())
            for reason in Reason:
                snap[f"rejected_{reason.value}"] = (
                    self._rejected_messages[reason.value] + self._rejected_samples[reason.value]
                )
            for other in (*self._external.values(), self._retired):
                for key, n in other.items():
                    if key in snap:
                        snap[key] += n
        return snap
