"""Firmware cost on the MicroPython unix port (64 KiB heap, the compiled bundle): the heap
left after start, the heap high-water mark over a run of sampling cycles, and the CPU time
of one sampling cycle (read the sensors, encode, buffer) as a ratio to a bare loop iteration
measured in the same run.

    .venv/bin/python bench/bench_firmware.py [--kind air] [--cycles 2000] [--drivers]

With --drivers, the kind's real sensor drivers (urbanpulse.devtools.fleet.DRIVER_SENSORS)
against the emulated chips, and the flash spool, as on a board; else simulated sensors. A cycle
is timed on the wall clock: with drivers it includes the chips' own waits (the BME280's 10 ms
conversion) and the host bus proxy's round trips to the emulator process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gateway"))

from board_start import START  # noqa: E402

from urbanpulse.devtools.fleet import DRIVER_SENSORS  # noqa: E402
from urbanpulse.devtools.hostboard import board_argv, board_env, rom_bytes  # noqa: E402
from urbanpulse.field.bundle import build_bundle, find_tool  # noqa: E402

SCRIPT = START + r"""
gc.collect()
after_start = gc.mem_free()
low = after_start
N = CYCLES
t0 = time.ticks_us()
for i in range(N):
    pass
bare = time.ticks_diff(time.ticks_us(), t0)
t0 = time.ticks_us()
for i in range(N):
    now = clock.ticks()
    t = clock.now_ms() + i * 1000
    fields = []
    for s in loop.sensors:
        s.poll(now)
        fields.extend(s.read(t))
    loop.sample(now, t, fields)
    if loop.outbox.count > 20:  # as if the broker acknowledged a message
        m = loop.outbox.take()
        loop.outbox.ack(m)
    f = gc.mem_free()
    if f < low:
        low = f
cycles = time.ticks_diff(time.ticks_us(), t0)
gc.collect()
print("RESULT", after_start, low, bare, cycles, gc.mem_free() + gc.mem_alloc())
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="air")
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--drivers", action="store_true",
                        help="real drivers against emulated chips, and the flash spool")
    args = parser.parse_args()
    micropython = find_tool("micropython")
    if not micropython:
        print("micropython is not installed (make setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_bundle(Path(tmp) / "fw", host=True)
        board = Path(tmp) / "board"
        board.mkdir()
        config = {"device_id": "bench-01", "kind": args.kind, "wifi": {"ssid": "x"},
                  "mqtt": {"host": "127.0.0.1", "port": 1}, "sample_interval_s": 1}
        if args.drivers:
            config["sensors"] = DRIVER_SENSORS[args.kind]
            config["max_flash_bytes"] = 262144
        (board / "config.json").write_text(json.dumps(config))
        (board / "bench.py").write_text(SCRIPT.replace("CYCLES", str(args.cycles)))
        env = board_env(bundle, board)
        out = subprocess.run(board_argv(micropython, "64k", bundle, "bench"), cwd=board,
                             env=env, capture_output=True, text=True, timeout=600, check=False)
        rom = rom_bytes(bundle)  # of the heap's total: the image, not the board's RAM
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
    if line is None:
        print(out.stdout + out.stderr, file=sys.stderr)
        return 1
    after_start, low, bare, cycles, total = (int(x) for x in line.split()[1:])
    total -= rom
    n = args.cycles
    sensors = "real drivers, flash spool" if args.drivers else "simulated sensors"
    print(f"kind {args.kind} ({sensors}), {n} sampling cycles, 64 KiB heap")
    print(f"heap free after start:        {after_start} bytes")
    print(f"heap high-water mark (in use): {total - low} of {total} bytes (lowest free {low})")
    print(f"bare loop iteration:          {bare / n:.2f} us")
    print(f"sampling cycle:               {cycles / n:.1f} us = {cycles / max(bare, 1):.0f} x "
          "a bare loop iteration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
