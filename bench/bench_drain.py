"""Draining a broker's backlog into InfluxDB: the gateway against Node-RED's best flow, one run.

Run: .venv/bin/python bench/bench_drain.py [--messages 50000] [--boards 100] [--workers N|auto]
                                           [--samples 1,5] [--no-node-red]

A private Mosquitto and InfluxDB (urbanpulse.devtools.stack) in a temporary folder. For each
message size (1 and 5 samples per message) and each consumer:
1. the consumer starts once and stops, leaving its persistent session (QoS 1) on the broker;
2. publishers in several processes put the backlog on the broker (`--messages` contract-v1
   messages from `--boards` air boards, every one acknowledged by the broker);
3. the consumer starts again; timed from its connection (the line it logs) until every
   sample is queryable in InfluxDB (a count every 50 ms).
Prints messages/s for both, their ratio (gateway/Node-RED) and the samples lost (published
but not stored). The issue's targets: >= 1.5 with `workers = auto`, >= 1.0 with one worker.

The consumers:
- the gateway (`urbanpulse gateway run`): validates every sample against the contract, tags
  it from the registry, and acknowledges a message only once its points are stored;
- Node-RED 4's best flow for the job: MQTT in (QoS 1, persistent session, kept subscribed
  while it is stopped: autoUnsubscribe off) -> json -> a
  function turning samples into points (tags from a table, as the registry gives them) ->
  join 100 messages or 1 s -> node-red-contrib-influxdb's batch node. It validates nothing
  and acknowledges on receipt, so it is the floor, not the target. It is installed by this
  bench with npm into its own folder (~/.cache/urbanpulse-bench/node-red), never by
  `make setup`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.services import (
    Services,
    influx_drop_and_create,
    influx_query,
    start_services,
    stop_services,
)

NODE_RED_DIR = Path.home() / ".cache" / "urbanpulse-bench" / "node-red"
NODE_RED_PACKAGES = ("node-red@4", "node-red-contrib-influxdb@0.7")
DISTRICTS = ("north", "centre", "south")


def board_ids(boards: int) -> list[str]:
    return [f"air-drain-{i:04d}" for i in range(boards)]


def registry_csv(boards: int) -> str:
    rows = ["device_id,kind,district,site,lat,lon,interval_s"]
    rows += [f"{d},air,{DISTRICTS[i % 3]},,,,60" for i, d in enumerate(board_ids(boards))]
    return "\n".join(rows) + "\n"


# -- the backlog -------------------------------------------------------------------------------
def _publish(port: int, boards: list[str], messages: int, samples: int, base_ms: int,
             first: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"drain-pub-{first}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for k in range(messages):
        seq = first + k
        device = boards[seq % len(boards)]
        t0 = base_ms + seq * samples
        payload = json.dumps({"v": 1, "boot": 1, "seq": seq, "samples": [
            {"t": t0 + i, "pm25": (seq % 1999) / 10, "temperature": 18.5, "humidity": 60.0}
            for i in range(samples)]}, separators=(",", ":"))
        infos.append(client.publish(f"city/{device}/telemetry", payload, qos=1))
    for info in infos:
        info.wait_for_publish(300)
    client.disconnect()
    client.loop_stop()


def publish_backlog(port: int, boards: int, messages: int, samples: int,
                    publishers: int = 4) -> None:
    """Every message acknowledged by the broker (QoS 1) before this returns. Each board's
    samples get their own milliseconds: none replaces another in InfluxDB."""
    base_ms = time.time_ns() // 1_000_000 - 3_600_000
    ids = board_ids(boards)
    share = messages // publishers
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_publish, args=(port, ids, share, samples, base_ms, k * share))
             for k in range(publishers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"publisher {p.name} failed ({p.exitcode})")


# -- the consumers -----------------------------------------------------------------------------
class Consumer:
    """A process that drains the backlog; ``marker`` in its output: it is connected."""

    name = ""
    marker = ""
    mqtt5 = False

    def __init__(self, work: Path) -> None:
        self.work = work
        self.client_id = f"drain-{self.name}-{work.name}"
        self.log = work / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    markers = 1  # how many times the marker shows that it is all connected

    def start(self) -> float:
        """Start; returns the monotonic time its (first) connection was logged, once all its
        connections are."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.work)
        deadline = time.monotonic() + 120
        first = None
        while time.monotonic() < deadline:
            with self.log.open("rb") as f:
                f.seek(offset)
                seen = f.read().count(self.marker.encode())
            if seen and first is None:
                first = time.monotonic()
            if first is not None and seen >= self.markers:
                return first
            if self.process.poll() is not None:
                break
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not connect:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def forget_session(self, port: int) -> None:
        """Its session and whatever is queued in it gone from the broker (a clean connect)."""
        if self.mqtt5:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", port, clean_start=True)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 clean_session=True)
            client.connect("127.0.0.1", port)
        client.loop_start()
        time.sleep(0.3)
        client.disconnect()
        client.loop_stop()


