"""Logging to stdout/stderr in a form journald keeps well.

Under systemd (``JOURNAL_STREAM`` set) each line starts with a ``<N>`` syslog priority, which
journald turns into the entry's priority (``journalctl -p warning`` works) and no timestamp,
which journald adds itself. On a terminal lines carry a timestamp instead.
Lines read ``LEVEL component: message key=value ...``; a device is named as ``device=ID``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # paho and urllib3 are chatty at DEBUG; their warnings still come through.
    for noisy in ("urllib3", "paho"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))


class RateLimitedLog:
    """At most one line per key per interval; the lines held back are counted in the next."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, key: str, level: int, message: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._suppressed.pop(key, 0)
        suffix = f" (+{held} more like this in the last {self._interval:g} s)" if held else ""
        self._logger.log(level, "%s%s", message, suffix)
        return True
