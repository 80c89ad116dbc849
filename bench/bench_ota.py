"""An update over the air of the whole firmware package, on a host board (the compiled bundle on
the MicroPython unix port, 64 KiB of heap for its data) and a real Mosquitto on loopback: the
release's bytes, the time to fetch and check it, the time until the new version confirmed
itself, and the least free heap the board reported while fetching against the least it
reported over as long a time before (health every second, same run).

    .venv/bin/python bench/bench_ota.py [--kind air] [--baseline-s 20]

Loopback has no radio: a board on WiFi takes longer per chunk (one request, one answer of
512 bytes at a time); the heap figures are those of a 64-bit port (objects about a third
larger than on an ESP32).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gateway"))
sys.path.insert(0, str(ROOT / "tests"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from support.boardrun import Supervisor  # noqa: E402
from support.hostboards import Board, Broker, Recorder, board_config  # noqa: E402
from urbanpulse.config import MqttSettings  # noqa: E402
from urbanpulse.contract.signing import public_hex  # noqa: E402
from urbanpulse.devtools.fleet import board_heap  # noqa: E402
from urbanpulse.field import release as releases  # noqa: E402
from urbanpulse.field.rollout import Rollout  # noqa: E402

NEW = "9.9.9"


def heap_low(rec: Recorder, device_id: str, t0: float, t1: float) -> int | None:
    """The least heap_free of the health reports that arrived between t0 and t1."""
    values = [json.loads(m.payload).get("heap_free") for m in rec.on(device_id, "health")
              if t0 <= m.at <= t1]
    values = [v for v in values if isinstance(v, int)]
    return min(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="air")
    parser.add_argument("--baseline-s", type=float, default=20.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ota-"))
    try:
        src = tmp / "fw"
        shutil.copytree(ROOT / "firmware", src, ignore=shutil.ignore_patterns("__pycache__"))
        init = src / "urbanpulse_fw" / "__init__.py"
        text = init.read_text()
        init.write_text(text.replace(text.split('FW_VERSION = "')[1].split('"')[0], NEW, 1))
        command, release_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        rel = releases.build(tmp / "release", release_key, src)
        broker = Broker(tmp / "mosquitto")
        broker.start()
        rec = Recorder(broker.port)
        config = board_config(f"{args.kind}-bench-01", args.kind, broker.port,
                              health_interval_s=1, cmd_key=public_hex(command),
                              ota_key=public_hex(release_key))
        board = Board(tmp / "board", config)
        board.heap = board_heap(config)
        sup = Supervisor(board).start()
        try:
            dev = board.device_id
            while not rec.on(dev, "health"):
                time.sleep(0.2)
            t0 = time.time()
            time.sleep(args.baseline_s)
            base = heap_low(rec, dev, t0, time.time())
            times: dict[str, float] = {}

            def log(line: str) -> None:
                times.setdefault(line.split(": ")[-1], time.time())

            start = time.time()
            [result] = Rollout(MqttSettings(host="127.0.0.1", port=broker.port), rel, command,
                               log=log).run([dev], 0, 300)
            if not result.ok:
                print(f"update failed: {result.state} {result.detail}\n{board.console()[-3000:]}")
                return 1
            during = heap_low(rec, dev, start, times["installed"])
        finally:
            sup.stop()
            rec.close()
            broker.stop()
        size = rel.size + len(rel.manifest)
        fetch = times["installed"] - start
        print(f"release {NEW}: {len(rel.files)} files, {size} bytes with the manifest; "
              f"{result.bytes_sent} bytes sent ({result.bytes_sent / size:.2f} x)")
        print(f"fetched and checked in {fetch:.1f} s ({size / 1024 / fetch:.1f} KiB/s, "
              f"512-byte chunks); running and confirmed after {times['updated'] - start:.1f} s")
        print(f"least free heap: {base} bytes over {args.baseline_s:.0f} s before, {during} "
              f"while fetching (ratio {during / base:.2f}; health every 1 s)"
              if base and during else "no health report in a window")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
