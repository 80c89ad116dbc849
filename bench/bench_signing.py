"""What a signed command costs a board (CONTRACT.md v2), on the MicroPython unix port with the
compiled bundle: the time of one signature check (loading its modules, SHA-512, the curve
arithmetic, keeping the counter) as a ratio to parsing the same command's JSON, measured in
the same run; the heap a command key holds for good (the decoded key, the names its modules
bring, the room kept for a check), from a board started with and without one (the RAM
buffer fixed, so that it does not hide the difference); and the least free heap in which a
check still succeeds (the firmware keeps edkey.SPARE_KB KiB for it).

    .venv/bin/python bench/bench_signing.py [--kind air] [--checks 20]

The unix port is 64-bit: objects are about a third larger than on an ESP32, and big-int
arithmetic is faster; the heap figures are an upper bound for a board, the times a lower one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gateway"))

from board_start import START, run_board  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from urbanpulse.contract.signing import public_hex, sign_command  # noqa: E402
from urbanpulse.field.bundle import build_bundle, find_tool  # noqa: E402

SPARE_KB = int(next(line.split("=")[1] for line in (ROOT / "firmware/urbanpulse_fw/edkey.py")
                    .read_text().splitlines() if line.startswith("SPARE_KB =")))

# Starts a board as app.py does, up to the main loop, and prints the free heap; with a
# command key, then times CHECKS signature checks as the main loop runs them.
SCRIPT = START + r"""
print("FREE", hw.free_heap())
if cfg.get("cmd_key"):
    # One command at a time from a file, as they would come: a list of them would hold heap.
    parse = check = 0
    spare = loop.spare
    loop.spare = None
    with open("payloads.txt", "rb") as f:
        for p in f:
            p = p.strip()
            t0 = time.ticks_us()
            json.loads(p)
            parse += time.ticks_diff(time.ticks_us(), t0)
            gc.collect()
            t0 = time.ticks_us()
            from urbanpulse_fw import cmdauth
            cmdauth.check(cfg, loop.cmd_key, json.loads(p), p)
            for m in ("cmdauth", "sha512", "ed25519", "bootcount"):
                hw.unload(m)
            del cmdauth
            check += time.ticks_diff(time.ticks_us(), t0)
    print("TIMES", parse, check)
    last = p
    # The least free heap a check needs: fill the heap, then let go of LEAST bytes.
    fill = []
    least = None
    for room in range(2048, 16384, 256):
        gc.collect()
        fill = []
        try:
            while gc.mem_free() > room + 1024:
                fill.append(bytearray(1000))
            while gc.mem_free() > room:
                fill.append(bytearray(16))
            p = last.replace(b'"n":', b'"n":9')
            from urbanpulse_fw import cmdauth
            try:
                cmdauth.check(cfg, loop.cmd_key, json.loads(p), p)
            except ValueError:
                pass  # the signature no longer matches: checked all the same
            least = room
        except MemoryError:
            pass
        for m in ("cmdauth", "sha512", "ed25519", "bootcount"):
            hw.unload(m)
        fill = None
        if least is not None:
            break
    print("LEAST", least)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="air")
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--heap", default="64k", help="the board's RAM (fleet.HEAP)")
    args = parser.parse_args()
    micropython = find_tool("micropython")
    if not micropython:
        print("micropython is not installed (make setup)", file=sys.stderr)
        return 2
    key = Ed25519PrivateKey.generate()
    device = "bench-01"
    n0 = time.time_ns() // 1_000_000
    payloads = [sign_command({"id": f"c-{i}", "op": "identify", "seconds": 1, "device": device,
                              "n": n0 + i, "exp": int(time.time()) + 3600}, key)
                for i in range(args.checks)]
    config: dict[str, object] = {"device_id": device, "kind": args.kind, "wifi": {"ssid": "x"},
                                 "mqtt": {"host": "127.0.0.1", "port": 1},
                                 "sample_interval_s": 1, "max_buffer_bytes": 2048}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = build_bundle(tmp / "fw", host=True)
        plain = run_board(micropython, tmp, bundle, config, args.heap, SCRIPT)
        signed = run_board(micropython, tmp, bundle, {**config, "cmd_key": public_hex(key)},
                           args.heap, SCRIPT,
                           {"payloads.txt": b"".join(p + b"\n" for p in payloads)})
    parse, check = signed["TIMES"]
    n = args.checks
    print(f"kind {args.kind}, {args.heap} heap, {n} signed commands of {len(payloads[0])} bytes")
    print(f"one signature check:          {check / n / 1000:.1f} ms = {check / max(parse, 1):.0f}"
          " x parsing the command's JSON")
    print(f"heap free after start:        {plain['FREE'][0]} bytes without a command key, "
          f"{signed['FREE'][0]} with: {plain['FREE'][0] - signed['FREE'][0]} held for good, "
          f"of which {SPARE_KB * 1024} kept free for the checks")
    least = signed["LEAST"][0]
    print("least free heap for a check:  " + (f"{least} bytes" if least > 0 else "not found"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
