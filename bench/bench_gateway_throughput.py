"""End-to-end gateway throughput against real Mosquitto and InfluxDB, relative to a baseline.

Run: .venv/bin/python bench/bench_gateway_throughput.py [messages] [publishers]
Starts a private stack (urbanpulse.devtools.stack) in a temporary folder. Baseline, in the same run:
a plain paho subscriber that acknowledges on receipt and stores nothing. Then the gateway,
which validates, writes to InfluxDB and acknowledges only after storing. Prints both rates
and their ratio; publishers are separate processes (one Python publisher tops out near
10k messages/s).
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gateway_harness import (
    REGISTRY_CSV,
    count_points,
    gateway_settings,
    running_gateway,
    wait_until,
)
from services import influx_drop_and_create, start_services, stop_services

TOPIC = "city/noise-centre-01/telemetry"


def publish(port: int, count: int, first_seq: int, base_ms: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{first_seq}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for i in range(first_seq, first_seq + count):
        payload = json.dumps({"v": 1, "boot": 1, "seq": i,
                              "samples": [{"t": base_ms + i, "laeq": 50.0}]})
        infos.append(client.publish(TOPIC, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def run_publishers(port: int, total: int, publishers: int) -> None:
    base_ms = time.time_ns() // 1_000_000 - 3_600_000
    share = total // publishers
    procs = [multiprocessing.Process(target=publish, args=(port, share, k * share, base_ms))
             for k in range(publishers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def baseline(port: int, total: int, publishers: int) -> float:
    received = 0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received >= total:
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline",
                      protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.subscribe(TOPIC, qos=1)
    sub.loop_start()
    subscribed.wait(10)
    start = time.monotonic()
    run_publishers(port, total, publishers)
    done.wait(120)
    elapsed = time.monotonic() - start
    sub.disconnect()
    sub.loop_stop()
    return received / elapsed


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    publishers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    with tempfile.TemporaryDirectory() as tmp:
        services = start_services(Path(tmp) / "stack")
        try:
            registry = Path(tmp) / "devices.csv"
            registry.write_text(REGISTRY_CSV)
            base = baseline(services.mqtt_port, total, publishers)
            influx_drop_and_create(services)
            settings = gateway_settings(services, registry, "bench-gateway")
            with running_gateway(settings):
                start = time.monotonic()
                run_publishers(services.mqtt_port, total, publishers)
                wait_until(lambda: count_points(services, "noise", "laeq") >= total, 300,
                           "every message stored")
                gateway_rate = total / (time.monotonic() - start)
        finally:
            stop_services(services)
    print(f"{total} messages from {publishers} publishers")
    print(f"baseline (subscriber, ack on receipt): {base:8.0f} msg/s")
    print(f"gateway (validate, store, then ack):   {gateway_rate:8.0f} msg/s")
    print(f"ratio gateway/baseline: {gateway_rate / base:.2f}")


if __name__ == "__main__":
    main()
