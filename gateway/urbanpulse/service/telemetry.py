"""The telemetry channel: from an MQTT message to tagged line-protocol points.

``MessageHandler`` checks the topic, looks the device up in the registry, validates the
payload against the contract, recognises redelivered messages and tags each point from the
registry. A message valid as a whole takes the hot path (contract/fastpath.py: decoded,
checked and turned into lines in one pass); any other goes through the full validator
(contract/messages.py), which keeps its valid samples and says why it refused the rest. The
points go to the ``Batcher`` (batcher.py), which stores them and only then acknowledges the
message.

A sealed (CONTRACT.md v2) message's MAC is checked on its bytes before anything else, with
the board's key from the key store; its chain (integrity.py) then tells a redelivery from a
replay, and flags gaps and forks. A board the registry marks ``require_sealed`` is heard only
when it seals.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Mapping

from urbanpulse.contract.fastpath import telemetry_lines
from urbanpulse.contract.lineprotocol import encode_field_value, escape_key
from urbanpulse.contract.messages import (
    MessageRejected,
    Reason,
    Rejection,
    Telemetry,
    TelemetryValidator,
)
from urbanpulse.contract.sealed import check_mac, digest, is_sealed
from urbanpulse.contract.vocabulary import VOCABULARY
from urbanpulse.registry.devices import RegisteredDevice, Registry

from .archive import Archive
from .channels import DeviceChannel
from .dedup import RecentMessages
from .integrity import Chains, Verdict
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
        keys: Callable[[], Mapping[str, bytes]] | None = None,
        chains: Chains | None = None,
        archive: Archive | None = None,
    ) -> None:
        # Topic to registered device, counting and logging: shared with health and status.
        self._channel = DeviceChannel("telemetry", topic_prefix, registry, stats, rejection_log)
        self._validator = validator
        self._stats = stats
        self.recent = recent  # the memory of recent messages (trail.py fills it at start)
        self._on_accepted = on_accepted
        self._keys = keys
        self.chains = chains or Chains()
        self.archive = archive
        self._log = rejection_log

    def _mac_problem(self, device_id: str, payload: bytes, sealed: bool) -> str | None:
        """Why a sealed message's MAC is refused (or a board that must seal did not)."""
        if not sealed:
            return "missing: the registry requires sealed (v2) messages from this board"
        key = self._keys().get(device_id) if self._keys is not None else None
        if key is None:
            return ("no key for this board in the gateway's key store ([keys] device_keys)"
                    if self._keys is not None else
                    "the gateway has no device key store ([keys] device_keys)")
        if not check_mac(payload, key):
            return "the MAC is not the board's key's HMAC of the message"
        return None

    def handle(self, topic: str, payload: bytes) -> list[str]:
        """Points to store for this message; rejections are counted and logged here."""
        channel = self._channel
        device = channel.lookup(topic)
        if device is None:
            return []
        device_id = device.device.device_id
        now_ms = time.time_ns() // 1_000_000
        sealed = is_sealed(payload)
        if sealed or device.device.require_sealed:
            problem = self._mac_problem(device_id, payload, sealed)
            if problem is not None:
                self.chains.bad_mac(device_id, now_ms)
                channel.reject(Rejection(Reason.BAD_MAC, problem), topic)
                return []
        latest_ms = now_ms + self._validator.max_future_ms
        fast = telemetry_lines(payload, device.tag_string, latest_ms, sealed)
        if fast is not None:
            boot, seq, lines, prev = fast.boot, fast.seq, fast.lines, fast.prev
            span: tuple[int, int] | None = (fast.t_min, fast.t_max)
            rejected = []
        else:
            try:
                message = self._validator.parse(payload, sealed=sealed)
            except MessageRejected as exc:
                if exc.rejection.reason is Reason.BAD_MAC:
                    self.chains.bad_mac(device_id, now_ms)
                channel.reject(exc.rejection, topic)
                return []
            boot, seq, rejected, prev = message.boot, message.seq, message.rejected, message.prev
            lines = telemetry_points(device, message)
            times = [sample.t for sample in message.samples]
            span = (min(times), max(times)) if times else None
        if prev is not None:
            sha = digest(payload)
            fingerprint = int.from_bytes(sha[:8])
            if self.recent is not None and self.recent.known(device_id, boot, seq,
                                                               fingerprint):
                # Redelivered (the broker's, or after a restart: trail.py fills the memory
                # from the archive): archived already, perhaps not stored yet. Its points
                # are written again (the same points: InfluxDB keeps one).
                self._stats.duplicate()
                return lines
            archive = self.archive
            district = device.device.district
            check = self.chains.check(
                device_id, boot, seq, bytes.fromhex(prev), sha, now_ms,
                None if archive is None else
                lambda: archive.append(device_id, district, boot, seq, payload))
            if check.verdict is Verdict.REPLAYED:
                channel.reject(Rejection(Reason.REPLAYED, check.detail), topic)
                return []
            if check.verdict is Verdict.DUPLICATE:
                self._stats.duplicate()
                return lines
            if self.recent is not None:
                self.recent.remember(device_id, boot, seq, fingerprint)
            if check.detail:
                self._log.log("chain", logging.WARNING,
                              f"telemetry device={device_id} boot={boot} seq={seq}: "
                              f"{check.detail}")
        # Points first: a message is remembered only once it has yielded its points.
        elif self.recent is not None and self.recent.seen_before(
            device_id, boot, seq, zlib.crc32(payload)
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
            self._on_accepted(device_id, *span)
        return lines
