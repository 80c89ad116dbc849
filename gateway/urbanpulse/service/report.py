"""What a worker process tells its parent, and what the parent keeps of it ([service] workers).

A worker (service/workers.py) stores what its share of the boards sends, but liveness, the KPIs
and the gateway's counters are the parent's, computed once for all workers. So every second a
worker reports, as sd_notify datagrams on the socket the parent gave it in NOTIFY_SOCKET (the
parent is its systemd): its counters, what waits in it, which boards it heard from and which
late samples it stored. READY=1, WATCHDOG=1 and STATUS= come the same way, from the worker's
ordinary Notifier.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from .status import GatewayStatus

REPORT_KEY = "X_URBANPULSE_REPORT"
# Board ids per datagram: a unix datagram of a few tens of KiB at most.
SEEN_PER_DATAGRAM = 1000


class WorkerReport:
    """Collected on the worker's message path (paho's thread), sent by its main loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._late: dict[str, tuple[int, int]] = {}

    def seen(self, device_id: str) -> None:
        with self._lock:
            self._seen.add(device_id)

    def late(self, device_id: str, t_min: int, t_max: int) -> None:
        with self._lock:
            lo, hi = self._late.get(device_id, (t_min, t_max))
            self._late[device_id] = (min(lo, t_min), max(hi, t_max))

    def take(self, status: GatewayStatus) -> list[str]:
        """The report's datagrams (JSON texts), emptying what was collected."""
        with self._lock:
            seen, self._seen = sorted(self._seen), set()
            late, self._late = self._late, {}
        first: dict[str, Any] = {
            "counters": status.counters,
            "pending_points": status.pending_points,
            "spool": status.spool,
            "connected": status.connected,
            "late": late,
            "seen": seen[:SEEN_PER_DATAGRAM],
        }
        rest = [{"seen": seen[i:i + SEEN_PER_DATAGRAM]}
                for i in range(SEEN_PER_DATAGRAM, len(seen), SEEN_PER_DATAGRAM)]
        return [json.dumps(part, separators=(",", ":")) for part in (first, *rest)]


def merge_spool(into: dict[str, int | float], other: dict[str, int | float]) -> None:
    """Add another process's spool_status() into ``into``: an age is the oldest's, the rest
    add up."""
    for key, n in other.items():
        old = into.get(key, 0)
        into[key] = max(old, n) if key.endswith("_age_s") else old + n


@dataclass
class PeerTotals:
    """The workers' last reports, summed: what the parent's snapshot adds to its own."""

    pending_points: int = 0
    spool: dict[str, int | float] = field(default_factory=dict)
    connected: bool = True
