"""From an MQTT message to stored points, acknowledged only once stored.

``MessageHandler`` turns (topic, payload) into line-protocol points: it checks the topic,
looks the device up in the registry, validates the payload against the contract and tags
each point from the registry. ``Batcher`` collects the points with the acknowledgement each
message waits for, writes them in batches (by size, or after at most ``max_delay_s``), and
only then releases the acknowledgements, in the order the messages arrived. A write that
fails for a reason that can pass (InfluxDB down or overloaded) is retried with backoff and
nothing is acknowledged meanwhile, so the broker keeps the messages: at-least-once delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .influx import PointWriter, WriteError
from .lineprotocol import encode_field_value, escape_key
from .logs import RateLimitedLog
from .messages import MessageRejected, Reason, Rejection, Telemetry, TelemetryValidator
from .registry import RegisteredDevice, Registry
from .vocabulary import DEVICE_ID_RE, VOCABULARY

log = logging.getLogger("urbanpulse.pipeline")

_FIELD_KEYS = {name: escape_key(name) for name in VOCABULARY}
_FIELD_MEASUREMENT = {name: q.measurement for name, q in VOCABULARY.items()}


def telemetry_points(device: RegisteredDevice, message: Telemetry) -> list[str]:
    """One point per sample and measurement, tagged from the registry, timestamp in ms."""
    lines: list[str] = []
    for sample in message.samples:
        by_measurement: dict[str, list[str]] = {}
        for name, value in sample.values.items():
            by_measurement.setdefault(_FIELD_MEASUREMENT[name], []).append(
                # Numbers are always written as floats: a count sent once as 5 and once
                # as 5.0 must not become a field type conflict in InfluxDB.
                f"{_FIELD_KEYS[name]}="
                + encode_field_value(value if isinstance(value, bool) else float(value))
            )
        for measurement, fields in by_measurement.items():
            lines.append(f"{measurement}{device.tag_string} {','.join(fields)} {sample.t}")
    return lines


@dataclass
class Stats:
    """Counters since start; read by the stats writer and by tests."""

    received: int = 0
    accepted: int = 0
    stored_points: int = 0
    refused_points: int = 0
    write_errors: int = 0
    rejected_messages: Counter[str] = field(default_factory=Counter)
    rejected_samples: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            snap = {
                "received": self.received,
                "accepted": self.accepted,
                "stored_points": self.stored_points,
                "refused_points": self.refused_points,
                "write_errors": self.write_errors,
                "rejected_messages": sum(self.rejected_messages.values()),
                "rejected_samples": sum(self.rejected_samples.values()),
            }
            for reason in Reason:
                snap[f"rejected_{reason.value}"] = (
                    self.rejected_messages[reason.value] + self.rejected_samples[reason.value]
                )
        return snap


class MessageHandler:
    def __init__(
        self,
        topic_prefix: str,
        registry: Callable[[], Registry],
        validator: TelemetryValidator,
        stats: Stats,
        rejection_log: RateLimitedLog,
    ) -> None:
        self._prefix = topic_prefix + "/"
        self._registry = registry
        self._validator = validator
        self._stats = stats
        self._rejection_log = rejection_log

    def _topic_levels(self, topic: str) -> list[str]:
        """The topic's levels after the prefix; [] when the prefix does not match."""
        return topic[len(self._prefix) :].split("/") if topic.startswith(self._prefix) else []

    def _device(self, topic: str) -> RegisteredDevice:
        parts = self._topic_levels(topic)
        if len(parts) != 2 or parts[1] != "telemetry":
            raise MessageRejected(Reason.BAD_TOPIC, f"topic {topic!r} is not telemetry")
        device_id = parts[0]
        if not DEVICE_ID_RE.match(device_id):
            raise MessageRejected(
                Reason.BAD_TOPIC,
                f"device id {device_id!r} must be 3-32 of a-z 0-9 -, starting with a letter",
            )
        device = self._registry().get(device_id)
        if device is None:
            raise MessageRejected(Reason.UNKNOWN_DEVICE, f"device={device_id} is not registered")
        return device

    def handle(self, topic: str, payload: bytes) -> list[str]:
        """Points to store for this message; rejections are counted and logged here."""
        with self._stats.lock:
            self._stats.received += 1
        try:
            device = self._device(topic)
            message = self._validator.parse(payload)
        except MessageRejected as exc:
            self._reject(exc.rejection, topic, whole_message=True)
            return []
        for rejection in message.rejected:
            self._reject(rejection, topic, whole_message=False)
        with self._stats.lock:
            self._stats.accepted += 1
        return telemetry_points(device, message)

    def _reject(self, rejection: Rejection, topic: str, *, whole_message: bool) -> None:
        with self._stats.lock:
            counter = (
                self._stats.rejected_messages if whole_message else self._stats.rejected_samples
            )
            counter[rejection.reason.value] += 1
        what = "message" if whole_message else "sample"
        levels = self._topic_levels(topic)
        device = levels[0] if levels and DEVICE_ID_RE.match(levels[0]) else "?"
        self._rejection_log.log(
            rejection.reason.value,
            logging.WARNING,
            f"rejected {what} reason={rejection.reason.value} device={device} "
            f"topic={topic!r}: {rejection.detail}",
        )


