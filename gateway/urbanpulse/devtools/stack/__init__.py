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

import os
import signal
import time
from collections.abc import Sequence

from .probes import answers, create_database, port_free
from .processes import (
    find_binary,
    is_ours,
    locked,
    log_size,
    our_pid,
    read_pid,
    spawn,
    stop_all,
    wait_ready,
)
from .services import (
    INFLUXDB,
    KILL_GRACE_S,
    MOSQUITTO,
    NotInstalledError,
    Service,
    ServiceState,
    StackError,
    StackSettings,
    host_port,
    stack_services,
    state_root,
)

__all__ = [
    "INFLUXDB", "MOSQUITTO", "NotInstalledError", "ServiceState", "StackError", "StackSettings",
    "down", "format_status", "reload", "status", "up",
]


# --- public API -------------------------------------------------------------------------------


def up(settings: StackSettings, timeout_s: float = 30) -> list[ServiceState]:
    """Start whichever service is not running yet and wait until both answer.

    Creates the database (idempotent). On failure, stops what this call started and raises
    StackError; services that were already running are left alone.
    """
    deadline = time.monotonic() + timeout_s
    services = stack_services(settings)
    root = state_root(settings)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StackError(f"cannot create the state dir {root}: {exc}") from exc
    with locked(root, deadline):
        to_start: list[tuple[Service, str]] = []
        for svc in services:
            if our_pid(svc) is None:
                to_start.append((svc, find_binary(svc)))
        for svc, _exe in to_start:
            for port in svc.ports:
                if not port_free(settings.host, port):
                    raise StackError(
                        f"port {port} is in use by another process, so {svc.name} cannot "
                        f"listen on {host_port(settings.host, port)}: stop that process or "
                        f"choose other ports (--mqtt-port, --influx-port, --influx-rpc-port)"
                    )

        started: list[tuple[Service, int]] = []
        try:
            # Start-up errors are reported from this run's part of the log only.
            log_offsets = {svc.name: log_size(svc) for svc in services}
            for svc, exe in to_start:
                started.append((svc, spawn(svc, exe, settings)))
            for svc in services:
                wait_ready(svc, settings, deadline, timeout_s, log_offsets[svc.name])
            create_database(settings, deadline)
        except BaseException:
            stop_all([(svc, pid) for svc, pid in started], KILL_GRACE_S)
            raise
    return status(settings)


def down(settings: StackSettings, timeout_s: float = 15) -> list[ServiceState]:
    """Stop the services this stack started (SIGTERM, then SIGKILL after timeout_s).

    Only a pid from our pid file whose /proc/PID/cmdline is our binary with our config is
    signalled. Pid files are removed; data and logs stay. Idempotent.
    """
    root = state_root(settings)
    if root.is_dir():
        with locked(root, time.monotonic() + timeout_s):
            services = stack_services(settings)
            ours = [(svc, pid) for svc in services if (pid := our_pid(svc)) is not None]
            stop_all(ours, timeout_s)
            for svc in services:
                svc.pid_file.unlink(missing_ok=True)
    return status(settings)


def reload(settings: StackSettings) -> list[ServiceState]:
    """Make our Mosquitto read its password and ACL files again (SIGHUP, what `systemctl
    reload mosquitto` does), so that a board just provisioned can connect."""
    svc = next(s for s in stack_services(settings) if s.name == MOSQUITTO)
    pid = our_pid(svc)
    if pid is None:
        raise StackError("mosquitto is not running: `urbanpulse stack up` first")
    os.kill(pid, signal.SIGHUP)
    return status(settings)


def status(settings: StackSettings) -> list[ServiceState]:
    """Read the pid files and probe the ports; changes nothing."""
    states = []
    for svc in stack_services(settings):
        pid = read_pid(svc.pid_file)
        running = pid is not None and is_ours(svc, pid) and answers(svc, settings)
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


