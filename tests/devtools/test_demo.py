"""`urbanpulse demo` stops everything it started however it is ended: Ctrl-C, `kill`, or the
terminal closing (SIGHUP). Played with a real demo process and real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support.services import free_ports
from support.waiting import wait_until


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_under(folder: Path) -> list[int]:
    """Processes whose working directory is inside ``folder`` (the demo's host boards)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(folder) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_demo_stops_everything_it_started_on(sig: signal.Signals, tmp_path: Path) -> None:
    state = tmp_path / "demo"
    ports = [str(p) for p in free_ports(3)]
    demo = subprocess.Popen(
        [sys.executable, "-m", "urbanpulse", "demo", "--state-dir", str(state),
         "--mqtt-port", ports[0], "--influx-port", ports[1], "--influx-rpc-port", ports[2],
         "--devices", "7", "--no-live"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(demo.stdout or ()), daemon=True)
    reader.start()
    try:
        started = wait_until(
            lambda: re.search(r"gateway pid (\d+)", "".join(output)), timeout_s=90,
            what="the demo to start its gateway and boards",
        )
        gateway = int(started.group(1))
        boards = wait_until(lambda: len(_processes_under(state / "boards")) == 7
                            and _processes_under(state / "boards"), timeout_s=30,
                            what="the 7 boards running")
        services = [int((state / name / f"{name}.pid").read_text())
                    for name in ("mosquitto", "influxdb")]
        assert all(_alive(pid) for pid in [gateway, *boards, *services])

        demo.send_signal(sig)
        assert demo.wait(60) == 0, "".join(output)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    reader.join(10)
    text = "".join(output)
    assert "demo stopped." in text, text
    left = [pid for pid in [gateway, *boards, *services] if _alive(pid)]
    assert left == [], f"still running after {sig.name}: {left}\n{text}"
    assert _processes_under(state / "boards") == []
