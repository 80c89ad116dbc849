"""The systemd notify protocol (sd_notify(3)), without libsystemd.

systemd passes ``NOTIFY_SOCKET`` (a unix datagram socket: a path, or ``@name`` for the
abstract namespace) to a ``Type=notify`` service; the service sends newline-separated
``KEY=VALUE`` datagrams: ``READY=1`` once it serves, ``STATUS=...`` for ``systemctl status``,
``STOPPING=1`` when it begins to shut down and ``WATCHDOG=1`` as a keep-alive. With
``WatchdogSec=`` systemd sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``); a service that does
not ping within that time is killed and, with ``Restart=``, started again. We ping at half
the period, as sd_watchdog_enabled(3) recommends.

Without ``NOTIFY_SOCKET`` (a terminal, a test) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from .logs import RateLimitedLog

log = logging.getLogger("urbanpulse.sdnotify")


def _address(value: str) -> str | bytes:
    # "@name" is Linux's abstract namespace: the address starts with a NUL byte.
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_usec(environ: Mapping[str, str]) -> int | None:
    """The watchdog period systemd asked for, if it is meant for this process."""
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = environ.get("WATCHDOG_PID")
    # A child that inherited the variables must not ping for its parent.
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    return usec if usec > 0 else None


class Notifier:
    """Sends notify messages to systemd; a no-op when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        target = env.get("NOTIFY_SOCKET", "")
        self._address = _address(target) if target else None
        # Made once, here: notify() is called from paho's thread, the main loop and the
        # SIGTERM handler; datagram sends on one socket need no lock.
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = watchdog_usec(env)
        self.watchdog_period_s: float | None = usec / 1e6 if usec else None
        self._errors = RateLimitedLog(log, 60.0)
        self._stopping_sent = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the period systemd allows; None when not asked to."""
        if self._address is None or self.watchdog_period_s is None:
            return None
        return self.watchdog_period_s / 2

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram of KEY=VALUE lines; False if it could not be sent."""
        sock = self._sock
        if self._address is None or sock is None:
            return False
        text = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            sock.sendto(text.encode(), self._address)
        except OSError as exc:
            # systemd gone or the socket unreadable: the service still works without it.
            self._errors.log("send", logging.WARNING, f"sd_notify to {self._address!r}: {exc}")
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str = "stopping: storing what is pending") -> bool:
        if self._stopping_sent:
            return False
        self._stopping_sent = True
        return self.notify(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
