"""What sealing telemetry costs a board (CONTRACT.md v2), on the MicroPython unix port with
the compiled bundle: two boards started alike, one with a device key; each forms MESSAGES
telemetry messages of SAMPLES samples as its main loop does (Outbox.take, every piece of the
payload read as the MQTT client streams it, the PUBACK), and the sealed one also hashes them
twice (HMAC-SHA256, the chain's SHA-256) and writes the chain's head to flash. Printed: the
time per message as a ratio to the unsealed board's in the same run, the heap each message
allocates (freed after), and the heap held for good by the seal.

    .venv/bin/python bench/bench_sealing.py [--kind air] [--messages 50] [--samples 10]

The unix port is 64-bit (objects about a third larger than on an ESP32) and its hashlib is
software, where an ESP32's SHA is in hardware: the times are an indication, not an ESP32's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gateway"))

from board_start import START, run_board  # noqa: E402

from urbanpulse.contract.signing import new_device_key  # noqa: E402
from urbanpulse.field.bundle import build_bundle, find_tool  # noqa: E402

SCRIPT = START + r"""
from urbanpulse_fw import telemetry
gc.collect()
print("FREE", hw.free_heap())
ob = loop.outbox
M, S = MESSAGES, SAMPLES
total = alloc = 0
low = hw.free_heap()
for i in range(M):
    for j in range(S):
        ob.add(telemetry.encode(b'{"t":%d' % (1790000000000 + i * 10000 + j * 1000),
                                (("pm25", 12.5 + j), ("pm10", 20.25), ("temperature", 21.5))))
    gc.collect()
    before = gc.mem_free()
    t0 = time.ticks_us()
    msg = ob.take()
    for k in range(msg.pieces):
        msg.piece(k)
    ob.ack(msg)
    total += time.ticks_diff(time.ticks_us(), t0)
    alloc += before - gc.mem_free()
print("TIME", total)
print("ALLOC", alloc)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="air")
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--heap", default="64k", help="the board's RAM (fleet.HEAP)")
    args = parser.parse_args()
    micropython = find_tool("micropython")
    if not micropython:
        print("micropython is not installed (make setup)", file=sys.stderr)
        return 2
    config: dict[str, object] = {"device_id": "bench-01", "kind": args.kind,
                                 "wifi": {"ssid": "x"}, "mqtt": {"host": "127.0.0.1", "port": 1},
                                 "sample_interval_s": 1, "max_buffer_bytes": 4096,
                                 "max_samples_per_message": args.samples}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = build_bundle(tmp / "fw", host=True)
        script = SCRIPT.replace("MESSAGES", str(args.messages)).replace(
            "SAMPLES", str(args.samples))
        plain = {k: v[0] for k, v in run_board(micropython, tmp, bundle, config, args.heap,
                                               script).items()}
        sealed = {k: v[0] for k, v in run_board(
            micropython, tmp, bundle, {**config, "device_key": new_device_key()}, args.heap,
            script).items()}
    n = args.messages
    print(f"kind {args.kind}, {args.heap} heap, {n} messages of {args.samples} samples")
    print(f"time per message:      {plain['TIME'] / n / 1000:.2f} ms unsealed, "
          f"{sealed['TIME'] / n / 1000:.2f} ms sealed: ratio "
          f"{sealed['TIME'] / max(plain['TIME'], 1):.2f}")
    print(f"heap allocated per message (freed after): {plain['ALLOC'] // n} bytes unsealed, "
          f"{sealed['ALLOC'] // n} sealed")
    print(f"heap free after start: {plain['FREE']} unsealed, {sealed['FREE']} sealed: "
          f"{plain['FREE'] - sealed['FREE']} bytes held for good by the seal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
