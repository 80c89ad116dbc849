"""From publish to queryable: the gateway's latency under a steady load, p50 and p99.

Run: .venv/bin/python bench/bench_latency.py [--rate 5000] [--seconds 60] [--workers N|auto]

A private Mosquitto and InfluxDB (urbanpulse.devtools.stack), the gateway as a process
(`urbanpulse gateway run`), and a load of `--rate` contract-v1 messages/s (1-5 samples each)
from 200 boards in publisher processes (tests/support/loadgen.py) for `--seconds`: the issue
asks for half the measured maximum (bench_drain.py) for 60 s. Meanwhile a probe board
publishes one message every 100 ms whose sample time is its publish time, and InfluxDB is
asked every 20 ms which probe samples it holds (until 30 s after the last one): the
latency of a probe is when it was first
seen minus when it was published (20 ms resolution). Prints p50, p99 and the worst, the
load's rate as achieved, and the baseline of the same run: the probe alone, with no load
(and the ratio of the two p99s). Target: p99 <= 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_drain import GatewayConsumer

from support.loadgen import Load, plan_devices
from support.loadgen import registry_csv as load_registry
from support.services import (
    Services,
    influx_drop_and_create,
    influx_query,
    start_services,
    stop_services,
)

PROBE = "air-probe-0001"
PROBE_EVERY_S = 0.1
POLL_EVERY_S = 0.02


def probe_latencies(services: Services, seconds: float) -> list[float]:
    """Publish the probe for `seconds`, polling InfluxDB; the latencies in seconds."""
    published: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    errors: list[str] = []

    def poll() -> None:
        while not done.is_set() or len(seen) < len(published):
            try:
                rows = influx_query(services, "SELECT pm25 FROM air_quality WHERE "
                                    f"device_id = '{PROBE}' AND time > now() - 2m")
            except Exception as exc:  # a slow answer under load: ask again
                errors.append(str(exc))
                continue
            now = time.time()
            for t, _ in rows[0]["values"] if rows else []:
                if int(t) in published:  # not an earlier call's probe
                    seen.setdefault(int(t), now)
            if done.is_set() and time.time() - done_at[0] > 30:
                return  # the rest is lost: reported as missing
            time.sleep(POLL_EVERY_S)

    done_at = [0.0]
    poller = threading.Thread(target=poll, daemon=True)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="latency-probe")
    client.connect("127.0.0.1", services.mqtt_port)
    client.loop_start()
    poller.start()
    seq = 0
    infos = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.time()
        t = int(now * 1000)
        published[t] = now
        infos.append(client.publish(f"city/{PROBE}/telemetry", json.dumps(
            {"v": 1, "boot": 1, "seq": seq, "samples": [{"t": t, "pm25": 1.0}]}), qos=1))
        seq += 1
        time.sleep(PROBE_EVERY_S)
    for info in infos:  # every probe taken by the broker before the count
        info.wait_for_publish(30)
    done_at[0] = time.time()
    done.set()
    poller.join()
    client.loop_stop()
    client.disconnect()
    if errors:
        print(f"  {len(errors)} polls failed, e.g. {errors[0][:200]}", flush=True)
    missing = sorted(set(published) - set(seen))
    if missing:
        print(f"  {len(missing)} probe samples not stored 30 s after the last", flush=True)
    return sorted(seen[t] - published[t] for t in published if t in seen)


def describe(latencies: list[float]) -> str:
    if not latencies:
        return "no probe stored"
    q = statistics.quantiles(latencies, n=100)
    return (f"p50 {q[49] * 1000:6.0f} ms, p99 {q[98] * 1000:6.0f} ms, "
            f"worst {latencies[-1] * 1000:6.0f} ms ({len(latencies)} probes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", default="1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        services = start_services(root / "stack")
        devices = plan_devices(200)
        gateway = GatewayConsumer(root, services, 0, args.workers)
        (root / "devices.csv").write_text(
            load_registry(devices) + f"{PROBE},air,north,,,,60\n")
        try:
            influx_drop_and_create(services)
            gateway.start()
            time.sleep(2)
            print(f"probe every {PROBE_EVERY_S * 1000:.0f} ms, InfluxDB polled every "
                  f"{POLL_EVERY_S * 1000:.0f} ms; gateway workers = {args.workers}", flush=True)
            idle = probe_latencies(services, 10)
            print(f"no load:            {describe(idle)}", flush=True)
            load = Load(services.mqtt_host, services.mqtt_port, devices, rate=args.rate,
                        duration_s=args.seconds + 5, publishers=3, name="latency-load")
            load.start()
            time.sleep(3)  # past the start
            under = probe_latencies(services, args.seconds)
            result = load.wait()
            print(f"load {result.rate:6.0f} msg/s: {describe(under)}", flush=True)
            if idle and under:
                ratio = statistics.quantiles(under, n=100)[98] / statistics.quantiles(
                    idle, n=100)[98]
                print(f"ratio p99 under load / p99 with no load: {ratio:.2f}", flush=True)
        finally:
            gateway.stop()
            stop_services(services)


if __name__ == "__main__":
    main()
