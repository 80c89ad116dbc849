"""systemd notify: the real `urbanpulse gateway run` process talking to a notify socket.

The test plays systemd's part: it listens on a unix datagram socket, starts the gateway with
NOTIFY_SOCKET and WATCHDOG_USEC set, and reads what arrives. A stuck pipeline is made for
real: InfluxDB is reached through a TCP proxy that, on request, accepts and never answers.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from support.gateway_harness import (
    REGISTRY_CSV,
    Publisher,
    count_points,
)
from support.services import Services
from support.waiting import wait_until
from urbanpulse.service.sdnotify import Notifier

WATCHDOG_S = 2.0  # the gateway pings every 1 s


class NotifyListener:
    """systemd's end of NOTIFY_SOCKET: every datagram with its arrival time."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return [(t, m) for t, m in self.messages if key in m]

    def pings(self) -> list[float]:
        return [t for t, _ in self.with_key("WATCHDOG")]

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


class StallingProxy:
    """Forwards TCP to InfluxDB; once stalled, takes connections and data and never answers.
    ``release()`` drops the connections it held (as a restarted server would)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._stalled = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
            if self._stalled.is_set():
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        try:
            while data := src.recv(65536):
                if dst is not None and not self._stalled.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            if sock is not None:
                sock.close()

    def stall(self) -> None:
        self._stalled.set()

    def release(self) -> None:
        with self._lock:
            held, self._sockets = self._sockets, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._stalled.clear()

    def close(self) -> None:
        self._server.close()
        self.release()


@pytest.fixture
def notify() -> Iterator[tuple[NotifyListener, str]]:
    # An abstract-namespace socket, as systemd itself uses ("@/org/freedesktop/...").
    name = f"urbanpulse-test-{uuid.uuid4().hex}"
    listener = NotifyListener(b"\0" + name.encode())
    try:
        yield listener, "@" + name
    finally:
        listener.close()


def _start_gateway(
    services: Services,
    tmp_path: Path,
    notify_socket: str,
    influx_url: str,
    extra: str = "",
    client_id: str = "",
) -> tuple[subprocess.Popen[bytes], Path]:
    (tmp_path / "devices.csv").write_text(REGISTRY_CSV)
    config = tmp_path / "urbanpulse.toml"
    client_id = client_id or f"notify-{uuid.uuid4().hex[:8]}"
    config.write_text(
        f'[mqtt]\nport = {services.mqtt_port}\nclient_id = "{client_id}"\n'
        f'[influx]\nurl = "{influx_url}"\n{extra}'
        "[stats]\ninterval_s = 0.5\n[metrics]\nport = 0\n"
    )
    env = dict(
        os.environ, NOTIFY_SOCKET=notify_socket, WATCHDOG_USEC=str(int(WATCHDOG_S * 1e6))
    )
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse", "gateway", "run", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return process, log_path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


@pytest.mark.services
def test_ready_once_subscribed_then_watchdog_pings_then_stopping_on_sigterm(
    influx: Services, tmp_path: Path, notify: tuple[NotifyListener, str]
) -> None:
    listener, address = notify
    process, log_path = _start_gateway(influx, tmp_path, address, influx.influx_url)
    publisher = Publisher(influx, f"notify-pub-{uuid.uuid4().hex[:8]}")
    try:
        wait_until(lambda: listener.with_key("READY"), 30, "READY=1")
        ready_at, ready = listener.with_key("READY")[0]
        assert ready["READY"] == "1"
        assert "connected" in ready["STATUS"]
        # READY means subscribed: the gateway's session is new, so a message published now
        # reaches it only if the broker already holds its subscription.
        now = time.time_ns() // 1_000_000
        publisher.publish("city/noise-centre-01/telemetry",
                          {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": now, "laeq": 51.0}]})
        wait_until(lambda: count_points(influx, "noise", "laeq") == 1, 20, "the point stored")
        assert "connected to" in log_path.read_text()

        # Pings every WATCHDOG_USEC / 2 while the pipeline works.
        wait_until(lambda: len([t for t in listener.pings() if t > ready_at]) >= 7, 30,
                   "7 watchdog pings")
        pings = [t for t in listener.pings() if t > ready_at]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert 0.7 <= statistics.median(gaps) <= 1.4, gaps
        assert max(gaps) < WATCHDOG_S, f"systemd would have killed it: {gaps}"

        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        wait_until(lambda: listener.with_key("STOPPING"), 5, "STOPPING=1")
        assert listener.with_key("STOPPING")[0][0] - sent < 2
        assert process.wait(15) == 0
    finally:
        publisher.close()
        _stop(process)


@pytest.mark.services
def test_a_hanging_influxdb_write_stops_the_watchdog_pings_until_it_moves_again(
    influx: Services, tmp_path: Path, notify: tuple[NotifyListener, str]
) -> None:
    listener, address = notify
    url = urlparse(influx.influx_url)
    assert url.hostname is not None and url.port is not None
    proxy = StallingProxy((url.hostname, url.port))
    # A long timeout: the write waits for an answer far longer than the watchdog allows.
    process, log_path = _start_gateway(
        influx, tmp_path, address, f"http://127.0.0.1:{proxy.port}", "timeout_s = 300\n"
    )
    publisher = Publisher(influx, f"stuck-pub-{uuid.uuid4().hex[:8]}")
    try:
        wait_until(lambda: listener.with_key("READY"), 30, "READY=1")
        wait_until(lambda: len(listener.pings()) >= 3, 20, "watchdog pings")
        assert "not below the systemd watchdog period" in log_path.read_text()

        proxy.stall()
        stalled_at = time.monotonic()
        now = time.time_ns() // 1_000_000
        publisher.publish("city/noise-centre-01/telemetry",
                          {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": now, "laeq": 52.0}]})
        # Pings stop: none for longer than the watchdog period (systemd would restart it).
        wait_until(lambda: time.monotonic() - listener.pings()[-1] > WATCHDOG_S + 1.5, 30,
                   "the pings to stop")
        last_ping = listener.pings()[-1]
        assert last_ping - stalled_at < WATCHDOG_S + 3, "pings went on while the write hung"
        log = log_path.read_text()
        assert "pipeline stuck: an InfluxDB write has been running for" in log
        assert any(m["STATUS"].startswith("stuck: ") for _, m in listener.with_key("STATUS"))

        # The store comes back (the hung connection drops): the pipeline moves, pings resume.
        proxy.release()
        wait_until(lambda: listener.pings()[-1] > last_ping, 30, "pings to resume")
        wait_until(lambda: count_points(influx, "noise", "laeq") == 1, 30, "the point stored")
        assert "pipeline moving again" in log_path.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        publisher.close()
        _stop(process)
        proxy.close()


def test_notifier_speaks_the_protocol_and_stays_quiet_outside_systemd(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    listener = NotifyListener(str(path))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        assert notifier.watchdog_interval_s == 15.0
        assert notifier.ready("connected") and notifier.watchdog()
        assert notifier.stopping() and not notifier.stopping()  # STOPPING=1 once
        wait_until(lambda: len(listener.messages) == 3, 5, "3 datagrams")
        assert [m for _, m in listener.messages] == [
            {"READY": "1", "STATUS": "connected"},
            {"WATCHDOG": "1"},
            {"STOPPING": "1", "STATUS": "stopping: storing what is pending"},
        ]
        notifier.close()
    finally:
        listener.close()
    # The watchdog variables of another process (a parent's) are not ours.
    other = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000",
                      "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval_s is None
    # Not started by systemd: nothing is sent, nothing fails.
    quiet = Notifier({})
    assert not quiet.enabled and not quiet.ready("x") and quiet.watchdog_interval_s is None


@pytest.mark.services
def test_sigterm_during_a_hung_write_exits_within_10_s_and_the_broker_keeps_the_message(
    influx: Services, tmp_path: Path, notify: tuple[NotifyListener, str]
) -> None:
    """systemd's stop must not wait on InfluxDB: the hung write is abandoned, its message stays
    unacknowledged, and the next gateway with the same session stores it."""
    listener, address = notify
    url = urlparse(influx.influx_url)
    assert url.hostname is not None and url.port is not None
    proxy = StallingProxy((url.hostname, url.port))
    client_id = f"hung-stop-{uuid.uuid4().hex[:8]}"
    process, log_path = _start_gateway(
        influx, tmp_path, address, f"http://127.0.0.1:{proxy.port}", "timeout_s = 300\n",
        client_id=client_id,
    )
    publisher = Publisher(influx, f"hung-stop-pub-{uuid.uuid4().hex[:8]}")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: listener.with_key("READY"), 30, "READY=1")
        proxy.stall()
        now = time.time_ns() // 1_000_000
        publisher.publish("city/noise-centre-01/telemetry",
                          {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": now, "laeq": 53.0}]})
        wait_until(lambda: "pipeline stuck" in log_path.read_text(), 30, "the write to hang")
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = process.wait(15)
        took = time.monotonic() - sent
        assert took < 10, f"stopped after {took:.1f} s"
        assert code == 0
        assert "could not store pending points in time" in log_path.read_text()
        proxy.release()
        assert count_points(influx, "noise", "laeq") == 0
        again = tmp_path / "again"
        again.mkdir()
        second, _ = _start_gateway(influx, again, address, influx.influx_url, client_id=client_id)
        wait_until(lambda: count_points(influx, "noise", "laeq") == 1, 30,
                   "the redelivered message stored by the next gateway")
    finally:
        publisher.close()
        _stop(process)
        if second is not None:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
        proxy.close()
