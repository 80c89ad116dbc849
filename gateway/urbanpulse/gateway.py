"""The gateway service: MQTT in, validated and enriched points out to InfluxDB.

Threads: paho's network loop receives and validates messages (``MessageHandler``) and queues
their points; the batcher thread writes and then acknowledges; the caller's thread runs
``run()``: registry reloads and the gateway's own statistics.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .config import Settings
from .influx import PointWriter, WriteError, make_writer
from .lineprotocol import encode_point
from .logs import RateLimitedLog
from .messages import TelemetryValidator
from .mqtt_auth import apply_credentials
from .pipeline import AckToken, Batcher, MessageHandler, Stats
from .registry import Registry, RegistryError, RegistryWatcher
from .vocabulary import DEVICE_INFO_MEASUREMENT, GATEWAY_STATS_MEASUREMENT

log = logging.getLogger("urbanpulse.gateway")
mqtt_log = logging.getLogger("urbanpulse.mqtt")


def device_info_points(registry: Registry, now_ms: int) -> list[str]:
    """Where each board is and how often it reports, for geomap and liveness panels."""
    lines = []
    for device in registry.devices:
        fields: dict[str, float | bool] = {"registered": True, "interval_s": device.interval_s}
        if device.lat is not None and device.lon is not None:
            fields.update(lat=device.lat, lon=device.lon)
        lines.append(encode_point(DEVICE_INFO_MEASUREMENT, device.tags, fields, now_ms))
    return lines


class Gateway:
    def __init__(self, settings: Settings, writer: PointWriter | None = None) -> None:
        self.settings = settings
        self.stats = Stats()
        self.registry_watcher = RegistryWatcher(settings.registry.path)
        self.writer = writer or make_writer(settings.influx)
        self._rejections = RateLimitedLog(
            logging.getLogger("urbanpulse.rejected"), settings.log.rejection_interval_s
        )
        self.handler = MessageHandler(
            settings.mqtt.topic_prefix,
            lambda: self.registry_watcher.registry,
            TelemetryValidator(max_future_ms=settings.validation.max_future_s * 1000),
            self.stats,
            self._rejections,
        )
        self.batcher = Batcher(
            self.writer,
            self._ack,
            self.stats,
            max_points=settings.batch.max_points,
            max_delay_s=settings.batch.max_delay_s,
        )
        self.topic = f"{settings.mqtt.topic_prefix}/+/telemetry"
        if settings.mqtt.shared_group:
            self.topic = f"$share/{settings.mqtt.shared_group}/{self.topic}"
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._accepting = True
        # Packet ids belong to one connection; an ack must never reach a later one.
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._client = self._make_client()

    # -- MQTT ------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        m = self.settings.mqtt
        v5 = m.protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=m.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else m.clean_start,
            manual_ack=True,
        )
        apply_credentials(client, m)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            mqtt_log.error("broker refused the connection: %s", reason)
            return
        with self._ack_lock:
            self._generation += 1
        mqtt_log.info(
            "connected to %s:%d session_present=%s",
            self.settings.mqtt.host,
            self.settings.mqtt.port,
            flags.session_present,
        )
        # Subscribing again is harmless when the session kept the subscription.
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            mqtt_log.error("broker refused the subscription to %s: %s", self.topic, reason_codes)
            return
        # Ready only now: before the SUBACK a fresh session would miss messages.
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            mqtt_log.warning("disconnected from broker (%s), reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not self._accepting:
            # Shutting down: leave it unacknowledged; the broker delivers it again.
            return
        try:
            lines = self.handler.handle(msg.topic, bytes(msg.payload))
        except Exception:
            # A bug must not stop the pipeline: the message stays unacknowledged.
            log.exception("unexpected error handling a message on %s", msg.topic)
            return
        token: AckToken = (self._generation, msg.mid, msg.qos)
        self.batcher.add(lines, token if msg.qos > 0 else None)

    def _ack(self, tokens: list[AckToken]) -> None:
        with self._ack_lock:
            for generation, mid, qos in tokens:
                if generation == self._generation:
                    self._client.ack(mid, qos)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        m = self.settings.mqtt
        try:
            self.writer.ensure_database()
        except WriteError as exc:
            # Not fatal: points wait (unacknowledged) until InfluxDB answers.
            log.warning("could not ensure the database exists yet: %s", exc)
        self.batcher.add(device_info_points(self.registry_watcher.registry, _now_ms()))
        self.batcher.start()
        properties = None
        if m.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0 if m.clean_start else m.session_expiry_s
            properties.ReceiveMaximum = m.receive_maximum
        self._client.connect_async(
            m.host,
            m.port,
            keepalive=m.keepalive_s,
            clean_start=m.clean_start if m.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()
        log.info(
            "gateway started: topic=%s influx=%s api=%s registry=%s devices=%d",
            self.topic,
            self.settings.influx.url,
            self.settings.influx.api,
            self.settings.registry.path,
            len(self.registry_watcher.registry),
        )

    def run(self) -> None:
        """Until ``request_stop()``: reload the registry on change, write statistics."""
        next_reload = next_stats = time.monotonic()
        started = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_reload:
                next_reload = now + self.settings.registry.reload_interval_s
                self._reload_registry()
            if now >= next_stats:
                next_stats = now + self.settings.stats.interval_s
                self.batcher.add([self._stats_point(now - started)])
            self._stop.wait(max(0.05, min(next_reload, next_stats) - time.monotonic()))

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout_s: float = 8.0) -> None:
        """Stop taking messages, store and acknowledge what is pending, disconnect."""
        self._stop.set()
        self._accepting = False
        flushed = self.batcher.stop(timeout_s)
        if not flushed:
            log.warning("could not store pending points in time; the broker will redeliver")
        self._client.disconnect()
        self._client.loop_stop()
        self.writer.close()
        log.info("gateway stopped: %s", self.stats.snapshot())

    def _reload_registry(self) -> None:
        try:
            changed = self.registry_watcher.poll()
        except RegistryError as exc:
            log.error("registry not reloaded, keeping the previous one: %s", exc)
            return
        if changed:
            registry = self.registry_watcher.registry
            log.info("registry reloaded: %d devices", len(registry))
            self.batcher.add(device_info_points(registry, _now_ms()))

    def _stats_point(self, uptime_s: float) -> str:
        fields: dict[str, int | float | bool | str] = dict(self.stats.snapshot())
        fields["pending_points"] = self.batcher.pending_points
        fields["uptime_s"] = round(uptime_s, 1)
        fields["mqtt_connected"] = self.connected.is_set()
        return encode_point(
            GATEWAY_STATS_MEASUREMENT, {"gateway": self.settings.mqtt.client_id}, fields, _now_ms()
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
