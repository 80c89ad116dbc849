"""The gateway and the services played against as an attacker would, with real clients: every
attack must fail, visibly, and cost nothing else."""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.fault_harness import GatewayProcess, write_gateway_config
from support.ops_harness import device_ids, status_rows, write_registry
from support.services import Services
from support.waiting import wait_until

pytestmark = pytest.mark.services

# What the gateway may reach, at most, whatever a board sends (issue 13's bench bound).
RSS_BOUND_MB = 150


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def _publish_retained(services: Services, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"attacker-{topic[5:20]}")
    client.connect(services.mqtt_host, services.mqtt_port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(60)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_50_mb_retained_status_does_not_bloat_the_gateway(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    """One board's credentials, a 50 MB retained status: the broker never hands it to the
    gateway's MQTT 5 session (Maximum Packet Size), so the gateway neither grows nor stops;
    the other board's status is stored as usual."""
    big, small = device_ids("air", "noise")
    registry = write_registry(tmp_path / "devices.csv",
                              [(big, "air", "north", 60.0), (small, "noise", "north", 60.0)])
    _publish_retained(influx, f"city/{big}/status",
                      b'{"state":"online","pad":"' + b"x" * (50 * 1024 * 1024) + b'"}')
    _publish_retained(influx, f"city/{small}/status", b'{"state":"online"}')
    config = write_gateway_config(tmp_path / "gw.toml", influx, registry, client_id, "city")
    gateway = GatewayProcess(config, client_id, tmp_path / "gateway.log")
    started = gateway.start()
    try:
        gateway.wait_ready(influx, started)
        wait_until(lambda: status_rows(influx, small), timeout_s=30,
                   what="the other board's status stored")
        assert gateway.running(), gateway.log()
        assert gateway.process is not None
        peak = _peak_rss_mb(gateway.process.pid)
        assert peak < RSS_BOUND_MB, f"gateway peaked at {peak:.0f} MB"
    finally:
        gateway.stop()
        _publish_retained(influx, f"city/{big}/status", b"")
    assert status_rows(influx, big) == []