# (connection generation, MQTT packet id, QoS) of a message waiting for its points.
AckToken = tuple[int, int, int]


class Batcher:
    """Batches points; acknowledges each message's token once its points are stored."""

    def __init__(
        self,
        writer: PointWriter,
        ack: Callable[[list[AckToken]], None],
        stats: Stats,
        *,
        max_points: int = 5000,
        max_delay_s: float = 1.0,
        max_pending_points: int = 100_000,
    ) -> None:
        self._writer = writer
        self._ack = ack
        self._stats = stats
        self._max_points = max_points
        self._max_delay = max_delay_s
        self._max_pending = max(max_pending_points, max_points)
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._tokens: list[AckToken] = []
        self._oldest: float | None = None
        self._stopping = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._errors = RateLimitedLog(log, 10.0)

    @property
    def pending_points(self) -> int:
        with self._cond:
            return len(self._lines)

    def add(self, lines: list[str], token: AckToken | None = None) -> None:
        """Queue points (and the ack they wait for). Blocks while too much is pending,
        which stops us reading from the broker until the store catches up."""
        if not lines and token is None:
            return
        with self._cond:
            while len(self._lines) >= self._max_pending and not self._stopping:
                self._cond.wait(0.5)
            self._lines.extend(lines)
            if token is not None:
                self._tokens.append(token)
            if self._oldest is None:
                self._oldest = time.monotonic()
            if len(self._lines) >= self._max_points:
                self._cond.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 8.0) -> bool:
        """Flush what is pending, then stop. False if it could not be stored in time;
        those messages stay unacknowledged and the broker delivers them again."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            with self._cond:
                self._abandon = True
                self._cond.notify_all()
            self._thread.join(2.0)
            return False
        return True

    def _take(self) -> tuple[list[str], list[AckToken]] | None:
        with self._cond:
            while True:
                pending = bool(self._lines or self._tokens)
                if pending and (
                    self._stopping
                    or len(self._lines) >= self._max_points
                    or time.monotonic() - (self._oldest or 0.0) >= self._max_delay
                ):
                    lines, tokens = self._lines, self._tokens
                    self._lines, self._tokens, self._oldest = [], [], None
                    self._cond.notify_all()
                    return lines, tokens
                if self._stopping:
                    return None
                wait = self._max_delay
                if self._oldest is not None:
                    wait = max(0.0, self._oldest + self._max_delay - time.monotonic())
                self._cond.wait(wait)

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            lines, tokens = batch
            if not self._store(lines):
                return
            if tokens:
                self._ack(tokens)

    def _store(self, lines: list[str]) -> bool:
        """Write with retries. False when abandoned during shutdown (nothing acked)."""
        delay = 0.5
        while True:
            try:
                self._writer.write(lines)
            except WriteError as exc:
                with self._stats.lock:
                    self._stats.write_errors += 1
                if not exc.retryable:
                    # InfluxDB refused the points themselves; retrying cannot help.
                    with self._stats.lock:
                        self._stats.refused_points += len(lines)
                    log.error("write refused, %d points not stored: %s", len(lines), exc)
                    return True
                self._errors.log(
                    "retry",
                    logging.WARNING,
                    f"write failed, {len(lines)} points held, retrying in {delay:.1f} s: {exc}",
                )
                with self._cond:
                    if self._abandon:
                        return False
                    self._cond.wait(delay)
                    if self._abandon:
                        return False
                delay = min(delay * 2, 30.0)
                continue
            with self._stats.lock:
                self._stats.stored_points += len(lines)
            return True
