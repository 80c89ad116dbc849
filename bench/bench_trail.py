"""What the tamper-evident trail (CONTRACT.md v2) costs the gateway, in one run:

1. Verification per message: the telemetry handler on sealed messages (MAC, chain, archive)
   as a ratio to the same readings in version 1 (the baseline, measured in the same run).
2. Archive write throughput: payloads appended and synced (fsync) once per batch of 5000, as
   the gateway does before each acknowledgement.
3. One day of a city of N boards, one message a minute each: the hourly receipts, the export
   of the day (no KPIs: they come from InfluxDB) and its verification, with their rates.

    .venv/bin/python bench/bench_trail.py [--boards 1000] [--messages 20000]

No services: the handler, the archive and the export run in-process on files in /tmp.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gateway"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from urbanpulse.contract.messages import TelemetryValidator  # noqa: E402
from urbanpulse.contract.sealed import digest, genesis, seal  # noqa: E402
from urbanpulse.opendata.export import ExportRequest, export  # noqa: E402
from urbanpulse.opendata.verify import verify  # noqa: E402
from urbanpulse.registry.devices import Device, Registry  # noqa: E402
from urbanpulse.service.archive import CLOSED, Archive, Archived, encode, segment_name  # noqa: E402
from urbanpulse.service.dedup import RecentMessages  # noqa: E402
from urbanpulse.service.logs import RateLimitedLog  # noqa: E402
from urbanpulse.service.receipts import ReceiptMaker  # noqa: E402
from urbanpulse.service.stats import Stats  # noqa: E402
from urbanpulse.service.telemetry import MessageHandler  # noqa: E402

HOUR = 3_600_000
KEY = bytes(range(32))


class Chain:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.seq = 0
        self.prev = genesis(device_id)

    def body(self, t: int, value: float, v: int = 2) -> bytes:
        text = f'{{"v":{v},"boot":1,"seq":{self.seq},"samples":[{{"t":{t},"pm25":{value},' \
               f'"pm10":{value + 5},"temperature":21.5}}]'
        self.seq += 1
        return (text + "}").encode() if v == 1 else (text + f',"prev":"{self.prev.hex()}"}}'
                                                     ).encode()

    def sealed(self, t: int, value: float) -> bytes:
        payload = seal(self.body(t, value), KEY)
        self.prev = digest(payload)
        return payload


def handler_rates(tmp: Path, n: int, boards: int) -> tuple[float, float]:
    ids = [f"air-b-{i:04d}" for i in range(boards)]
    registry = Registry([Device(device_id=d, kind="air", district=f"d{i % 8}")
                         for i, d in enumerate(ids)])
    now = time.time_ns() // 1_000_000
    keys = {d: KEY for d in ids}

    def key_store() -> dict[str, bytes]:
        return keys

    rates = []
    for sealed in (False, True):
        chains = {d: Chain(d) for d in ids}
        work = []
        for i in range(n):
            c = chains[ids[i % boards]]
            t = now - 3_600_000 + i
            work.append((f"city/{c.device_id}/telemetry",
                         c.sealed(t, 12.5) if sealed else c.body(t, 12.5, v=1)))
        archive = Archive(tmp / f"archive-{sealed}", "main", "always")
        handler = MessageHandler("city", lambda: registry, TelemetryValidator(), Stats(),
                                 RateLimitedLog(logging.getLogger("bench"), 60),
                                 RecentMessages(), keys=key_store, archive=archive)
        start = time.perf_counter()
        for i, (topic, payload) in enumerate(work):
            handler.handle(topic, payload)
            if i % 5000 == 4999:
                archive.sync()  # the batch's acknowledgement
        archive.sync()
        rates.append(n / (time.perf_counter() - start))
        archive.close()
    return rates[0], rates[1]


def archive_rate(tmp: Path, n: int) -> tuple[float, int]:
    archive = Archive(tmp / "archive-write", "main", "always")
    payload = Chain("air-b-0001").sealed(time.time_ns() // 1_000_000, 12.5)
    start = time.perf_counter()
    for i in range(n):
        archive.append("air-b-0001", "north", 1, i, payload)
        if i % 5000 == 4999:
            archive.sync()
    archive.sync()
    elapsed = time.perf_counter() - start
    archive.close()
    return n / elapsed, len(payload)


def city_day(tmp: Path, boards: int) -> None:
    root = tmp / "archive-day"
    day = (time.time_ns() // 1_000_000 // (24 * HOUR) - 2) * 24 * HOUR
    chains = [Chain(f"air-b-{i:04d}") for i in range(boards)]
    start = time.perf_counter()
    total = 0
    (root / "main").mkdir(parents=True)
    for h in range(24):
        hour = day + h * HOUR
        with (root / "main" / (segment_name(hour) + CLOSED)).open("wb") as f:
            for minute in range(60):
                t = hour + minute * 60_000
                for i, c in enumerate(chains):
                    f.write(encode(Archived(t + 900, c.device_id, f"d{i % 8}", 1, c.seq,
                                            c.sealed(t, float(minute % 40)))))
                    total += 1
    made = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (root / "main").iterdir())
    print(f"city day: {boards} boards x 1440 messages = {total} sealed payloads, "
          f"{size / 1e6:.0f} MB of archive (made in {made:.0f} s)")
    start = time.perf_counter()
    ReceiptMaker(root, Ed25519PrivateKey.generate(), "city", lambda t, p: True,
                 lambda lines: True).tick(day + 3 * 24 * HOUR)
    took = time.perf_counter() - start
    print(f"  receipts (24 hours x 8 districts): {took:.1f} s, {total / took:,.0f} payloads/s")
    out = tmp / "export-day"
    start = time.perf_counter()
    summary = export(ExportRequest(archive=root, start_ms=day, end_ms=day + 24 * HOUR, out=out))
    took = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"  export: {took:.1f} s, {summary.payloads / took:,.0f} payloads/s, "
          f"{size / 1e6:.0f} MB written")
    start = time.perf_counter()
    report = verify(out)
    took = time.perf_counter() - start
    print(f"  verify: {took:.1f} s, {report.payloads / took:,.0f} payloads/s "
          f"({report.summary()})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-trail-"))
    try:
        v1, v2 = handler_rates(tmp, args.messages, 100)
        print(f"handler: version 1 {v1:,.0f} msg/s, sealed {v2:,.0f} msg/s (MAC, chain, "
              f"archive): ratio {v2 / v1:.2f}")
        rate, size = archive_rate(tmp, 200_000)
        print(f"archive: {rate:,.0f} payloads/s appended and synced per 5000 "
              f"({rate * size / 1e6:.0f} MB/s of {size}-byte payloads)")
        city_day(tmp, args.boards)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
