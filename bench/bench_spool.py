"""What the spool's framing, CRCs and bookkeeping cost over writing the same bytes plainly.

Run: .venv/bin/python bench/bench_spool.py [--batches 400] [--points 500] [--dir DIR]
For each fsync policy: appends the batches to a spool and replays them (peek + pop), and, as
the baseline measured in the same run, writes the same bytes to a plain file with the same
sync policy (fsync per batch for "always", once at the end otherwise) and reads them back.
Best of 3 interleaved runs each. Prints points per second for both and their ratio (spool /
plain; 1.0 = no overhead). The spool also decodes each replayed batch back into lines, which
the plain read does not. The ratio is what to compare across machines and commits; put --dir
on the disk you deploy on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from urbanpulse.service.spool import FsyncPolicy, Spool


def make_batches(count: int, points: int) -> list[list[str]]:
    t0 = 1763700000000
    return [
        [
            f"air_quality,device_id=air-{b % 50:03d},district=north,kind=air,site=Town\\ Hall "
            f"pm25={b % 90 + 0.5},pm10={p % 70 + 0.25},temperature=21.{p % 10} "
            f"{t0 + b * points + p}"
            for p in range(points)
        ]
        for b in range(count)
    ]


def bench_spool(root: Path, batches: list[list[str]], fsync: FsyncPolicy) -> float:
    path = root / f"spool-{fsync}"
    start = time.perf_counter()
    spool = Spool(path, segment_bytes=16 << 20, max_bytes=8 << 30, fsync=fsync)
    for lines in batches:
        spool.append(lines)
    replayed = 0
    while (record := spool.peek()) is not None:
        replayed += len(record.lines)
        spool.pop(record)
    spool.close()
    elapsed = time.perf_counter() - start
    assert replayed == sum(len(b) for b in batches)
    shutil.rmtree(path)
    return elapsed


def bench_plain(root: Path, batches: list[list[str]], fsync: FsyncPolicy) -> float:
    path = root / f"plain-{fsync}"
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    for lines in batches:
        os.write(fd, ("\n".join(lines) + "\n").encode())
        if fsync == "always":
            os.fsync(fd)
    if fsync != "never":
        os.fsync(fd)
    os.close(fd)
    read = 0
    with path.open("rb") as f:
        for lines in batches:  # read back batch by batch, as a replay would
            read += len(f.read(len("\n".join(lines).encode()) + 1))
    elapsed = time.perf_counter() - start
    assert read == path.stat().st_size
    path.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    batches = make_batches(args.batches, args.points)
    total = args.batches * args.points
    size = sum(len("\n".join(b)) for b in batches)
    root = Path(tempfile.mkdtemp(prefix="bench-spool-", dir=args.dir))
    print(f"{args.batches} batches of {args.points} points, {size / 1e6:.1f} MB, in {root}")
    try:
        for fsync in ("always", "interval", "never"):
            # Best of 3, interleaved, so that neither gets the warmer disk cache.
            plain = spooled = float("inf")
            for _ in range(3):
                plain = min(plain, bench_plain(root, batches, fsync))
                spooled = min(spooled, bench_spool(root, batches, fsync))
            print(
                f"fsync={fsync:8s} plain file {total / plain:10.0f} points/s, "
                f"spool append+replay {total / spooled:10.0f} points/s, "
                f"ratio spool/plain {plain / spooled:.2f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
