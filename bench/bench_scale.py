"""The gateway's memory with a city of 10 000 boards: RSS of the parent and its workers.

Run: .venv/bin/python bench/bench_scale.py [--boards 10000] [--minutes 10] [--workers N|auto]

A private Mosquitto and InfluxDB (urbanpulse.devtools.stack) and the gateway as a process
(`urbanpulse gateway run`) with a registry of `--boards` boards. Publisher processes play
`--minutes` minutes of the city in fast motion: every board says it is online (retained
status), sends a telemetry message per simulated minute and a health report every five.
Once every sample is stored, prints the resident memory (VmRSS, and its peak VmHWM) of the
gateway's processes and their sum, and the sum of their PSS (shared pages counted once),
beside the baseline of the same run: the same gateway at rest with no board registered (and
the ratio of the two). Target: <= 150 MB in all.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_drain import GatewayConsumer

from support.services import influx_query, start_services, stop_services

MINUTE_MS = 60_000


def board_ids(boards: int) -> list[str]:
    return [f"air-city-{i:05d}" for i in range(boards)]


def _publish(port: int, ids: list[str], minutes: int, base_ms: int, name: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for device in ids:
        infos.append(client.publish(f"city/{device}/status", json.dumps(
            {"state": "online", "fw": "0.1.0", "boot": 1}), qos=1, retain=True))
    for minute in range(minutes):
        t = base_ms + minute * MINUTE_MS
        for device in ids:
            infos.append(client.publish(f"city/{device}/telemetry", json.dumps(
                {"v": 1, "boot": 1, "seq": minute, "samples": [
                    {"t": t, "pm25": 12.5, "temperature": 18.5, "humidity": 60.0}]}), qos=1))
            if minute % 5 == 0:
                infos.append(client.publish(f"city/{device}/health", json.dumps(
                    {"t": t, "heap_free": 40000, "uptime": minute * 60, "rssi": -60}), qos=1))
    for info in infos:
        info.wait_for_publish(600)
    client.loop_stop()
    client.disconnect()


def rss(pid: int) -> tuple[int, int, int]:
    """(VmRSS, VmHWM, Pss) of a process, in bytes. Pss shares each page among the processes
    that map it (the interpreter's and libraries' code): what the processes cost together."""
    fields = {}
    for name in ("status", "smaps_rollup"):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Pss"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"], fields["Pss"]


def gateway_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-ww", "-o", "pid=", "--ppid", str(parent)],
                         capture_output=True, text=True, check=False).stdout
    return [parent, *(int(p) for p in out.split())]


def total_rss(parent: int) -> int:
    return sum(rss(pid)[0] for pid in gateway_pids(parent))


def memory(parent: int) -> str:
    parts = [(pid, *rss(pid)) for pid in gateway_pids(parent)]
    total = sum(r for _, r, _, _ in parts)
    pss = sum(p for _, _, _, p in parts)
    each = ", ".join(f"pid {pid} {r / 2**20:.0f} MB (peak {h / 2**20:.0f})"
                     for pid, r, h, _ in parts)
    return f"RSS {total / 2**20:.0f} MB in all (PSS {pss / 2**20:.0f} MB): {each}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--workers", default="1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        services = start_services(root / "stack")
        try:
            (root / "idle").mkdir()
            idle = GatewayConsumer(root / "idle", services, 0, args.workers)
            idle.start()
            time.sleep(5)
            assert idle.process is not None
            print(f"baseline (no boards, at rest): {memory(idle.process.pid)}", flush=True)
            at_rest = total_rss(idle.process.pid)
            idle.stop()
            (root / "city").mkdir()
            gateway = GatewayConsumer(root / "city", services, 0, args.workers)
            rows = ["device_id,kind,district,site,lat,lon,interval_s"]
            rows += [f"{d},air,d{i % 20},,,,60" for i, d in enumerate(board_ids(args.boards))]
            (root / "city" / "devices.csv").write_text("\n".join(rows) + "\n")
            gateway.start()
            time.sleep(2)
            ids = board_ids(args.boards)
            base_ms = time.time_ns() // 1_000_000 - args.minutes * MINUTE_MS
            ctx = multiprocessing.get_context("spawn")
            procs = [ctx.Process(target=_publish, args=(services.mqtt_port, ids[k::4],
                                                        args.minutes, base_ms, f"scale-{k}"))
                     for k in range(4)]
            started = time.monotonic()
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            want = args.boards * args.minutes
            while time.monotonic() - started < 900:
                series = influx_query(services, "SELECT count(pm25) FROM air_quality")
                if series and series[0]["values"][0][1] >= want:
                    break
                time.sleep(1)
            time.sleep(5)  # liveness, stats and KPIs at work on the whole city
            assert gateway.process is not None
            print(f"{args.boards} boards, {args.minutes} simulated minutes "
                  f"({want} telemetry messages) in {time.monotonic() - started:.0f} s; "
                  f"gateway workers = {args.workers}: {memory(gateway.process.pid)}", flush=True)
            print(f"ratio RSS with the city / at rest: "
                  f"{total_rss(gateway.process.pid) / at_rest:.2f}", flush=True)
            gateway.stop()
        finally:
            stop_services(services)


if __name__ == "__main__":
    main()
