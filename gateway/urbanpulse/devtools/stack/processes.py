"""Starting and stopping the stack's processes: pid files, the state-dir lock, logs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from .configs import influxdb_conf, mosquitto_conf
from .probes import answers
from .services import (
    KILL_GRACE_S,
    MOSQUITTO,
    POLL_INTERVAL_S,
    PROBE_TIMEOUT_S,
    NotInstalledError,
    Service,
    StackError,
    StackSettings,
)

# Debian puts mosquitto in /usr/sbin, which is not on an ordinary user's PATH.
EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
LOG_TAIL_LINES = 20

# Popen objects of the services this process started, so that their exit can be reaped (no
# zombies, no ResourceWarning) and a death at start-up seen. A CLI `up` simply exits and
# leaves its children to init.
children: dict[int, subprocess.Popen[bytes]] = {}

# --- processes ---------------------------------------------------------------------------------


def find_binary(svc: Service) -> str:
    configured = svc.binary
    if "/" in configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.absolute())
        where = f"no executable {configured}"
    else:
        found = shutil.which(configured) or shutil.which(
            configured, path=os.pathsep.join(EXTRA_BIN_DIRS)
        )
        if found is not None:
            return found
        where = f"`{configured}` is neither on PATH nor in {', '.join(EXTRA_BIN_DIRS)}"
    program = Path(configured).name
    raise NotInstalledError(
        f"{program} is not installed ({where}): run `make setup` (apt-get install {svc.package})"
    )


def spawn(svc: Service, exe: str, settings: StackSettings) -> int:
    if svc.name == MOSQUITTO:
        config = mosquitto_conf(svc, settings)
        argv = [exe, "-c", str(svc.config_file)]
        env = dict(os.environ)
    else:
        config = influxdb_conf(svc, settings)
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
    children[proc.pid] = proc
    try:
        _write_atomic(svc.pid_file, f"{proc.pid}\n")
    except OSError as exc:
        proc.kill()  # untracked, it could never be stopped by `down`
        proc.wait()
        raise StackError(f"cannot write {svc.pid_file}: {exc}") from exc
    return proc.pid


def wait_ready(
    svc: Service, settings: StackSettings, deadline: float, timeout_s: float, log_offset: int
) -> None:
    pid = read_pid(svc.pid_file)  # just written, or verified as ours under the lock
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
        if answers(svc, settings, min(PROBE_TIMEOUT_S, max(deadline - time.monotonic(), 0.1))):
            return
        if time.monotonic() >= deadline:
            tail = _log_tail(svc.log_file, log_offset)
            raise StackError(
                f"{svc.name} (pid {pid}) did not answer on {svc.address} within {timeout_s:g} s; "
                f"last lines of its log {svc.log_file}:\n{_indent(tail)}"
            )
        time.sleep(POLL_INTERVAL_S)


def _exit_code(svc: Service, pid: int) -> str | None:
    """None while the process runs; else its exit code, or "" when it is not our child."""
    proc = children.get(pid)
    if proc is not None:
        # Our child: poll() is exact, even for a wrapper script whose cmdline differs.
        code = proc.poll()
        return None if code is None else str(code)
    return None if is_ours(svc, pid) else ""


def _port_conflict(svc: Service, tail: str) -> int | None:
    lines = [line for line in tail.splitlines() if "address already in use" in line.lower()]
    if not lines:
        return None
    for port in svc.ports:
        if any(f":{port}" in line for line in lines):
            return port
    # mosquitto names the port on the line before ("Opening ipv4 listen socket on port N").
    return svc.ports[0] if len(svc.ports) == 1 else None


def stop_all(targets: Sequence[tuple[Service, int]], timeout_s: float) -> None:
    """SIGTERM each (verified) process, SIGKILL what is left at the deadline, remove pid files."""
    for svc, pid in targets:
        if is_ours(svc, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    remaining = _wait_gone(targets, time.monotonic() + timeout_s)
    for svc, pid in remaining:
        if is_ours(svc, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    remaining = _wait_gone(remaining, time.monotonic() + KILL_GRACE_S)
    for svc, _pid in targets:
        svc.pid_file.unlink(missing_ok=True)
    if remaining:
        names = ", ".join(f"{svc.name} (pid {pid})" for svc, pid in remaining)
        raise StackError(f"could not stop {names}, even with SIGKILL")


def _wait_gone(
    targets: Sequence[tuple[Service, int]], deadline: float
) -> list[tuple[Service, int]]:
    while True:
        left = [(svc, pid) for svc, pid in targets if is_ours(svc, pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_INTERVAL_S)


def our_pid(svc: Service) -> int | None:
    pid = read_pid(svc.pid_file)
    return pid if pid is not None and is_ours(svc, pid) else None


def is_ours(svc: Service, pid: int) -> bool:
    """Alive, not a zombie, and running our binary with our config file."""
    proc = children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True  # our unreaped child: the pid cannot have been reused
        del children[pid]  # reaped now; the pid is free for reuse
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if not raw:  # a zombie (or a kernel thread)
        return False
    args = [os.fsdecode(a) for a in raw.rstrip(b"\0").split(b"\0")]
    return Path(args[0]).name == Path(svc.binary).name and str(svc.config_file) in args[1:]


def read_pid(path: Path) -> int | None:
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
def locked(root: Path, deadline: float) -> Iterator[None]:
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
                time.sleep(POLL_INTERVAL_S)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- logs ---------------------------------------------------------------------------------------


def log_size(svc: Service) -> int:
    try:
        return svc.log_file.stat().st_size
    except OSError:
        return 0


def _log_tail(path: Path, offset: int, lines: int = LOG_TAIL_LINES) -> str:
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


