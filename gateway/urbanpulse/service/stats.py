"""The gateway's counters since start: read by /metrics, gateway_stats and the tests."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from urbanpulse.contract.messages import Reason


@dataclass
class Stats:
    """Counters since start; read by the stats writer and by tests."""

    received: int = 0
    accepted: int = 0
    stored_points: int = 0
    refused_points: int = 0
    write_errors: int = 0
    # redelivered messages recognised (not stored again)
    duplicates: int = 0
    # points put in the spool while InfluxDB could not take them, and written from it later
    spooled_points: int = 0
    replayed_points: int = 0
    # points InfluxDB refused for good, set aside in the dead-letter file (also refused_points)
    dead_letter_points: int = 0
    # write requests to InfluxDB and the time they took (mean latency = seconds / writes)
    writes: int = 0
    write_seconds_total: float = 0.0
    rejected_messages: Counter[str] = field(default_factory=Counter)
    rejected_samples: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, int | float]:
        """Counters; all ints except ``write_seconds_total`` (always a float, so that the
        field keeps one type in gateway_stats)."""
        with self.lock:
            snap: dict[str, int | float] = {
                "received": self.received,
                "accepted": self.accepted,
                "stored_points": self.stored_points,
                "refused_points": self.refused_points,
                "write_errors": self.write_errors,
                "duplicates": self.duplicates,
                "spooled_points": self.spooled_points,
                "replayed_points": self.replayed_points,
                "dead_letter_points": self.dead_letter_points,
                "writes": self.writes,
                "write_seconds_total": round(self.write_seconds_total, 6),
                "rejected_messages": sum(self.rejected_messages.values()),
                "rejected_samples": sum(self.rejected_samples.values()),
            }
            for reason in Reason:
                snap[f"rejected_{reason.value}"] = (
                    self.rejected_messages[reason.value] + self.rejected_samples[reason.value]
                )
        return snap
