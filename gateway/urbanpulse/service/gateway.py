"""The gateway service: MQTT in, validated and enriched points out to InfluxDB.

Threads: paho's network loop receives and validates messages (``MessageHandler`` for
telemetry, ``HealthHandler``, ``StatusHandler``) and queues their points; the batcher thread
writes and then acknowledges; the caller's thread runs ``run()``: registry reloads, the
gateway's own statistics, liveness timeouts and the systemd watchdog pings, sent only while
the pipeline makes progress. ``/metrics`` is served from its own thread.

Subscriptions: ``{prefix}/+/telemetry`` and ``{prefix}/+/health`` go through the shared
subscription when ``shared_group`` is set (each message stored once by one gateway);
``{prefix}/+/status`` never does: every gateway needs every board's state for its liveness
view, and a shared subscription hands each status change (a last will) to one member only;
brokers also differ on retained messages for shared subscriptions (Mosquitto 2.0 sends them,
the MQTT 5 text leaves them out).
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

from urbanpulse.broker.credentials import apply_credentials
from urbanpulse.config import Settings
from urbanpulse.contract.lineprotocol import encode_point
from urbanpulse.contract.messages import Telemetry, TelemetryValidator
from urbanpulse.contract.vocabulary import DEVICE_INFO_MEASUREMENT, GATEWAY_STATS_MEASUREMENT
from urbanpulse.influx.deadletter import DeadLetterFile
from urbanpulse.influx.writer import PointWriter, WriteError, make_writer
from urbanpulse.kpi.job import KpiJob
from urbanpulse.kpi.windows import hour_start
from urbanpulse.registry.devices import Registry, RegistryError, RegistryWatcher

from .channels import DeviceChannel, topic_channel
from .dedup import RecentMessages
from .health import HealthHandler
from .liveness import Liveness, StatusHandler
from .logs import RateLimitedLog
from .metrics import MetricsServer, start_metrics
from .pipeline import AckToken, Batcher, MessageHandler
from .progress import ObservedWriter
from .sdnotify import Notifier
from .spool import Spool
from .stats import Stats

log = logging.getLogger("urbanpulse.gateway")
mqtt_log = logging.getLogger("urbanpulse.mqtt")

# How often silent devices are checked for their liveness timeout.
LIVENESS_TICK_S = 1.0
# With points waiting, the batcher attempts a write at least every max_delay_s + its retry
# backoff (at most 5 s), also while InfluxDB is down; this long without one means it is stuck.
IDLE_WITH_WORK_LIMIT_S = 15.0


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
    def __init__(
        self,
        settings: Settings,
        writer: PointWriter | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.stats = Stats()
        self.registry_watcher = RegistryWatcher(settings.registry.path)
        # Timed, so that the watchdog sees a write that hangs and /metrics its latency.
        self.writer = ObservedWriter(writer or make_writer(settings.influx))
        self.notifier = notifier or Notifier()
        self._rejections = RateLimitedLog(
            logging.getLogger("urbanpulse.rejected"), settings.log.rejection_interval_s
        )
        prefix = settings.mqtt.topic_prefix
        registry = lambda: self.registry_watcher.registry  # noqa: E731 - read at each call
        self.handler = MessageHandler(
            prefix,
            registry,
            TelemetryValidator(max_future_ms=settings.validation.max_future_s * 1000),
            self.stats,
            self._rejections,
            RecentMessages(settings.dedup.max_entries),
            on_accepted=self._note_late_samples,
        )
        # KPIs are computed from stored data in a thread of their own, with their own
        # connections, so that a slow KPI run never holds up storing readings.
        self.kpi = KpiJob(settings, registry, backlog=self._store_backlog)
        self.batcher = Batcher(
            self.writer,
            self._ack,
            self.stats,
            max_points=settings.batch.max_points,
            max_delay_s=settings.batch.max_delay_s,
            spool=Spool(
                settings.spool.path,
                max_bytes=settings.spool.max_bytes,
                segment_bytes=settings.spool.segment_bytes,
                fsync=settings.spool.fsync,
                fsync_interval_s=settings.spool.fsync_interval_s,
            ),
            dead_letter=DeadLetterFile(settings.spool.dead_letter_file),
        )
        self.health = HealthHandler(
            DeviceChannel("health", prefix, registry, self.stats, self._rejections),
            max_future_ms=settings.validation.max_future_s * 1000,
        )
        self.status = StatusHandler(
            DeviceChannel("status", prefix, registry, self.stats, self._rejections)
        )
        self.liveness = Liveness(
            registry,
            timeout_factor=settings.liveness.timeout_factor,
            heartbeat_s=settings.liveness.heartbeat_s,
        )
        shared = f"$share/{settings.mqtt.shared_group}/" if settings.mqtt.shared_group else ""
        self.topic = f"{shared}{prefix}/+/telemetry"
        # The telemetry subscription comes first: the gateway is ready once it is granted.
        self.topics = [self.topic, f"{shared}{prefix}/+/health", f"{prefix}/+/status"]
        self.connected = threading.Event()
        self._ready_sent = False
        self._started = time.monotonic()
        self._metrics: MetricsServer | None = None
        self._stuck_reason: str | None = None
        # The registry changed and its device_info points are not queued yet.
        self._device_info_due = False
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
        client.subscribe([(topic, 1) for topic in self.topics])
        if flags.session_present:
            # The session holds the subscription already, and the broker sends its queued
            # messages before the SUBACK: with a big backlog that takes a long while, which
            # must not count as "not ready" (systemd would time out the start).
            self._ready()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for topic, rc in zip(self.topics, reason_codes, strict=False):
            if rc.is_failure:
                mqtt_log.error("broker refused the subscription to %s: %s", topic, rc)
        if not reason_codes or reason_codes[0].is_failure:
            return  # no telemetry: not ready (health and status alone are not the service)
        # Ready only now (on a new session): before the SUBACK it would miss messages. The
        # store was checked in start(), before the connection.
        self._ready()

    def _ready(self) -> None:
        if self.connected.is_set():
            return
        self.connected.set()
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(self._status_text())
        else:
            self.notifier.status(self._status_text())

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
            self.notifier.status(f"broker connection lost ({reason}), reconnecting")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not self._accepting:
            # Shutting down: leave it unacknowledged; the broker delivers it again.
            return
        try:
            lines = self._handle(msg.topic, bytes(msg.payload))
        except Exception:
            # A bug must not stop the pipeline: the message stays unacknowledged.
            log.exception("unexpected error handling a message on %s", msg.topic)
            return
        token: AckToken = (self._generation, msg.mid, msg.qos)
        self.batcher.add(lines, token if msg.qos > 0 else None)

    def _handle(self, topic: str, payload: bytes) -> list[str]:
        """The points a message yields (telemetry, health, or liveness changes)."""
        channel = topic_channel(topic, self.settings.mqtt.topic_prefix)
        if channel == "health":
            device, lines = self.health.handle(topic, payload)
            if device is not None:
                lines += self.liveness.seen(device.device.device_id)
            return lines
        if channel == "status":
            device, state = self.status.handle(topic, payload)
            if device is None or state is None:
                return []
            return self.liveness.status(device.device.device_id, state)
        lines = self.handler.handle(topic, payload)
        if lines:
            # Valid readings: the board is alive (the handler checked topic and registry).
            lines += self.liveness.seen(topic.split("/")[-2])
        return lines

    def _store_backlog(self) -> bool:
        """Points received but not stored yet, beyond the batch being written."""
        return self.batcher.spool_status()["spool_points"] > 0

    def _note_late_samples(self, device_id: str, message: Telemetry) -> None:
        """A board delivering its offline buffer: recompute the KPI windows it touches."""
        if not message.samples:
            return
        t_min = min(sample.t for sample in message.samples)
        if t_min < hour_start(_now_ms()):  # older than the current UTC hour
            self.kpi.note_samples(device_id, t_min, max(sample.t for sample in message.samples))

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
        self.kpi.start()
        self._started = time.monotonic()
        self._metrics = start_metrics(self, self.settings.metrics.host, self.settings.metrics.port)
        period = self.notifier.watchdog_period_s
        if period is not None and self.settings.influx.timeout_s >= period:
            log.warning(
                "[influx] timeout_s = %g is not below the systemd watchdog period (%g s): a "
                "slow but working write will look stuck and restart the gateway",
                self.settings.influx.timeout_s,
                period,
            )
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
            "gateway started: topics=%s influx=%s api=%s registry=%s devices=%d",
            ",".join(self.topics),
            self.settings.influx.url,
            self.settings.influx.api,
            self.settings.registry.path,
            len(self.registry_watcher.registry),
        )

    def run(self) -> None:
        """Until ``request_stop()``: reload the registry on change, write statistics, time
        out silent devices, and ping the systemd watchdog while the pipeline moves."""
        next_reload = next_stats = next_tick = next_ping = time.monotonic()
        ping_every = self.notifier.watchdog_interval_s
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_reload:
                next_reload = now + self.settings.registry.reload_interval_s
                self._reload_registry()
            if now >= next_stats:
                next_stats = now + self.settings.stats.interval_s
                self._add_housekeeping([self._stats_point(now - self._started)])
                if self._stuck_reason is None:
                    self.notifier.status(self._status_text())
            if now >= next_tick:
                next_tick = now + LIVENESS_TICK_S
                self._add_housekeeping(self.liveness.tick())
            due = [next_reload, next_stats, next_tick]
            if ping_every is not None:
                if now >= next_ping:
                    next_ping = now + ping_every
                    self._watchdog()
                due.append(next_ping)
            self._stop.wait(max(0.05, min(due) - time.monotonic()))

    def _add_housekeeping(self, lines: list[str]) -> bool:
        """Our own points, from the main loop, which must never block: Batcher.add waits
        while the batcher is full (spool full, InfluxDB down), and a blocked main loop stops
        the watchdog pings and never sees SIGTERM's stop request. Skipped points come back:
        stats next interval, liveness states with the next heartbeat, device info with the
        next registry poll. False when skipped."""
        return self.batcher.offer(lines)

    def _watchdog(self) -> None:
        """Ping systemd only while the pipeline makes progress: a stuck gateway is better
        restarted (what it holds is unacknowledged or spooled, so nothing is lost)."""
        problem = self.pipeline_problem()
        if problem is None:
            if self._stuck_reason is not None:
                log.warning("pipeline moving again; watchdog pings resume")
                self._stuck_reason = None
            self.notifier.watchdog()
            return
        if self._stuck_reason is None:
            log.error("pipeline stuck: %s; not pinging the systemd watchdog", problem)
        self._stuck_reason = problem
        self.notifier.status(f"stuck: {problem}")

    def pipeline_problem(self) -> str | None:
        """Why the pipeline is not making progress, or None when it is."""
        limit = self.notifier.watchdog_period_s
        busy = self.writer.busy_for()
        if limit is not None and busy > limit:
            return f"an InfluxDB write has been running for {busy:.0f} s (watchdog {limit:g} s)"
        # The batcher's own thread: if it died, nothing is written or acknowledged any more.
        thread = self.batcher._thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            return "the batcher thread has stopped"
        idle = self.writer.idle_for()
        if limit is not None and idle > max(limit, IDLE_WITH_WORK_LIMIT_S):
            waiting = self.batcher.pending_points + self.batcher.spool_status()["spool_points"]
            if waiting:
                return f"{waiting} points wait, but no InfluxDB write for {idle:.0f} s"
        return None

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    def _status_text(self) -> str:
        """One line for `systemctl status`."""
        states = self.liveness.states()
        online = sum(1 for s in states.values() if s == "online")
        snap = self.stats.snapshot()
        spool = self.batcher.spool_status()["spool_points"]
        broker = "connected" if self.connected.is_set() else "broker unreachable"
        return (
            f"{broker}; {online}/{len(states)} devices online; {snap['stored_points']} points "
            f"stored, {self.batcher.pending_points} pending, {spool} spooled"
        )

    def request_stop(self) -> None:
        # Called from the SIGTERM handler: tell systemd at once that we are stopping.
        self.notifier.stopping()
        self._stop.set()

    def stop(self, timeout_s: float = 6.0) -> None:
        """Stop taking messages, store and acknowledge what is pending, disconnect.

        At most about 9 s (KPI run 1 s, flush ``timeout_s``, a hung write abandoned after
        2 s more): the issue's promise is an exit within 10 s of SIGTERM."""
        self.notifier.stopping()
        self._stop.set()
        self._accepting = False
        # A KPI run in progress is abandoned (its thread is a daemon): its windows are
        # recomputed by the next run, and SIGTERM must not wait for it.
        self.kpi.stop(timeout_s=1.0)
        flushed = self.batcher.stop(timeout_s)
        if not flushed:
            log.warning("could not store pending points in time; the broker will redeliver")
        self._client.disconnect()
        self._client.loop_stop()
        self.writer.close()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.notifier.close()
        log.info("gateway stopped: %s", self.stats.snapshot())

    def _reload_registry(self) -> None:
        try:
            changed = self.registry_watcher.poll()
        except RegistryError as exc:
            log.error("registry not reloaded, keeping the previous one: %s", exc)
            changed = False
        if changed:
            log.info("registry reloaded: %d devices", len(self.registry_watcher.registry))
            self._device_info_due = True
        if self._device_info_due:
            self._device_info_due = not self._add_housekeeping(
                device_info_points(self.registry_watcher.registry, _now_ms())
            )

    def _stats_point(self, uptime_s: float) -> str:
        fields: dict[str, int | float | bool | str] = dict(self.stats.snapshot())
        fields["pending_points"] = self.batcher.pending_points
        fields.update(self.batcher.spool_status())
        fields["uptime_s"] = round(uptime_s, 1)
        fields["mqtt_connected"] = self.connected.is_set()
        return encode_point(
            GATEWAY_STATS_MEASUREMENT, {"gateway": self.settings.mqtt.client_id}, fields, _now_ms()
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
