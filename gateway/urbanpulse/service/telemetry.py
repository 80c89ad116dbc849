"""The telemetry channel: from an MQTT message to tagged line-protocol points.

``MessageHandler`` checks the topic, looks the device up in the registry, validates the
payload against the contract, recognises redelivered messages and tags each point from the
registry. A message valid as a whole takes the hot path (contract/fastpath.py: decoded,
checked and turned into lines in one pass); any other goes through the full validator
(contract/messages.py), which keeps its valid samples and says why it refused the rest. The
points go to the ``Batcher`` (batcher.py), which stores them and only then acknowledges the
message.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

from urbanpulse.contract.fastpath import telemetry_lines
from urbanpulse.contract.lineprotocol import encode_field_value, escape_key
from urbanpulse.contract.messages import MessageRejected, Telemetry, TelemetryValidator
from urbanpulse.contract.vocabulary import VOCABULARY
from urbanpulse.registry.devices import RegisteredDevice, Registry

from .channels import DeviceChannel
from .dedup import RecentMessages
from .logs import RateLimitedLog
from .stats import Stats

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


class MessageHandler:
    def __init__(
        self,
        topic_prefix: str,
        registry: Callable[[], Registry],
        validator: TelemetryValidator,
        stats: Stats,
        rejection_log: RateLimitedLog,
        recent: RecentMessages | None = None,
        on_accepted: Callable[[str, int, int], None] | None = None,
    ) -> None:
        # Topic to registered device, counting and logging: shared with health and status.
        self._channel = DeviceChannel("telemetry", topic_prefix, registry, stats, rejection_log)
        self._validator = validator
        self._stats = stats
        self._recent = recent
        self._on_accepted = on_accepted

    def handle(self, topic: str, payload: bytes) -> list[str]:
        """Points to store for this message; rejections are counted and logged here."""
        channel = self._channel
        device = channel.lookup(topic)
        if device is None:
            return []
        latest_ms = time.time_ns() // 1_000_000 + self._validator.max_future_ms
        fast = telemetry_lines(payload, device.tag_string, latest_ms)
        if fast is not None:
            boot, seq, lines = fast.boot, fast.seq, fast.lines
            span: tuple[int, int] | None = (fast.t_min, fast.t_max)
            rejected = []
        else:
            try:
                message = self._validator.parse(payload)
            except MessageRejected as exc:
                channel.reject(exc.rejection, topic)
                return []
            boot, seq, rejected = message.boot, message.seq, message.rejected
            lines = telemetry_points(device, message)
            times = [sample.t for sample in message.samples]
            span = (min(times), max(times)) if times else None
        # Points first: a message is remembered only once it has yielded its points.
        if self._recent is not None and self._recent.seen_before(
            device.device.device_id, boot, seq, zlib.crc32(payload)
        ):
            # A redelivery: no points, so its ack queues behind the original's points and is
            # sent only once they are stored. Writing them again would do no harm (InfluxDB
            # overwrites the same series and timestamp); skipping saves the write. It counts
            # as accepted (it is valid) and as a duplicate; its rejections were logged once.
            self._stats.duplicate()
            return []
        for rejection in rejected:
            channel.reject(rejection, topic, what="sample")
        channel.count_accepted()
        if self._on_accepted is not None and span is not None:
            self._on_accepted(device.device.device_id, *span)
        return lines
