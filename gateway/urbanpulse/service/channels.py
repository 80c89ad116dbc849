"""What the health, status and ack handlers share: topic to registered device, counting,
logging.

Topics are ``{prefix}/{device_id}/{channel}`` (contract/topics.py); the channel
(``telemetry``, ``health``, ``status``, ``cmd/ack``) picks the handler. Rejections are
counted in the same ``Stats`` as telemetry's (by reason) and logged the same way, at most
once per reason per interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from urbanpulse.contract.messages import MessageRejected, Reason, Rejection
from urbanpulse.contract.topics import topic_levels
from urbanpulse.contract.vocabulary import DEVICE_ID_RE
from urbanpulse.registry.devices import RegisteredDevice, Registry

from .logs import RateLimitedLog
from .stats import Stats

T = TypeVar("T")


class DeviceChannel:
    """Looks up the device a topic names and counts and logs what is accepted or rejected."""

    def __init__(
        self,
        channel: str,
        topic_prefix: str,
        registry: Callable[[], Registry],
        stats: Stats,
        rejection_log: RateLimitedLog,
    ) -> None:
        self.channel = channel
        self._prefix = topic_prefix
        self._registry = registry
        self._stats = stats
        self._rejection_log = rejection_log

    def device(self, topic: str) -> RegisteredDevice:
        levels = topic_levels(topic, self._prefix)
        if len(levels) < 2 or "/".join(levels[1:]) != self.channel:
            raise MessageRejected(Reason.BAD_TOPIC, f"topic {topic!r} is not {self.channel}")
        device_id = levels[0]
        if not DEVICE_ID_RE.match(device_id):
            raise MessageRejected(
                Reason.BAD_TOPIC,
                f"device id {device_id!r} must be 3-32 of a-z 0-9 -, starting with a letter",
            )
        device = self._registry().get(device_id)
        if device is None:
            raise MessageRejected(Reason.UNKNOWN_DEVICE, f"device={device_id} is not registered")
        return device

    def lookup(self, topic: str) -> RegisteredDevice | None:
        """Count the message and look its device up; None (counted and logged) when the
        topic or the registry refuses it."""
        self.count_received()
        try:
            return self.device(topic)
        except MessageRejected as exc:
            self.reject(exc.rejection, topic)
            return None

    def receive(
        self, topic: str, payload: bytes, parse: Callable[[bytes], T]
    ) -> tuple[RegisteredDevice, T] | None:
        """Count the message, look its device up and parse it; None (counted and logged)
        when either refuses it. The caller counts it accepted once it has its points."""
        device = self.lookup(topic)
        if device is None:
            return None
        try:
            return device, parse(payload)
        except MessageRejected as exc:
            self.reject(exc.rejection, topic)
            return None

    def count_received(self) -> None:
        self._stats.received()

    def count_accepted(self) -> None:
        self._stats.accepted()

    def reject(self, rejection: Rejection, topic: str, *, what: str | None = None) -> None:
        """Count and log; ``what`` None = the whole message, else the part (a field)."""
        self._stats.rejected(rejection.reason, whole=what is None)
        levels = topic_levels(topic, self._prefix)
        device = levels[0] if levels and DEVICE_ID_RE.match(levels[0]) else "?"
        self._rejection_log.log(
            rejection.reason.value,
            logging.WARNING,
            f"rejected {self.channel} {what or 'message'} reason={rejection.reason.value} "
            f"device={device} topic={topic!r}: {rejection.detail}",
        )
