"""``[service] workers = N``: the parent process systemd sees, and its N gateway workers.

Each worker (``urbanpulse gateway run --worker I/N``, a process of its own, so every core
works) is a gateway in the "worker" role: its own MQTT session ``{client_id}-w{I}``
subscribed to its own boards' topics (service/partition.py: each board to one worker; with
``shared_group`` set, the group's shared subscription instead), its own spool directory
(``{spool}/worker-{I}``) and batcher; it acknowledges a message only once its points are
stored, as one gateway does. The parent runs the "coordinator" role: the
status subscription, liveness, the KPIs, ``/metrics`` and the ``gateway_stats`` point, once
for all workers, from what each worker reports every second (service/report.py).

The parent is each worker's systemd: a worker's NOTIFY_SOCKET is a socket of the parent's.
The parent tells systemd READY=1 once its own session and every worker are ready, pings the
watchdog only while every worker pings it (each pings only while its pipeline moves), and
on SIGTERM stops all. A worker that dies is started again (after 1 s, doubling up to 30 s
while it keeps dying young) with the same session: Mosquitto kept its unacknowledged messages
and queued its boards' new ones meanwhile, and its spool is replayed; nothing is lost. Workers
die with the parent (PR_SET_PDEATHSIG), so that a restarted service never meets old ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from urbanpulse.config import Settings, worker_name

from .gateway import Gateway
from .report import REPORT_KEY, PeerTotals, merge_spool
from .sdnotify import Notifier

log = logging.getLogger("urbanpulse.workers")

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
# A worker that ran this long before it died is restarted after RESTART_FIRST_S again.
LIVED_LONG_S = 30.0
# SIGTERM to the end: the workers drain and acknowledge what they hold (Gateway.stop).
STOP_TIMEOUT_S = 9.0
_PR_SET_PDEATHSIG = 1


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s settings: its session, the shared group, its spool, no /metrics."""
    mqtt = settings.mqtt.model_copy(update={
        "client_id": worker_name(settings.mqtt.client_id, index),
        # Where the broker takes the username as the client id (our secure broker), each
        # worker logs in as a user of its own (broker/policy.py), with the gateway's password.
        "username": None if settings.mqtt.username is None else worker_name(
            settings.mqtt.username, index),
        # Workers take their own boards (service/partition.py); the shared subscription of a
        # group of gateways, if set, stays.
        "shared_group": settings.mqtt.shared_group,
    })
    spool_dir = settings.spool.path / f"worker-{index}"
    dead_letter = settings.spool.dead_letter_path
    spool = settings.spool.model_copy(update={
        "path": spool_dir,
        "dead_letter_path": None if dead_letter is None else dead_letter.with_name(
            f"{dead_letter.stem}.worker-{index}{dead_letter.suffix}"),
    })
    metrics = settings.metrics.model_copy(update={"port": 0})
    return settings.model_copy(update={"mqtt": mqtt, "spool": spool, "metrics": metrics})


