"""End to end: real firmware on MicroPython -> Mosquitto -> gateway -> InfluxDB.

A spy subscriber records every telemetry message the boards publish; afterwards InfluxDB must
hold exactly those samples, each once, with the values the boards sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.gateway_harness import (
    gateway_settings,
    rows,
    running_gateway,
)
from support.services import Services, free_port
from support.waiting import wait_until
from urbanpulse.contract.vocabulary import KINDS, VOCABULARY
from urbanpulse.devtools.fleet import Fleet, host_board_config, plan_devices
from urbanpulse.registry.devices import load_registry, merge_devices

pytestmark = pytest.mark.services


class Spy:
    """Subscribes to every board's telemetry and status, as an outside observer."""

    def __init__(self, services: Services) -> None:
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.status: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-spy")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(services.mqtt_host, services.mqtt_port)
        self.client.subscribe([("city/+/telemetry", 1), ("city/+/status", 1)])
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        _, device_id, kind = msg.topic.split("/")
        with self._lock:
            target = self.messages if kind == "telemetry" else self.status
            target[device_id].append(json.loads(msg.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_every_sample_the_boards_publish_is_stored_once(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    registry = tmp_path / "devices.csv"
    devices = plan_devices(len(KINDS), ["north", "centre", "south"], interval_s=0.5)
    merge_devices(devices, registry)
    settings = gateway_settings(influx, registry, client_id)
    spy = Spy(influx)
    fleet = Fleet(tmp_path / "boards")
    messages_per_board = 6
    for device in devices:
        fleet.add(device, host_board_config(device, settings.mqtt, 0.1, 0.3,
                                       max_messages=messages_per_board))
    try:
        with running_gateway(settings):
            fleet.start()
            finished = fleet.wait(60)
            consoles = {b.device.device_id: b.log_file.read_text() for b in fleet.boards}
            assert finished, f"boards did not finish: {consoles}"
            expected: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
            for device_id, messages in spy.messages.items():
                for message in messages:
                    for sample in message["samples"]:
                        for field, value in sample.items():
                            if field != "t":
                                measurement = VOCABULARY[field].measurement
                                point = expected[(measurement, device_id)].setdefault(
                                    sample["t"], {})
                                point[field] = value
            total = sum(len(points) for points in expected.values())

            def stored() -> int:
                return sum(
                    len(rows(influx, f'SELECT * FROM "{m}" WHERE device_id = \'{d}\''))
                    for m, d in expected)
            wait_until(lambda: stored() == total, 20, f"{total} points in InfluxDB")
    finally:
        fleet.stop()
        spy.close()

    # Every board ran, published seq 0..n-1 of boot 1, and said goodbye.
    assert set(spy.messages) == {d.device_id for d in devices}, consoles
    for device in devices:
        messages = spy.messages[device.device_id]
        assert sorted({m["seq"] for m in messages}) == list(range(messages_per_board))
        assert {m["boot"] for m in messages} == {1}
        states = [s["state"] for s in spy.status[device.device_id]]
        assert states[0] == "online" and states[-1] == "offline"

    # InfluxDB holds exactly the published samples: same timestamps, same values, once each.
    for (measurement, device_id), points in expected.items():
        stored_rows = rows(influx, f'SELECT * FROM "{measurement}" WHERE device_id = '
                                   f"'{device_id}'")
        assert [r["time"] for r in stored_rows] == sorted(points)
        for row in stored_rows:
            sent = points[row["time"]]
            got = {k: row[k] for k in sent}
            assert got == pytest.approx(sent), (measurement, device_id, row["time"])
        assert {r["district"] for r in stored_rows} == {
            d.district for d in devices if d.device_id == device_id}


def test_demo_shows_live_data_within_30_seconds(tmp_path: Path) -> None:
    """`urbanpulse demo` (what `make demo` runs) brings the whole system up and shows data."""
    ports = [str(free_port()) for _ in range(3)]
    result = subprocess.run(
        [sys.executable, "-m", "urbanpulse", "demo", "--state-dir", str(tmp_path / "demo"),
         "--mqtt-port", ports[0], "--influx-port", ports[1], "--influx-rpc-port", ports[2],
         "--devices", "14", "--duration", "20", "--no-live"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    online = [line for line in output.splitlines() if "devices online:" in line]
    assert online, output
    count = int(online[-1].split("devices online:")[1].split()[0])
    assert count == 14, output
    for district in ("north", "centre", "south"):
        assert district in output
    # The gateway's first KPI run is one interval (60 s) away: not computed yet, so not "0%".
    assert "boards online: -" in output, output
    assert "demo stopped." in output
    # Everything the demo started is stopped again.
    status = subprocess.run(
        [sys.executable, "-m", "urbanpulse", "stack", "status", "--state-dir",
         str(tmp_path / "demo"), "--mqtt-port", ports[0], "--influx-port", ports[1],
         "--influx-rpc-port", ports[2]],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert status.returncode == 3, status.stdout


def test_fleet_command_registers_and_runs_boards(influx: Services, tmp_path: Path) -> None:
    """`urbanpulse fleet run`: boards registered across districts and kinds, publishing."""
    config = tmp_path / "urbanpulse.toml"
    config.write_text(f'[mqtt]\nport = {influx.mqtt_port}\n[registry]\npath = "devices.csv"\n')
    spy = Spy(influx)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "urbanpulse", "fleet", "run", "--devices", "9", "--config",
             str(config), "--state-dir", str(tmp_path / "state"), "--sample-interval", "0.2",
             "--publish-interval", "0.5", "--duration", "6"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        spy.close()
    registered = load_registry(tmp_path / "devices.csv").devices
    assert len(registered) == 9
    assert {d.kind for d in registered} == set(KINDS)
    assert {d.district for d in registered} == {"north", "centre", "south"}
    assert set(spy.messages) == {d.device_id for d in registered}
    for device in registered:
        console = (tmp_path / "state" / "boards" / device.device_id / "console.log").read_text()
        assert "Traceback" not in console, console
        assert [s["state"] for s in spy.status[device.device_id]][-1] == "offline"
