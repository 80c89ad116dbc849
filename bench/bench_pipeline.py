"""How much the gateway's per-message work costs, relative to just parsing the JSON.

Run: .venv/bin/python bench/bench_pipeline.py
Prints messages per second for a bare json.loads (the baseline, measured in this same run) and
for the full handler (topic check, registry lookup, contract validation, line protocol), and
their ratio. The ratio is what to compare across machines and commits.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from urbanpulse.contract.messages import TelemetryValidator
from urbanpulse.registry.devices import Device, Registry
from urbanpulse.service.logs import RateLimitedLog
from urbanpulse.service.stats import Stats
from urbanpulse.service.telemetry import MessageHandler


def rate(work: Callable[[], object], seconds: float = 1.5) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            work()
        count += 200
    return count / elapsed


def main() -> None:
    now = time.time_ns() // 1_000_000
    registry = Registry([Device(device_id="air-north-01", kind="air", district="north",
                                site="Town Hall")])
    handler = MessageHandler("city", lambda: registry, TelemetryValidator(), Stats(),
                             RateLimitedLog(logging.getLogger("bench"), 60))
    for samples in (1, 10, 100):
        payload = json.dumps({"v": 1, "boot": 1, "seq": 0, "samples": [
            {"t": now - i, "pm25": 12.4, "pm10": 20.0, "temperature": 21.3, "humidity": 48.0}
            for i in range(samples)]}).encode()
        base = rate(lambda p=payload: json.loads(p))
        full = rate(lambda p=payload: handler.handle("city/air-north-01/telemetry", p))
        print(f"{samples:3d} samples/message: json.loads {base:9.0f} msg/s, "
              f"handler {full:9.0f} msg/s ({full * samples:9.0f} samples/s), "
              f"ratio handler/baseline {full / base:.2f}")


if __name__ == "__main__":
    main()
