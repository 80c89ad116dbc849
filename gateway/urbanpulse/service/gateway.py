"""The gateway service: MQTT in, validated and enriched points out to InfluxDB.

Threads: paho's network loop receives and validates messages (``MessageHandler`` for
telemetry, ``HealthHandler``, ``StatusHandler``, ``AckHandler`` for commands' answers) and
queues their points; the batcher thread
writes and then acknowledges; the caller's thread runs ``run()``: registry reloads, the
gateway's own statistics, liveness timeouts and the systemd watchdog pings, sent only while
the pipeline makes progress. ``/metrics`` is served from its own thread.

Subscriptions: ``{prefix}/+/telemetry``, ``{prefix}/+/health`` and ``{prefix}/+/cmd/ack``
go through the shared subscription when ``shared_group`` is set (each message stored once by
one gateway);
``{prefix}/+/status`` never does: every gateway needs every board's state for its liveness
view, and a shared subscription hands each status change (a last will) to one member only;
brokers also differ on retained messages for shared subscriptions (Mosquitto 2.0 sends them,
the MQTT 5 text leaves them out).

With ``[service] workers`` the gateway runs in two roles (``Role``, service/workers.py), and
each worker subscribes to its own boards' topics (service/partition.py) unless
``shared_group`` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

from urbanpulse.config import Settings
from urbanpulse.contract.messages import TelemetryValidator
from urbanpulse.contract.topics import topic_channel
from urbanpulse.influx.deadletter import DeadLetterFile
from urbanpulse.influx.writer import PointWriter, WriteError, make_writer
from urbanpulse.kpi.job import KpiJob
from urbanpulse.kpi.windows import hour_start

from .acks import AckHandler
from .batcher import AckToken, Batcher
from .channels import DeviceChannel
from .dedup import RecentMessages
from .directory import Directory
from .health import HealthHandler
from .liveness import Liveness, StatusHandler, device_info_points
from .logs import RateLimitedLog
from .metrics import MetricsServer, start_metrics
from .partition import Partition, WorkerBoards, load_state
from .progress import ObservedWriter
from .report import REPORT_KEY, PeerTotals, WorkerReport, merge_spool
from .sdnotify import Notifier
from .session import BrokerSession
from .spool import Spool
from .stats import Stats
from .status import GatewayStatus
from .telemetry import MessageHandler
from .trail import Trail

log = logging.getLogger("urbanpulse.gateway")

# How often silent devices are checked for their liveness timeout.
LIVENESS_TICK_S = 1.0
# "all": the gateway in one process. With [service] workers (service/workers.py): a "worker"
# stores telemetry, health and answers from its share of a shared subscription and reports to
# its parent, the "coordinator", which follows statuses and keeps liveness, KPIs, counters.
Role = Literal["all", "coordinator", "worker"]
# A worker's report to its parent, this often.
REPORT_INTERVAL_S = 1.0
# With points waiting, the batcher attempts a write at least every max_delay_s + its retry
# backoff (at most 5 s), also while InfluxDB is down; this long without one means it is stuck.
IDLE_WITH_WORK_LIMIT_S = 15.0


class Gateway:
    def __init__(
        self,
        settings: Settings,
        writer: PointWriter | None = None,
        notifier: Notifier | None = None,
        role: Role = "all",
        partition: Partition | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self.report = WorkerReport() if role == "worker" else None
        self.peers = PeerTotals()  # the workers' last reports (a coordinator's)
        self.stats = Stats()
        self.directory = Directory(settings.registry.path, settings.keys.device_keys)
        self.registry_watcher = self.directory.registry_watcher
        self.key_watcher = self.directory.key_watcher
        # Timed, so that the watchdog sees a write that hangs and /metrics its latency.
        self.writer = ObservedWriter(writer or make_writer(settings.influx))
        self.notifier = notifier or Notifier()
        self._rejections = RateLimitedLog(
            logging.getLogger("urbanpulse.rejected"), settings.log.rejection_interval_s
        )
        prefix = settings.mqtt.topic_prefix
        registry = lambda: self.directory.registry  # noqa: E731 - read at each call
        self.handler = MessageHandler(
            prefix,
            registry,
            TelemetryValidator(max_future_ms=settings.validation.max_future_s * 1000),
            self.stats,
            self._rejections,
            RecentMessages(settings.dedup.max_entries),
            on_accepted=self.note_late_samples,
            keys=None if self.key_watcher is None else self.directory.keys,
        )
        self.trail = Trail(
            settings, None if role == "coordinator" else
            "main" if partition is None else f"worker-{partition.index}",
            receipts=role != "worker", publish=lambda t, p: self.session.publish(t, p),
            offer=self._add_housekeeping, tags=self.directory.tag_string)
        self.handler.chains = self.trail.chains
        self.handler.archive = self.trail.archive
        # KPIs are computed from stored data in a thread of their own, with their own
        # connections, so that a slow KPI run never holds up storing readings.
        self.kpi = KpiJob(settings, registry, backlog=self._store_backlog)
        self.kpi.enabled = self.kpi.enabled and role != "worker"
        self.batcher = Batcher(
            self.writer,
            # The session is made below; the batcher acks only once started, and only what
            # the archive holds on disk.
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
        self.acks = AckHandler(
            DeviceChannel("cmd/ack", prefix, registry, self.stats, self._rejections)
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
        # The first subscription is the one that makes the gateway ready once granted.
        stored = [self.topic, f"{shared}{prefix}/+/health", f"{shared}{prefix}/+/cmd/ack"]
        status = f"{prefix}/+/status"
        self.topics = {"all": [*stored[:2], status, stored[2]], "worker": stored,
                       "coordinator": [status]}[role]
        # A worker's own boards (else all boards, or a shared subscription's share).
        self.boards = None if partition is None else WorkerBoards(partition, prefix,
                                                                  settings.spool.path)
        if self.boards is not None:
            self.topics = self.boards.topics(self.directory.device_ids())
        self._ready_sent = False
        self._due = dict.fromkeys(("reload", "stats", "tick", "ping", "integrity"), 0.0)
        self._started = time.monotonic()
        self._metrics: MetricsServer | None = None
        self._stuck_reason: str | None = None
        # The registry changed and its device_info points are not queued yet.
        self._device_info_due = False
        self._stop = threading.Event()
        self._accepting = True
        self.session = BrokerSession(
            settings.mqtt, self.topics, self._on_message, self._ready, self._connection_lost,
            state=None if self.boards is None else load_state(settings.spool.path),
            on_state=None if self.boards is None else self.boards.save,
        )
        self.connected = self.session.connected

    # -- from the broker session (paho's thread) ----------------------------------------------
    def _ready(self) -> None:
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(self.snapshot().line())
        else:
            self.notifier.status(self.snapshot().line())

    def _connection_lost(self, reason: str) -> None:
        self.notifier.status(f"broker connection lost ({reason}), reconnecting")

    def _on_message(self, topic: str, payload: bytes, token: AckToken | None) -> None:
        if not self._accepting:
            # Shutting down: leave it unacknowledged; the broker delivers it again.
            return
        try:
            lines = self._handle(topic, payload)
        except Exception:
            # A bug must not stop the pipeline: the message stays unacknowledged.
            log.exception("unexpected error handling a message on %s", topic)
            return
        self.batcher.add(lines, token)

    def _handle(self, topic: str, payload: bytes) -> list[str]:
        """The points a message yields (telemetry, health, or liveness changes)."""
        channel = topic_channel(topic, self.settings.mqtt.topic_prefix)
        if channel in ("health", "cmd/ack"):
            handler = self.health if channel == "health" else self.acks
            device, lines = handler.handle(topic, payload)
            if device is not None:
                lines += self._seen(device.device.device_id)
            return lines
        if channel == "status":
            device, state = self.status.handle(topic, payload)
            if device is None or state is None:
                return []
            return self.liveness.status(device.device.device_id, state)
        lines = self.handler.handle(topic, payload)
        if lines:
            # Valid readings: the board is alive (the handler checked topic and registry).
            lines += self._seen(topic.split("/")[-2])
        return lines

    def _seen(self, device_id: str) -> list[str]:
        """A board was heard from: liveness here, or in the parent (a worker reports it)."""
        if self.report is not None:
            self.report.seen(device_id)
            return []
        return self.liveness.seen(device_id)

    def _store_backlog(self) -> bool:
        """Points received but not stored yet, beyond the batch being written."""
        return self.batcher.spool_status()["spool_points"] > 0

    def note_late_samples(self, device_id: str, t_min: int, t_max: int) -> None:
        """A board delivering its offline buffer (samples from t_min to t_max): recompute the
        KPI windows it touches."""
        if self.report is not None:
            self.report.late(device_id, t_min, t_max)  # the parent's KPIs
        elif t_min < hour_start(_now_ms()):  # older than the current UTC hour
            self.kpi.note_samples(device_id, t_min, t_max)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.writer.ensure_database()
        except WriteError as exc:
            # Not fatal: points wait (unacknowledged) until InfluxDB answers.
            log.warning("could not ensure the database exists yet: %s", exc)
        if self.role != "worker":
            self.batcher.add(device_info_points(self.directory.registry, _now_ms()))
        self.trail.replay(_now_ms(), self.handler.recent)
        self.batcher.start()
        self.kpi.start()
        self._started = time.monotonic()
        if self.role != "worker":
            self._metrics = start_metrics(
                self.snapshot, self.settings.metrics.host, self.settings.metrics.port
            )
        period = self.notifier.watchdog_period_s
        if period is not None and self.settings.influx.timeout_s >= period:
            log.warning(
                "[influx] timeout_s = %g is not below the systemd watchdog period (%g s): a "
                "slow but working write will look stuck and restart the gateway",
                self.settings.influx.timeout_s,
                period,
            )
        self.session.start()
        log.info(
            "gateway started: topics=%s influx=%s api=%s registry=%s devices=%d",
            ",".join(self.topics) if self.boards is None else self.boards.describe(self.topics),
            self.settings.influx.url,
            self.settings.influx.api,
            self.settings.registry.path,
            len(self.directory.registry),
        )

    def run(self) -> None:
        """Until ``request_stop()``: reload the registry on change, write statistics, time
        out silent devices, and ping the systemd watchdog while the pipeline moves."""
        while not self._stop.is_set():
            due = self.step(time.monotonic())
            self._stop.wait(max(0.05, due - time.monotonic()))

    def step(self, now: float) -> float:
        """What is due at ``now`` (time.monotonic()); when something is due next. A worker
        reports to its parent instead of writing statistics and keeping liveness."""
        due = self._due
        if now >= due["reload"]:
            due["reload"] = now + self.settings.registry.reload_interval_s
            self._reload_registry()
        if self.report is not None:
            if now >= due["stats"]:
                due["stats"] = now + REPORT_INTERVAL_S
                for text in self.report.take(self.snapshot()):
                    self.notifier.notify(**{REPORT_KEY: text})
        else:
            if now >= due["stats"]:
                due["stats"] = now + self.settings.stats.interval_s
                self._add_housekeeping([self._stats_point()])
                if self._stuck_reason is None:
                    self.notifier.status(self.snapshot().line())
            if now >= due["tick"]:
                due["tick"] = now + LIVENESS_TICK_S
                self._add_housekeeping(self.liveness.tick())
        if now >= due["integrity"]:
            due["integrity"] = now + self.settings.stats.interval_s
            self.trail.tick(_now_ms())
        ping_every = self.notifier.watchdog_interval_s
        if ping_every is not None and now >= due["ping"]:
            due["ping"] = now + ping_every
            self._watchdog()
        return min(v for k, v in due.items() if k != "ping" or ping_every is not None)

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
        if self.batcher.thread_died and not self._stop.is_set():
            return "the batcher thread has stopped"
        idle = self.writer.idle_for()
        if limit is not None and idle > max(limit, IDLE_WITH_WORK_LIMIT_S):
            waiting = self.batcher.pending_points + self.batcher.spool_status()["spool_points"]
            if waiting:
                return f"{waiting} points wait, but no InfluxDB write for {idle:.0f} s"
        return None

    def snapshot(self) -> GatewayStatus:
        """This process's state, and the workers' with it (a coordinator's: self.peers)."""
        peers = self.peers
        spool = self.batcher.spool_status()
        merge_spool(spool, peers.spool)
        return GatewayStatus(
            counters=self.stats.snapshot(),
            pending_points=self.batcher.pending_points + peers.pending_points,
            spool=spool,
            connected=self.connected.is_set() and peers.connected,
            uptime_s=time.monotonic() - self._started,
            write_in_flight_s=self.writer.busy_for(),
            write_latency=self.writer.latency(),
            devices=tuple(self.directory.registry.devices),
            states=self.liveness.states(),
        )

    def request_stop(self) -> None:
        # Called from the SIGTERM handler: tell systemd at once that we are stopping.
        self.notifier.stopping()
        self._stop.set()
        self.session.stopping = True  # a broker loss from now on is no longer worth a warning

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
        self.session.stop()
        self.trail.close()
        self.writer.close()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.notifier.close()
        log.info("gateway stopped: %s", self.stats.snapshot())

    def _reload_registry(self) -> None:
        if self.directory.poll():
            self._device_info_due = True
            if self.boards is not None:
                self.topics = self.boards.topics(self.directory.device_ids())
                self.session.set_topics(self.topics)
        if self.boards is not None and self.connected.is_set():
            stale = self.session.stale()
            if stale:
                self.session.release(self.boards.releasable(stale, self.directory.device_ids()))
        if self._device_info_due:
            self._device_info_due = not self._add_housekeeping(
                device_info_points(self.directory.registry, _now_ms())
            )

    def _ack(self, tokens: list[AckToken]) -> None:
        self.trail.sync()
        self.session.ack(tokens)

    def _stats_point(self) -> str:
        return self.snapshot().stats_point(self.settings.mqtt.client_id, _now_ms())


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
