"""The start of a board as app.py runs it, up to its main loop (``loop``), as MicroPython
source for the firmware benches to run on the unix port before what they measure, and the
run of such a script on a host board."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from urbanpulse.devtools.hostboard import board_argv, board_env

START = r"""
import gc, json, sys, time
from urbanpulse_fw import clock, hw, startup
r = startup.start()
cfg = r[0]
errors = r[2]
del r
cause, wdt = startup.hardware(cfg)
objs = startup.build_sensors(cfg, errors)
del startup
hw.unload("startup")
for name in ("telemetry", "mqtt", "uplink", "mainloop"):
    gc.collect()
    __import__("urbanpulse_fw." + name)
from urbanpulse_fw import mainloop
loop = mainloop.MainLoop(cfg, 1, objs, errors, cause, wdt)
"""


def run_board(micropython: str, tmp: Path, bundle: Path, config: dict[str, object], heap: str,
              script: str, files: dict[str, bytes] | None = None) -> dict[str, list[int]]:
    """Run ``script`` on a host board of ``heap`` RAM started with ``config`` (and ``files``
    in its folder); its output lines "WORD n n ..." as WORD -> the numbers (None: -1)."""
    board = tmp / f"board-{len(list(tmp.iterdir()))}"
    board.mkdir()
    (board / "config.json").write_text(json.dumps(config))
    (board / "bench.py").write_text(script)
    for name, data in (files or {}).items():
        (board / name).write_bytes(data)
    out = subprocess.run(board_argv(micropython, heap, bundle, "bench"), cwd=board,
                         env=board_env(bundle, board), capture_output=True, text=True,
                         timeout=600, check=False)
    found = {}
    for line in out.stdout.splitlines():
        word, *values = line.split()
        if word.isupper() and values and all(v.lstrip("-").isdigit() or v == "None"
                                             for v in values):
            found[word] = [int(v) if v != "None" else -1 for v in values]
    if "FREE" not in found:
        raise SystemExit(f"the board did not start:\n{out.stdout}{out.stderr}")
    return found
