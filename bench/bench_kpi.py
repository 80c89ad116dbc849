"""What a KPI run costs for a city, relative to just reading the raw data it covers.

Run: .venv/bin/python bench/bench_kpi.py [boards] [interval_s]
Starts a private stack (urbanpulse.devtools.stack) in a temporary folder, registers ``boards``
boards (default 300) spread over every kind and 6 districts, and stores 27 hours of telemetry,
one sample per board every ``interval_s`` (default 60). Baseline, in the same run: one
``SELECT *`` per raw measurement over the same time range a run covers (the last 3 hours and
the local days they touch), i.e. the cost of only fetching the data. Then a full KPI run.
Prints both times, the points written and their ratio.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from services import influx_query, influx_write, start_services, stop_services

from urbanpulse.config import Settings
from urbanpulse.contract.lineprotocol import FieldValue, encode_point
from urbanpulse.kpi.engine import KpiEngine
from urbanpulse.kpi.windows import HOUR_MS, local_day_window, local_days_touching
from urbanpulse.registry.devices import Device, Registry

KINDS = ("air", "noise", "traffic", "parking", "streetlight", "water")
MEASUREMENT = {"air": "air_quality", "noise": "noise", "traffic": "traffic",
               "parking": "parking", "streetlight": "streetlight", "water": "water"}


def sample(kind: str, rng: random.Random, t: int, state: dict[str, float]) -> dict[str, FieldValue]:
    if kind == "air":
        return {"pm25": rng.uniform(3, 40), "pm10": rng.uniform(8, 60)}
    if kind == "noise":
        return {"laeq": rng.uniform(40, 75), "lamax": rng.uniform(70, 90)}
    if kind == "traffic":
        return {"vehicles": float(rng.randint(0, 30)), "period_s": 60.0}
    if kind == "parking":
        return {"occupied": rng.random() < 0.6}
    if kind == "streetlight":
        on = (t // HOUR_MS) % 24 in (0, 1, 2, 3, 4, 19, 20, 21, 22, 23)
        state["energy"] = state.get("energy", 0.0) + (1.5 if on else 0.0)
        return {"lamp_on": on, "energy": state["energy"]}
    return {"water_level": 120 + rng.uniform(-5, 5)}


def main() -> None:
    boards = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    interval_s = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    rng = random.Random(1)
    devices = [Device(device_id=f"{KINDS[i % 6][:4]}-{i:04d}", kind=KINDS[i % 6],
                      district=f"d{i % 6}", site=f"s{i % 40}", interval_s=interval_s)
               for i in range(boards)]
    registry = Registry(devices)
    now = time.time_ns() // 1_000_000
    start = now - 27 * HOUR_MS
    with tempfile.TemporaryDirectory() as tmp:
        services = start_services(Path(tmp) / "stack")
        try:
            lines: list[str] = []
            written = 0
            for d in devices:
                state: dict[str, float] = {}
                for t in range(start, now, interval_s * 1000):
                    lines.append(encode_point(MEASUREMENT[d.kind], d.tags,
                                              sample(d.kind, rng, t, state), t))
                    if len(lines) >= 20_000:
                        influx_write(services, "\n".join(lines))
                        written += len(lines)
                        lines = []
            influx_write(services, "\n".join(lines))
            written += len(lines)
            settings = Settings(influx={"url": services.influx_url,
                                        "database": services.database})
            engine = KpiEngine(settings, lambda: registry, clock=lambda: now)
            # The raw range a run covers: the local days of the lookback (they contain it).
            days = local_days_touching(range(now - 3 * HOUR_MS, now, HOUR_MS), engine.tz)
            lo = local_day_window(days[0], engine.tz).start
            base_start = time.perf_counter()
            rows = 0
            for m in MEASUREMENT.values():
                for series in influx_query(
                    services, f'SELECT * FROM "{m}" WHERE time >= {lo}ms AND time <= {now}ms'
                ):
                    rows += len(series["values"])
            baseline = time.perf_counter() - base_start
            report = engine.run()
            again = engine.run()
        finally:
            stop_services(services)
    print(f"{boards} boards, one sample every {interval_s} s, {written} raw points stored")
    print(f"baseline (read {rows} raw rows of the run's range): {baseline:6.2f} s")
    print(f"KPI run ({report.hours} hours, {report.days} days): {report.seconds:6.2f} s, "
          f"{report.points} KPI points; second run {again.seconds:6.2f} s")
    print(f"ratio run/baseline: {report.seconds / baseline:.2f}")


if __name__ == "__main__":
    main()