class GatewayConsumer(Consumer):
    name = "gateway"
    marker = "connected to 127.0.0.1"
    mqtt5 = True

    def __init__(self, work: Path, services: Services, boards: int, workers: str,
                 protocol: str = "5") -> None:
        super().__init__(work)
        registry = work / "devices.csv"
        registry.write_text(registry_csv(boards))
        service: dict[str, Any] = {}
        if workers != "1":
            service["workers"] = workers if workers == "auto" else int(workers)
        config: dict[str, Any] = {
            "mqtt": {"host": "127.0.0.1", "port": services.mqtt_port,
                     "client_id": self.client_id, "protocol": protocol},
            "influx": {"url": services.influx_url, "database": services.database},
            "registry": {"path": str(registry)},
            "spool": {"path": str(work / "spool")},
            "metrics": {"port": 0},
        }
        if service:
            config["service"] = service
        self.mqtt5 = protocol == "5"
        if workers != "1":  # timed from the first worker's connection, ready once all are
            self.marker = f"as {self.client_id}-w"
            self.markers = (os.cpu_count() or 1) if workers == "auto" else int(workers)
        self.config = work / "gateway.toml"
        self.config.write_text(tomli_w.dumps(config))

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("urbanpulse")), "gateway", "run",
                "--config", str(self.config)]


# The function node: samples to points, tags as the registry gives them.
NODE_RED_FUNCTION = """
const board = msg.topic.split('/')[1];
const tags = TAGS[board];
if (!tags) { return null; }
msg.payload = msg.payload.samples.map(s => {
    const fields = {};
    for (const k in s) { if (k !== 't') { fields[k] = s[k]; } }
    return {measurement: 'air_quality', tags: tags, fields: fields,
            timestamp: new Date(s.t)};
});
return msg;
"""
# After the join: one array of points for the batch node.
NODE_RED_FLATTEN = "msg.payload = [].concat(...msg.payload); return msg;"


class NodeRedConsumer(Consumer):
    name = "node-red"
    marker = "Connected to broker"

    def __init__(self, work: Path, services: Services, boards: int) -> None:
        super().__init__(work)
        self.user_dir = work / "node-red-user"
        self.user_dir.mkdir(exist_ok=True)
        tags = {d: {"device_id": d, "district": DISTRICTS[i % 3], "kind": "air"}
                for i, d in enumerate(board_ids(boards))}
        influx_port = services.influx_url.rsplit(":", 1)[1]
        # Node ids in Node-RED's own form (hex): short names like "json" confuse it.
        ids = {name: f"{i + 1:016x}" for i, name in enumerate(
            ("tab", "broker", "influx", "in", "json", "points", "join", "flatten", "batch"))}
        tab = ids["tab"]
        flow = [
            {"id": tab, "type": "tab", "label": "drain"},
            {"id": ids["broker"], "type": "mqtt-broker", "broker": "127.0.0.1",
             "port": str(services.mqtt_port), "clientid": self.client_id,
             "autoConnect": True, "usetls": False, "protocolVersion": "4", "keepalive": "60",
             "cleansession": False, "autoUnsubscribe": False},
            {"id": ids["influx"], "type": "influxdb", "hostname": "127.0.0.1",
             "port": influx_port, "protocol": "http", "database": services.database,
             "name": "", "usetls": False, "influxdbVersion": "1.x"},
            {"id": ids["in"], "type": "mqtt in", "z": tab, "topic": "city/+/telemetry",
             "qos": "1", "datatype": "utf8", "broker": ids["broker"], "nl": False,
             "rap": False, "rh": 0, "wires": [[ids["json"]]]},
            {"id": ids["json"], "type": "json", "z": tab, "property": "payload",
             "action": "obj", "wires": [[ids["points"]]]},
            {"id": ids["points"], "type": "function", "z": tab, "outputs": 1,
             "func": "const TAGS = " + json.dumps(tags) + ";\n" + NODE_RED_FUNCTION,
             "wires": [[ids["join"]]]},
            {"id": ids["join"], "type": "join", "z": tab, "mode": "custom", "build": "array",
             "property": "payload", "propertyType": "msg", "count": "100", "timeout": "1",
             "accumulate": False, "joiner": "\\n", "joinerType": "str",
             "wires": [[ids["flatten"]]]},
            {"id": ids["flatten"], "type": "function", "z": tab, "outputs": 1,
             "func": NODE_RED_FLATTEN, "wires": [[ids["batch"]]]},
            {"id": ids["batch"], "type": "influxdb batch", "z": tab, "influxdb": ids["influx"],
             "precision": "ms", "retentionPolicy": "", "wires": []},
        ]
        (self.user_dir / "flows.json").write_text(json.dumps(flow))

    def command(self) -> list[str]:
        red = NODE_RED_DIR / "node_modules" / "node-red" / "red.js"
        return ["node", str(red), "--userDir", str(self.user_dir), "--port", "0",
                "flows.json"]


