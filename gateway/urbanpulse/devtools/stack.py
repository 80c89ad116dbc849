"""A local Mosquitto and InfluxDB 1.x for development, the demo and the tests.

Both run as ordinary background processes of the invoking user (no systemd, no docker), bound
to 127.0.0.1 on ports of their own, with every data file, log, generated config and pid file
under one state folder::

    <state_dir>/
      stack.lock
      mosquitto/  mosquitto.conf  mosquitto.pid  data/  log/mosquitto.log
      influxdb/   influxdb.conf   influxdb.pid   meta/  data/  wal/  log/influxd.log

A process counts as ours only if the pid in our pid file is alive and its /proc/PID/cmdline
names the binary and our generated config file, so a reused pid is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import urllib3
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from urbanpulse.influx import influxql

MOSQUITTO = "mosquitto"
INFLUXDB = "influxdb"

# Debian puts mosquitto in /usr/sbin, which is not on an ordinary user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_LOG_TAIL_LINES = 20
_PROBE_TIMEOUT_S = 1.0
_POLL_INTERVAL_S = 0.05
# After SIGKILL the kernel frees the process almost at once; this only bounds a stuck exit.
_KILL_GRACE_S = 5.0

# Popen objects of the services this process started, so that their exit can be reaped (no
# zombies, no ResourceWarning) and a death at start-up seen. A CLI `up` simply exits and
# leaves its children to init.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path = Path(".urbanpulse")
    host: str = "127.0.0.1"
    mqtt_port: int = 18831
    influx_port: int = 18086
    # influxd's RPC (backup/restore) bind-address, default :8088, must move too.
    influx_rpc_port: int = 18088
    database: str = "urbanpulse"
    # Resolved with shutil.which, also trying /usr/sbin; a value with a "/" is used as is.
    mosquitto_bin: str = "mosquitto"
    influxd_bin: str = "influxd"
    # Optional security, to test the gateway's TLS and authentication against the real
    # servers: a second, TLS-only Mosquitto listener (with a password file and optionally
    # client certificates; the plain listener stays open on loopback), and InfluxDB with
    # authentication on (this admin user is created at the first start).
    mqtt_tls_port: int | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    mqtt_password_file: Path | None = None
    mqtt_require_certificate: bool = False
    influx_admin: tuple[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServiceState:
    name: str  # "mosquitto" | "influxdb"
    pid: int | None  # from our pid file
    running: bool  # the pid is alive, is the process we started, and the port answers
    address: str  # "127.0.0.1:18831" / "http://127.0.0.1:18086"
    log_file: Path


class StackError(Exception):
    """The local stack could not be started, stopped or reached; the message says why."""


class NotInstalledError(StackError):
    """A service binary (mosquitto or influxd) was not found."""


@dataclass(frozen=True)
class _Service:
    name: str
    binary: str  # as configured: a name to look up or a path
    package: str  # the Debian package that provides it
    dir: Path
    config_file: Path
    pid_file: Path
    log_file: Path
    ports: tuple[int, ...]  # every TCP port it binds
    address: str


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _root(settings: StackSettings) -> Path:
    # Absolute, because the paths go into config files and are matched in /proc/PID/cmdline.
    return settings.state_dir.expanduser().resolve()


def _services(settings: StackSettings) -> tuple[_Service, _Service]:
    root = _root(settings)
    mosquitto_dir = root / "mosquitto"
    influx_dir = root / "influxdb"
    return (
        _Service(
            name=MOSQUITTO,
            binary=settings.mosquitto_bin,
            package="mosquitto",
            dir=mosquitto_dir,
            config_file=mosquitto_dir / "mosquitto.conf",
            pid_file=mosquitto_dir / "mosquitto.pid",
            log_file=mosquitto_dir / "log" / "mosquitto.log",
            ports=(settings.mqtt_port,)
            + ((settings.mqtt_tls_port,) if settings.mqtt_tls_port else ()),
            address=_host_port(settings.host, settings.mqtt_port),
        ),
        _Service(
            name=INFLUXDB,
            binary=settings.influxd_bin,
            package="influxdb",
            dir=influx_dir,
            config_file=influx_dir / "influxdb.conf",
            pid_file=influx_dir / "influxdb.pid",
            log_file=influx_dir / "log" / "influxd.log",
            ports=(settings.influx_port, settings.influx_rpc_port),
            address="http://" + _host_port(settings.host, settings.influx_port),
        ),
    )


# --- public API -------------------------------------------------------------------------------


def up(settings: StackSettings, timeout_s: float = 30) -> list[ServiceState]:
    """Start whichever service is not running yet and wait until both answer.

    Creates the database (idempotent). On failure, stops what this call started and raises
    StackError; services that were already running are left alone.
    """
    deadline = time.monotonic() + timeout_s
    services = _services(settings)
    root = _root(settings)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StackError(f"cannot create the state dir {root}: {exc}") from exc
    with _locked(root, deadline):
        to_start: list[tuple[_Service, str]] = []
        for svc in services:
            if _our_pid(svc) is None:
                to_start.append((svc, _find_binary(svc)))
        for svc, _exe in to_start:
            for port in svc.ports:
                if not _port_free(settings.host, port):
                    raise StackError(
                        f"port {port} is in use by another process, so {svc.name} cannot "
                        f"listen on {_host_port(settings.host, port)}: stop that process or "
                        f"choose other ports (--mqtt-port, --influx-port, --influx-rpc-port)"
                    )

        started: list[tuple[_Service, int]] = []
        try:
            # Start-up errors are reported from this run's part of the log only.
            log_offsets = {svc.name: _log_size(svc) for svc in services}
            for svc, exe in to_start:
                started.append((svc, _spawn(svc, exe, settings)))
            for svc in services:
                _wait_ready(svc, settings, deadline, timeout_s, log_offsets[svc.name])
            _create_database(settings, deadline)
        except BaseException:
            _stop_all([(svc, pid) for svc, pid in started], _KILL_GRACE_S)
            raise
    return status(settings)


def down(settings: StackSettings, timeout_s: float = 15) -> list[ServiceState]:
    """Stop the services this stack started (SIGTERM, then SIGKILL after timeout_s).

    Only a pid from our pid file whose /proc/PID/cmdline is our binary with our config is
    signalled. Pid files are removed; data and logs stay. Idempotent.
    """
    root = _root(settings)
    if root.is_dir():
        with _locked(root, time.monotonic() + timeout_s):
            services = _services(settings)
            ours = [(svc, pid) for svc in services if (pid := _our_pid(svc)) is not None]
            _stop_all(ours, timeout_s)
            for svc in services:
                svc.pid_file.unlink(missing_ok=True)
    return status(settings)


def status(settings: StackSettings) -> list[ServiceState]:
    """Read the pid files and probe the ports; changes nothing."""
    states = []
    for svc in _services(settings):
        pid = _read_pid(svc.pid_file)
        running = pid is not None and _is_ours(svc, pid) and _answers(svc, settings)
        states.append(ServiceState(svc.name, pid, running, svc.address, svc.log_file))
    return states


def format_status(states: Sequence[ServiceState]) -> str:
    """A short human table: service, state, pid, address, log file."""
    rows = [("SERVICE", "STATE", "PID", "ADDRESS", "LOG")]
    for s in states:
        rows.append(
            (
                s.name,
                "running" if s.running else "stopped",
                str(s.pid) if s.pid is not None else "-",
                s.address,
                str(s.log_file),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    )


# --- generated configuration ------------------------------------------------------------------


def _mosquitto_conf(svc: _Service, settings: StackSettings) -> str:
    data_dir = svc.dir / "data"
    lines = [
        "# Generated by urbanpulse.stack each time it starts mosquitto; edits are lost.",
    ]
    user = _current_user()
    if user is not None:
        lines += [
            "# Started as root, mosquitto would switch to user `mosquitto`, which cannot write a",
            "# state dir owned by the invoking user, least of all under a 0700 parent (pytest",
            "# tmp dirs). Naming the invoking user keeps it (mosquitto only switches as root).",
            f"user {user}",
        ]
    if settings.mqtt_tls_port:
        lines += [
            "# Security settings per listener: the plain loopback listener stays anonymous.",
            "per_listener_settings true",
        ]
    lines += [
        f"listener {settings.mqtt_port} {settings.host}",
        "allow_anonymous true",
    ]
    if settings.mqtt_tls_port:
        if not (settings.tls_ca_file and settings.tls_cert_file and settings.tls_key_file):
            raise StackError("mqtt_tls_port needs tls_ca_file, tls_cert_file and tls_key_file")
        lines += [
            f"listener {settings.mqtt_tls_port} {settings.host}",
            f"cafile {_conf_value(settings.tls_ca_file)}",
            f"certfile {_conf_value(settings.tls_cert_file)}",
            f"keyfile {_conf_value(settings.tls_key_file)}",
            f"require_certificate {str(settings.mqtt_require_certificate).lower()}",
        ]
        if settings.mqtt_password_file:
            lines += [
                "allow_anonymous false",
                f"password_file {_conf_value(settings.mqtt_password_file)}",
            ]
        else:
            lines.append("allow_anonymous true")
    lines += [
        "# Retained messages, persistent sessions and their queued messages survive a restart:",
        "# saved on SIGTERM, and every 10 s to bound the loss if it is killed.",
        "persistence true",
        # No trailing slash: 2.0 adds one (1.x needed it, but would reject set_tcp_nodelay).
        f"persistence_location {_conf_value(data_dir)}",
        "autosave_interval 10",
        f"log_dest file {_conf_value(svc.log_file)}",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S%z",
        "# The gateway acknowledges a message only after storing it: allow many unacknowledged",
        "# messages in flight, and a large queue for persistent sessions while it is away.",
        "max_inflight_messages 1000",
        "max_queued_messages 1000000",
        "set_tcp_nodelay true",
    ]
    return "\n".join(lines) + "\n"


def _influxdb_conf(svc: _Service, settings: StackSettings) -> str:
    def q(value: str) -> str:
        return _toml_string(value)

    rpc = _host_port(settings.host, settings.influx_rpc_port)
    http = _host_port(settings.host, settings.influx_port)
    # Keys checked against `influxd config -config FILE` of 1.6.7 (it ignores unknown keys).
    return f"""\
