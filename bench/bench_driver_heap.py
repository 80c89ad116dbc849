"""Heap left on a 64 KiB board with each kind's real sensor drivers, against simulated sensors.

Run: PYTHONPATH=gateway .venv/bin/python bench/bench_driver_heap.py
Builds the firmware bundle (``mpy-cross`` bytecode, as flashed) and starts, for each kind, the
real firmware (``main.py`` -> app.py) in ``micropython -X heapsize=64k`` as the fleet does:
once with ``"type": "sim"`` (the baseline, measured in the same run) and once with the kind's
drivers (urbanpulse.devtools.fleet.DRIVER_SENSORS; the chips emulated in a separate process by
host/hostlink.py, so the board's heap holds what a real board holds). Each board also starts
once with a remote ``config`` command waiting (config.new), the start that validates and
applies it, and once with the flash spool (spool.py loaded: a board's default, on the host
only when configured). No broker: the board's boot line reports the heap free once everything
is loaded and the RAM outbox (a sixth of what was free, an eighth with the spool) is
allocated; the board is stopped then.
Also prints what host/hostlink.py itself costs (it stands in for the ESP32's C machine module).
-1: the board did not start (MemoryError).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from urbanpulse.devtools.fleet import DRIVER_SENSORS
from urbanpulse.devtools.hostboard import board_argv, board_env, launch
from urbanpulse.field.bundle import build_bundle, find_tool

BOOT = re.compile(r"heap free (\d+), buffer (\d+)")
CONFIG_COMMAND = '{"id": "c-1", "config": {"health_interval_s": 60}}'

HOSTLINK = """
import gc, micropython
from urbanpulse_fw import clock, hw
def state():
    gc.collect()
    micropython.qstr_info()  # prints n_qstr and n_total_bytes (pools and text of the names)
    print("free", gc.mem_free())
state()
import hostlink
state()
"""
QSTR = re.compile(r"n_qstr=(\d+), .*n_total_bytes=(\d+)")
FREE = re.compile(r"free (\d+)")


def hostlink_cost(micropython: str, bundle: Path, cwd: Path) -> str:
    """What importing host/hostlink.py takes, apart from the interned names' storage (whose
    pools grow by doubling, in steps that a module may or may not happen to trigger)."""
    out = subprocess.run(
        [micropython, "-X", "heapsize=64k", "-c", HOSTLINK], capture_output=True, text=True,
        timeout=60, check=True, cwd=cwd,
        env=board_env(bundle, cwd)).stdout
    (q0, t0), (q1, t1) = [(int(a), int(b)) for a, b in QSTR.findall(out)]
    f0, f1 = [int(x) for x in FREE.findall(out)]
    return (f"{f0 - f1 - (t1 - t0)} bytes of code and objects, {q1 - q0} new interned names "
            f"(+{t1 - t0} bytes of name storage here)")


def boot_free(micropython: str, bundle: Path, folder: Path, kind: str,
              sensors: list[dict[str, Any]], config_command: bool = False,
              flash: bool = False) -> tuple[int, int]:
    """(heap free after start, outbox bytes) from the board's boot line; (-1, -1) if none."""
    folder.mkdir(parents=True)
    config = {"device_id": f"{kind}-bench-01", "kind": kind,
              "wifi": {"ssid": "bench", "password": None},
              "mqtt": {"host": "127.0.0.1", "port": 9},  # nothing listens: no connect
              "sample_interval_s": 1, "publish_interval_s": 10, "sensors": sensors}
    if flash:  # the flash spool, a board's default (on the host only when configured)
        config["max_flash_bytes"] = 262144
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if config_command:
        (folder / "config.new").write_text(CONFIG_COMMAND, encoding="utf-8")
    log = folder / "console.log"
    with log.open("wb") as out:
        board = launch(board_argv(micropython, "64k", bundle), folder,
                       board_env(bundle, folder), out)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and board.poll() is None:
            found = BOOT.search(log.read_text(errors="replace"))
            if found:
                return int(found.group(1)), int(found.group(2))
            time.sleep(0.1)
        found = BOOT.search(log.read_text(errors="replace"))
        return (int(found.group(1)), int(found.group(2))) if found else (-1, -1)
    finally:
        board.kill()
        board.wait()


def main() -> None:
    micropython = find_tool("micropython")
    if not micropython:
        raise SystemExit("micropython is not installed: run `make setup`")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = build_bundle(root / "bundle", host=True)
        print("heap free (bytes of a 64 KiB heap) once the firmware has started, RAM outbox "
              "allocated; in brackets the outbox's size")
        print(f"{'kind':12} {'sim (baseline)':>16} {'drivers':>16} {'drv/sim':>7} | "
              f"{'drivers, config command start':>30} | {'drivers + flash spool':>22}")
        worst = None
        for kind, drivers in DRIVER_SENSORS.items():
            sim: list[dict[str, Any]] = [{"type": "sim", "kind": kind}]
            runs = (("sim", sim, False, False), ("drv", drivers, False, False),
                    ("cmd", drivers, True, False), ("spool", drivers, False, True))
            got = [boot_free(micropython, bundle, root / f"{kind}-{name}", kind, sensors,
                             command, flash) for name, sensors, command, flash in runs]
            (s_free, s_buf), (d_free, d_buf), (c_free, c_buf), (f_free, f_buf) = got
            ratio = d_free / s_free if s_free > 0 else 0.0
            print(f"{kind:12} {s_free:7d} ({s_buf:5d}) {d_free:7d} ({d_buf:5d}) {ratio:7.2f} | "
                  f"{c_free:21d} ({c_buf:5d}) | {f_free:13d} ({f_buf:5d})")
            low = min(d_free, c_free)
            worst = low if worst is None else min(worst, low)
        print(f"lowest with drivers, no flash spool: {worst} bytes free (-1: MemoryError at "
              "start)")
        print("of the drivers' cost, host/hostlink.py (the host's stand-in for the ESP32's C "
              f"machine.I2C/UART/Pin/ADC, never on a board): "
              f"{hostlink_cost(micropython, bundle, root)}")


if __name__ == "__main__":
    main()