def die_with_parent() -> None:
    """A worker gets SIGTERM when its parent dies, even by kill -9 (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class _Worker:
    index: int
    sock: socket.socket
    address: str
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    next_start: float = 0.0
    backoff: float = RESTART_FIRST_S
    ready: bool = False
    connected: bool = False
    pinged: float = 0.0
    pending_points: int = 0
    spool: dict[str, int | float] | None = None


class Supervisor:
    def __init__(self, settings: Settings, config: Path | None,
                 notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.config = config
        self.systemd = notifier or Notifier()
        # The coordinator tells systemd nothing itself: the parent speaks for all.
        self.coordinator = Gateway(settings, notifier=Notifier(environ={}), role="coordinator")
        self._stop = threading.Event()
        self._ready_sent = False
        tag = f"urbanpulse-{os.getpid()}-{os.urandom(4).hex()}"
        self.workers = [self._socket(i, f"@{tag}-{i}")
                        for i in range(settings.service.worker_count())]

    @staticmethod
    def _socket(index: int, address: str) -> _Worker:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(b"\0" + address[1:].encode())  # Linux's abstract namespace: no file
        sock.setblocking(False)
        return _Worker(index, sock, address)

    # -- the workers' processes -----------------------------------------------------------
    def _spawn(self, w: _Worker, now: float) -> None:
        env = dict(os.environ, NOTIFY_SOCKET=w.address)
        env.pop("WATCHDOG_PID", None)  # the worker pings the parent with the parent's period
        period = self.systemd.watchdog_period_s
        if period is not None:
            env["WATCHDOG_USEC"] = str(int(period * 1e6))
        config = [] if self.config is None else ["--config", str(self.config)]
        w.process = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse", "gateway", "run", *config,
             "--worker", f"{w.index}/{len(self.workers)}"],
            env=env, stdin=subprocess.DEVNULL)
        w.started = w.pinged = now
        w.ready = w.connected = False
        log.info("worker %d started (pid %d)", w.index, w.process.pid)

    def _check_exits(self, now: float) -> None:
        for w in self.workers:
            if w.process is None or w.process.poll() is None:
                if w.process is None and now >= w.next_start:
                    self._spawn(w, now)
                continue
            code = w.process.returncode
            lived = now - w.started
            w.backoff = RESTART_FIRST_S if lived >= LIVED_LONG_S else min(
                w.backoff * 2, RESTART_MAX_S)
            w.next_start = now + w.backoff
            w.process = None
            w.ready = w.connected = False
            w.pending_points, w.spool = 0, None
            self.coordinator.stats.retire_external(f"w{w.index}")
            log.error("worker %d exited (code %s) after %.0f s; starting it again in %.0f s",
                      w.index, code, lived, w.backoff)

    # -- what the workers say ---------------------------------------------------------------
    def _receive(self, timeout_s: float) -> None:
        readable, _, _ = select.select([w.sock for w in self.workers], [], [], timeout_s)
        for w in self.workers:
            if w.sock not in readable:
                continue
            while True:
                try:
                    data = w.sock.recv(1 << 20)
                except BlockingIOError:
                    break
                for line in data.decode(errors="replace").split("\n"):
                    key, _, value = line.partition("=")
                    self._on_line(w, key, value)

    def _on_line(self, w: _Worker, key: str, value: str) -> None:
        if key == "READY":
            w.ready = w.connected = True
        elif key == "WATCHDOG":
            w.pinged = time.monotonic()
        elif key == REPORT_KEY:
            self._on_report(w, json.loads(value))

    def _on_report(self, w: _Worker, report: dict[str, object]) -> None:
        c = self.coordinator
        if "counters" in report:
            c.stats.set_external(f"w{w.index}", report["counters"])  # type: ignore[arg-type]
            w.pending_points = int(report["pending_points"])  # type: ignore[call-overload]
            w.spool = report["spool"]  # type: ignore[assignment]
            w.connected = bool(report["connected"])
            for device_id, (t_min, t_max) in report["late"].items():  # type: ignore[attr-defined]
                c.note_late_samples(device_id, t_min, t_max)
        lines: list[str] = []
        for device_id in report.get("seen", []):  # type: ignore[attr-defined]
            lines += c.liveness.seen(device_id)
        if lines:
            c.batcher.offer(lines)

    def _peer_totals(self) -> PeerTotals:
        totals = PeerTotals(connected=all(w.ready and w.connected for w in self.workers))
        for w in self.workers:
            totals.pending_points += w.pending_points
            merge_spool(totals.spool, w.spool or {})
        return totals

    # -- for systemd ------------------------------------------------------------------------
    def _tell_systemd(self, now: float, next_ping: float) -> float:
        c = self.coordinator
        if not self._ready_sent and c.connected.is_set() and all(w.ready for w in self.workers):
            self._ready_sent = True
            self.systemd.ready(f"{len(self.workers)} workers; " + c.snapshot().line())
        every = self.systemd.watchdog_interval_s
        period = self.systemd.watchdog_period_s
        if every is None or period is None or now < next_ping:
            return next_ping
        late = [w.index for w in self.workers if now - w.pinged > period]
        problem = c.pipeline_problem()
        if not late and problem is None:
            self.systemd.watchdog()
        else:
            log.error("not pinging the systemd watchdog: %s",
                      problem or f"workers {late} make no progress")
        return now + every

    # -- the whole ------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.systemd.stopping()
        self._stop.set()

    def run(self) -> int:
        c = self.coordinator
        c.start()
        now = time.monotonic()
        for w in self.workers:
            self._spawn(w, now)
        next_ping = now
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                self._check_exits(now)
                c.peers = self._peer_totals()
                due = c.step(now)
                next_ping = self._tell_systemd(now, next_ping)
                self._receive(max(0.0, min(due, next_ping, now + 0.2) - time.monotonic()))
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        running = [w.process for w in self.workers if w.process and w.process.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        self.coordinator.stop()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in running:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in time: killed", p.pid)
                p.kill()
                p.wait()
        for w in self.workers:
            w.sock.close()
        self.systemd.close()