# Generated by urbanpulse.stack each time it starts influxd; edits are lost.
reporting-enabled = false
# The RPC (backup/restore) service; its default :8088 would clash with a system influxd.
bind-address = {q(rpc)}

[meta]
  dir = {q(str(svc.dir / "meta"))}

[data]
  dir = {q(str(svc.dir / "data"))}
  wal-dir = {q(str(svc.dir / "wal"))}
  # A log line per query would flood the log.
  query-log-enabled = false

[monitor]
  # No _internal database.
  store-enabled = false

[http]
  enabled = true
  bind-address = {q(http)}
  # A log line per request would flood the log at sensor rates.
  log-enabled = false
  auth-enabled = {str(settings.influx_admin is not None).lower()}
  unix-socket-enabled = false

[ifql]
  enabled = false

[logging]
  suppress-logo = true

# Explicitly off, so nothing listens on 2003, 25826, 4242 or 8089.
[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = true
  log-enabled = false
"""


def _current_user() -> str | None:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        # No passwd entry: as root, "root" still works; otherwise mosquitto does not switch.
        return "root" if os.geteuid() == 0 else None


def _conf_value(path: Path) -> str:
    text = str(path)
    if "\n" in text or "\r" in text:
        raise StackError(f"the state dir path must not contain a line break: {text!r}")
    return text


def _toml_string(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise StackError(f"the state dir path must not contain control characters: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- processes ---------------------------------------------------------------------------------


def _find_binary(svc: _Service) -> str:
    configured = svc.binary
    if "/" in configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.absolute())
        where = f"no executable {configured}"
    else:
        found = shutil.which(configured) or shutil.which(
            configured, path=os.pathsep.join(_EXTRA_BIN_DIRS)
        )
        if found is not None:
            return found
        where = f"`{configured}` is neither on PATH nor in {', '.join(_EXTRA_BIN_DIRS)}"
    program = Path(configured).name
    raise NotInstalledError(
        f"{program} is not installed ({where}): run `make setup` (apt-get install {svc.package})"
    )


def _spawn(svc: _Service, exe: str, settings: StackSettings) -> int:
    if svc.name == MOSQUITTO:
        config = _mosquitto_conf(svc, settings)
        argv = [exe, "-c", str(svc.config_file)]
        env = dict(os.environ)
    else:
        config = _influxdb_conf(svc, settings)
        argv = [exe, "run", "-config", str(svc.config_file)]
        # INFLUXDB_* variables override the config file (e.g. INFLUXDB_HTTP_BIND_ADDRESS).
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
    subdirs = ("data", "log") if svc.name == MOSQUITTO else ("meta", "data", "wal", "log")
    try:
        for sub in subdirs:
            (svc.dir / sub).mkdir(parents=True, exist_ok=True)
        _write_atomic(svc.config_file, config)
        log = svc.log_file.open("ab")
    except OSError as exc:
        raise StackError(f"cannot prepare {svc.dir}: {exc}") from exc

    with log:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"--- urbanpulse stack, {started}: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=svc.dir,
                env=env,
                start_new_session=True,  # detached: no terminal signals, outlives the caller
            )
        except OSError as exc:
            raise StackError(f"cannot start {exe}: {exc}") from exc
    _children[proc.pid] = proc
    try:
        _write_atomic(svc.pid_file, f"{proc.pid}\n")
    except OSError as exc:
        proc.kill()  # untracked, it could never be stopped by `down`
        proc.wait()
        raise StackError(f"cannot write {svc.pid_file}: {exc}") from exc
    return proc.pid


def _wait_ready(
    svc: _Service, settings: StackSettings, deadline: float, timeout_s: float, log_offset: int
) -> None:
    pid = _read_pid(svc.pid_file)  # just written, or verified as ours under the lock
    if pid is None:
        raise StackError(f"{svc.pid_file} disappeared while {svc.name} was starting")
    while True:
        exit_code = _exit_code(svc, pid)
        if exit_code is not None:
            tail = _log_tail(svc.log_file, log_offset)
            port = _port_conflict(svc, tail)
            raise StackError(
                (f"port {port} is in use by another process; " if port is not None else "")
                + f"{Path(svc.binary).name} exited at start-up"
                + (f" (exit code {exit_code})" if exit_code != "" else "")
                + f"; last lines of its log {svc.log_file}:\n{_indent(tail)}"
            )
        if _answers(svc, settings, min(_PROBE_TIMEOUT_S, max(deadline - time.monotonic(), 0.1))):
            return
        if time.monotonic() >= deadline:
            tail = _log_tail(svc.log_file, log_offset)
            raise StackError(
                f"{svc.name} (pid {pid}) did not answer on {svc.address} within {timeout_s:g} s; "
                f"last lines of its log {svc.log_file}:\n{_indent(tail)}"
            )
        time.sleep(_POLL_INTERVAL_S)


def _exit_code(svc: _Service, pid: int) -> str | None:
    """None while the process runs; else its exit code, or "" when it is not our child."""
    proc = _children.get(pid)
    if proc is not None:
        # Our child: poll() is exact, even for a wrapper script whose cmdline differs.
        code = proc.poll()
        return None if code is None else str(code)
    return None if _is_ours(svc, pid) else ""


def _port_conflict(svc: _Service, tail: str) -> int | None:
    lines = [line for line in tail.splitlines() if "address already in use" in line.lower()]
    if not lines:
        return None
    for port in svc.ports:
        if any(f":{port}" in line for line in lines):
            return port
    # mosquitto names the port on the line before ("Opening ipv4 listen socket on port N").
    return svc.ports[0] if len(svc.ports) == 1 else None


def _stop_all(targets: Sequence[tuple[_Service, int]], timeout_s: float) -> None:
    """SIGTERM each (verified) process, SIGKILL what is left at the deadline, remove pid files."""
    for svc, pid in targets:
        if _is_ours(svc, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    remaining = _wait_gone(targets, time.monotonic() + timeout_s)
    for svc, pid in remaining:
        if _is_ours(svc, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    remaining = _wait_gone(remaining, time.monotonic() + _KILL_GRACE_S)
    for svc, _pid in targets:
        svc.pid_file.unlink(missing_ok=True)
    if remaining:
        names = ", ".join(f"{svc.name} (pid {pid})" for svc, pid in remaining)
        raise StackError(f"could not stop {names}, even with SIGKILL")


def _wait_gone(
    targets: Sequence[tuple[_Service, int]], deadline: float
) -> list[tuple[_Service, int]]:
    while True:
        left = [(svc, pid) for svc, pid in targets if _is_ours(svc, pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(_POLL_INTERVAL_S)


def _our_pid(svc: _Service) -> int | None:
    pid = _read_pid(svc.pid_file)
    return pid if pid is not None and _is_ours(svc, pid) else None


def _is_ours(svc: _Service, pid: int) -> bool:
    """Alive, not a zombie, and running our binary with our config file."""
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True  # our unreaped child: the pid cannot have been reused
        del _children[pid]  # reaped now; the pid is free for reuse
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if not raw:  # a zombie (or a kernel thread)
        return False
    args = [os.fsdecode(a) for a in raw.rstrip(b"\0").split(b"\0")]
    return Path(args[0]).name == Path(svc.binary).name and str(svc.config_file) in args[1:]


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextlib.contextmanager
def _locked(root: Path, deadline: float) -> Iterator[None]:
    """Serialise up/down on one state dir (two test runs or terminals at once)."""
    with (root / "stack.lock").open("a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"another `urbanpulse stack` command holds {root / 'stack.lock'}"
                    ) from None
                time.sleep(_POLL_INTERVAL_S)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- logs ---------------------------------------------------------------------------------------


def _log_size(svc: _Service) -> int:
    try:
        return svc.log_file.stat().st_size
    except OSError:
        return 0


def _log_tail(path: Path, offset: int, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return "(no log)"
    text = data.decode(errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) if text else "(log is empty)"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# --- probes -------------------------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    # SO_REUSEADDR as both servers use it: a port in TIME_WAIT is free, a listener is not.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise StackError(f"cannot bind {_host_port(host, port)}: {exc}") from exc
    return True


def _answers(svc: _Service, settings: StackSettings, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    if svc.name == MOSQUITTO:
        return _mqtt_answers(settings.host, settings.mqtt_port, timeout_s)
    return _influx_answers(settings.host, settings.influx_port, timeout_s)


def _mqtt_answers(host: str, port: int, timeout_s: float) -> bool:
    """An MQTT CONNECT answered by a successful CONNACK (a bare TCP accept proves little)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"urbanpulse-stack-probe-{uuid.uuid4().hex[:12]}",
        clean_session=True,
    )
    client.connect_timeout = timeout_s
    result: list[bool] = []

    def on_connect(
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        result.append(not reason_code.is_failure)

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return False
    try:
        deadline = time.monotonic() + timeout_s
        while not result and time.monotonic() < deadline:
            if client.loop(timeout=_POLL_INTERVAL_S) != mqtt.MQTT_ERR_SUCCESS:
                break
        return bool(result) and result[0]
    finally:
        client.disconnect()


def _influx_answers(host: str, port: int, timeout_s: float) -> bool:
    try:
        response = _influx_request(host, port, "GET", "/ping", timeout_s=timeout_s)
    except (urllib3.exceptions.HTTPError, OSError):
        return False
    return response.status == 204


def _influx_request(
    host: str,
    port: int,
    method: str,
    path: str,
    fields: dict[str, str] | None = None,
    timeout_s: float = 5.0,
    auth: tuple[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    headers = urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}") if auth else None
    with urllib3.HTTPConnectionPool(
        host, port, timeout=urllib3.Timeout(total=timeout_s), retries=False, maxsize=1
    ) as pool:
        if fields is None:
            return pool.request(method, path, headers=headers)
        return pool.request(
            method, path, fields=fields, encode_multipart=False, headers=headers
        )


def _influx_admin_query(settings: StackSettings, q: str, deadline: float) -> str | None:
    """Run q as the admin (if auth is on); the error text InfluxDB gave, or None."""
    try:
        response = _influx_request(
            settings.host,
            settings.influx_port,
            "POST",
            "/query",
            fields={"q": q},
            timeout_s=max(deadline - time.monotonic(), 1.0),
            auth=settings.influx_admin,
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return str(exc)
    body = response.data.decode(errors="replace")
    error: Any = None
    try:
        parsed = json.loads(body)
        error = parsed.get("error") or next(
            (r.get("error") for r in parsed.get("results", []) if r.get("error")), None
        )
    except (ValueError, AttributeError):
        error = body
    if response.status != 200 or error:
        return f"HTTP {response.status}: {error or body}"
    return None


def _create_database(settings: StackSettings, deadline: float) -> None:
    name = settings.database
    if not name:
        raise StackError("the database name must not be empty")
    if settings.influx_admin is not None:
        user, password = settings.influx_admin
        # Allowed without credentials while no user exists; later starts find it there.
        error = _influx_admin_query(
            settings,
            f"CREATE USER {influxql.ident(user)} WITH PASSWORD {influxql.string(password)} "
            "WITH ALL PRIVILEGES",
            deadline,
        )
        if error is not None and "already exists" not in error:
            raise StackError(f"cannot create the InfluxDB admin user {user!r}: {error}")
    error = _influx_admin_query(settings, f"CREATE DATABASE {influxql.ident(name)}", deadline)
    if error is not None:
        raise StackError(f"cannot create database {name!r}: {error}")


