"""`urbanpulse stack up --secure` as an operator uses it: the stack makes its CA, passwords and
gateway configuration; the gateway runs from that configuration; a board provisioned into
the stack's password file connects over TLS with the credentials of its config.json, and its
reading is stored. Real processes, real TLS."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.gateway_harness import running_gateway
from support.services import free_ports
from support.waiting import wait_until
from urbanpulse.config import InfluxSettings, load_settings
from urbanpulse.influx.writer import V1Writer

pytestmark = pytest.mark.services


def urbanpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "urbanpulse", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def secure_stack(tmp_path: Path) -> Iterator[list[str]]:
    ports = [str(p) for p in free_ports(3)]
    options = ["--state-dir", str(tmp_path / "stack"), "--mqtt-port", ports[0],
               "--influx-port", ports[1], "--influx-rpc-port", ports[2]]
    up = urbanpulse("stack", "up", "--secure", *options)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield options
    finally:
        urbanpulse("stack", "down", *options)


def test_secure_stack_gateway_and_a_provisioned_board(
    secure_stack: list[str], tmp_path: Path
) -> None:
    secure = tmp_path / "stack" / "secure"
    for private in (secure / "server.key", secure / "mosquitto.passwd",
                    *sorted((secure / "secrets").iterdir())):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    settings = load_settings(secure / "urbanpulse.toml")
    result = urbanpulse(
        "provision", "noise-sec-01", "--kind", "noise", "--district", "centre", "--simulated",
        "--wifi-ssid", "lab", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(settings.mqtt.port),
        "--registry", str(secure / "devices.csv"), "--out-dir", str(tmp_path / "boards"),
        "--passwd-file", str(secure / "mosquitto.passwd"))
    assert result.returncode == 0, result.stderr
    # Mosquitto reads its password file at start: restart the broker as the operator would.
    assert urbanpulse("stack", "down", *secure_stack).returncode == 0
    assert urbanpulse("stack", "up", "--secure", *secure_stack).returncode == 0
    board = json.loads((tmp_path / "boards" / "noise-sec-01" / "config.json").read_text())

    with running_gateway(load_settings(secure / "urbanpulse.toml")):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="noise-sec-01")
        client.tls_set(ca_certs=str(secure / "ca.crt"))
        client.username_pw_set(board["mqtt"]["username"], board["mqtt"]["password"])
        client.connect("127.0.0.1", settings.mqtt.port)
        client.loop_start()
        try:
            message = {"v": 1, "boot": 1, "seq": 0,
                       "samples": [{"t": time.time_ns() // 1_000_000, "laeq": 48.5}]}
            client.publish("city/noise-sec-01/telemetry", json.dumps(message),
                           qos=1).wait_for_publish(10)
            grafana = V1Writer(InfluxSettings(
                url=settings.influx.url, database=settings.influx.database,
                username="urbanpulse-grafana",
                password=(secure / "secrets" / "influx-urbanpulse-grafana").read_text().strip()))
            stored = wait_until(lambda: grafana.query('SELECT laeq FROM "noise"'), timeout_s=30,
                                what="the board's reading stored")
            assert stored[0]["values"][0][1] == 48.5
        finally:
            client.disconnect()
            client.loop_stop()
