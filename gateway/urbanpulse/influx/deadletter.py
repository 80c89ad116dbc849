"""Points InfluxDB refused for good, set aside in a JSON-lines file for an operator.

One line per point: ``{"time": "2026-11-21T15:40:00.123Z", "status": 400, "reason": "...",
"point": "air_quality,device_id=... pm25=12.4 1763700000123"}``. ``reason`` is InfluxDB's own
error text (e.g. a field type conflict). The point can be fixed and written back with curl.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("urbanpulse.deadletter")


# InfluxDB 1.x: "partial write: ... dropped=3"; the points it could store it stored.
_DROPPED = re.compile(r"\bdropped=(\d+)")
_CONFLICT = re.compile(r'input field "([^"]+)" on measurement "([^"]+)"')


def split_refused(chunk: list[str], reason: str) -> list[list[str]] | None:
    """Smaller chunks to try, in order, to find which points of ``chunk`` InfluxDB refused
    (``reason`` is its error text); None when it says it refused every one of them.

    Halves in general; but a field type conflict names the measurement and field, so the
    points carrying that field are tried apart from the rest first: a batch with many such
    points then costs a few writes, not two per point.
    """
    dropped = _DROPPED.search(reason)
    if dropped is not None and int(dropped.group(1)) >= len(chunk):
        return None
    conflict = _CONFLICT.search(reason)
    if conflict is not None:
        field, measurement = conflict.groups()

        def suspect(line: str) -> bool:
            return line.startswith((f"{measurement},", f"{measurement} ")) and (
                f" {field}=" in line or f",{field}=" in line
            )

        suspects = [line for line in chunk if suspect(line)]
        if 0 < len(suspects) < len(chunk):
            return [[line for line in chunk if not suspect(line)], suspects]
    half = len(chunk) // 2
    return [chunk[:half], chunk[half:]]


def influx_reason(message: str) -> str:
    """InfluxDB's error text from a WriteError message ("... (HTTP 400): {"error": ...}")."""
    _, sep, body = message.partition("): ")
    text = body if sep else message
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return str(parsed["error"])
    return text.strip()


class DeadLetterFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, points: list[str], status: int | None, reason: str) -> bool:
        """Append the points (synced to disk); False if the file cannot be written, in which
        case the points are logged instead, so that they are never lost silently."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        text = "".join(
            json.dumps({"time": now, "status": status, "reason": reason, "point": p}) + "\n"
            for p in points
        )
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                log.error(
                    "cannot write dead letter file %s (%s); the refused points follow:\n%s",
                    self.path,
                    exc,
                    text,
                )
                return False
        return True