def install_node_red() -> None:
    """Node-RED and the InfluxDB nodes, once, in their own folder (not the project's)."""
    if (NODE_RED_DIR / "node_modules" / "node-red-contrib-influxdb").is_dir():
        return
    if shutil.which("npm") is None:
        raise SystemExit("npm is not installed: run `make setup` (it installs nodejs and npm)")
    NODE_RED_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing {', '.join(NODE_RED_PACKAGES)} into {NODE_RED_DIR} ...", flush=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                    *NODE_RED_PACKAGES], cwd=NODE_RED_DIR, check=True)


# -- the measurement ---------------------------------------------------------------------------
def stored(services: Services) -> int:
    series = influx_query(services, "SELECT count(pm25) FROM air_quality")
    return int(series[0]["values"][0][1]) if series else 0


def drain(consumer: Consumer, services: Services, boards: int, messages: int,
          samples: int) -> tuple[float, int]:
    """(messages/s from the consumer's connection to the last sample queryable, samples
    lost)."""
    influx_drop_and_create(services)
    consumer.start()  # its persistent session, subscribed
    time.sleep(1.0)
    consumer.stop()
    publish_backlog(services.mqtt_port, boards, messages, samples)
    expected = messages * samples
    connected = consumer.start()
    try:
        count = last_change = 0
        changed_at = time.monotonic()
        while count < expected and time.monotonic() - changed_at < 30:
            time.sleep(0.05)
            now_count = stored(services)
            if now_count != count:
                count, changed_at = now_count, time.monotonic()
        done = changed_at
        last_change = count
    finally:
        consumer.stop()
        consumer.forget_session(services.mqtt_port)
    return messages / (done - connected), expected - last_change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--boards", type=int, default=100)
    parser.add_argument("--workers", default="1", help="the gateway's [service] workers")
    parser.add_argument("--samples", default="1,5", help="samples per message, comma separated")
    parser.add_argument("--protocol", default="5", choices=("3.1.1", "5"),
                        help="the gateway's MQTT version")
    parser.add_argument("--no-node-red", action="store_true", help="the gateway alone")
    args = parser.parse_args()
    if not args.no_node_red:
        install_node_red()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        services = start_services(root / "stack")
        try:
            print(f"{args.messages} messages from {args.boards} boards, backlog on the broker; "
                  f"gateway workers = {args.workers}, MQTT {args.protocol}; "
                  f"{os.cpu_count()} cores")
            for samples in (int(s) for s in args.samples.split(",")):
                work = root / f"s{samples}"
                work.mkdir()
                gateway = GatewayConsumer(work, services, args.boards, args.workers,
                                          args.protocol)
                rate, lost = drain(gateway,
                                   services, args.boards, args.messages, samples)
                line = (f"{samples} sample(s)/message: gateway {rate:8.0f} msg/s "
                        f"({rate * samples:8.0f} samples/s), lost {lost}")
                if not args.no_node_red:
                    red, red_lost = drain(NodeRedConsumer(work, services, args.boards),
                                          services, args.boards, args.messages, samples)
                    line += (f"; Node-RED {red:8.0f} msg/s, lost {red_lost}; "
                             f"ratio gateway/Node-RED {rate / red:.2f}")
                print(line, flush=True)
        finally:
            stop_services(services)


if __name__ == "__main__":
    main()
