"""How much the gateway's per-message work costs, relative to just parsing the JSON.

Run: .venv/bin/python bench/bench_pipeline.py
Prints messages per second, all measured in this same run, for: a bare json.loads (the
baseline); the full validator with its line protocol (contract/messages.py, the path every
message took before the hot path, and the one a message with a rejected sample still takes);
and the handler (topic check, registry lookup, the hot path contract/fastpath.py, line
protocol, redelivery check). Ratios: handler/baseline, and the hot path's gain, handler/full.
The ratios are what to compare across machines and commits.
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
from urbanpulse.service.telemetry import MessageHandler, telemetry_points


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
    device = registry.get("air-north-01")
    assert device is not None
    validator = TelemetryValidator()
    handler = MessageHandler("city", lambda: registry, validator, Stats(),
                             RateLimitedLog(logging.getLogger("bench"), 60))
    for samples in (1, 5, 10, 100):
        payload = json.dumps({"v": 1, "boot": 1, "seq": 0, "samples": [
            {"t": now - i, "pm25": 12.4, "pm10": 20.0, "temperature": 21.3, "humidity": 48.0}
            for i in range(samples)]}).encode()
        base = rate(lambda p=payload: json.loads(p))
        full = rate(lambda p=payload: telemetry_points(device, validator.parse(p)))
        hot = rate(lambda p=payload: handler.handle("city/air-north-01/telemetry", p))
        print(f"{samples:3d} samples/message: json.loads {base:8.0f} msg/s, "
              f"full validator {full:8.0f} msg/s, handler {hot:8.0f} msg/s "
              f"({hot * samples:8.0f} samples/s); handler/baseline {hot / base:.2f}, "
              f"handler/full {hot / full:.2f}")


if __name__ == "__main__":
    main()
