"""/metrics of a running gateway after known traffic, and `urbanpulse gateway status`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.gateway_harness import (
    Publisher,
    count_points,
    running_gateway,
)
from support.ops_harness import device_ids, now_ms, ops_settings, telemetry, write_registry
from support.services import Services, free_port
from support.waiting import wait_until
from urbanpulse.service.metrics import scrape


def _status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "urbanpulse", "gateway", "status", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
           **labels: str) -> float:
    for sample_labels, value in samples.get(f"urbanpulse_{name}", []):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    raise AssertionError(f"urbanpulse_{name}{labels or ''} not in the scrape")


@pytest.mark.services
def test_metrics_after_known_traffic_and_the_status_command(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    air, noise, park, soil = device_ids("air", "noise", "park", "soil")
    registry = write_registry(tmp_path / "devices.csv", [
        (air, "air", "north", 60), (noise, "noise", "centre", 60),
        (park, "parking", "south", 60), (soil, "soil", "park", 1),  # soil: never heard
    ])
    port = free_port()
    settings = ops_settings(influx, registry, client_id, metrics_port=port)
    url = f"http://127.0.0.1:{port}/metrics"
    config = tmp_path / "urbanpulse.toml"
    config.write_text(f"[metrics]\nport = {port}\n")
    publisher = Publisher(influx, f"{client_id}-pub")
    t = now_ms()
    try:
        with running_gateway(settings):
            publisher.publish(f"city/{air}/telemetry", {"v": 1, "boot": 1, "seq": 0, "samples": [
                {"t": t, "pm25": 10.0}, {"t": t + 1, "pm25": 11.0}]})
            message = telemetry(0, laeq=50.0)
            publisher.publish(f"city/{noise}/telemetry", message)
            publisher.publish(f"city/{noise}/telemetry", message)  # a redelivery: same bytes
            publisher.publish(f"city/{air}/telemetry", b"garbage")
            publisher.publish(f"city/{air}/telemetry", {"v": 1, "boot": 1, "seq": 1, "samples": [
                {"t": t + 2, "pm25": 12.0}, {"t": t + 3, "pm25": -5.0}]})
            publisher.publish(f"city/{park}/health", {"t": t, "battery": 3.9, "rssi": -70})
            publisher.publish(f"city/{park}/status", {"state": "online"})
            wait_until(lambda: count_points(influx, "air_quality", "pm25") == 3, what="pm25")
            wait_until(lambda: count_points(influx, "device_health", "battery") == 1,
                       what="health")
            # The soil board times out after 3 s; by then everything above is stored.
            wait_until(lambda: _value(scrape(url), "devices", state="offline") == 1,
                       what="the silent board offline")
            samples = scrape(url)
            status = _status("--url", url)
            from_config = _status("--config", str(config))
    finally:
        publisher.close()

    assert _value(samples, "messages_received_total") == 7
    assert _value(samples, "messages_accepted_total") == 6  # the redelivery is valid
    assert _value(samples, "messages_duplicate_total") == 1
    assert _value(samples, "messages_rejected_total") == 1
    assert _value(samples, "rejected_total", reason="not_json") == 1
    assert _value(samples, "rejected_total", reason="out_of_range") == 1
    assert _value(samples, "rejected_total", reason="unknown_device") == 0
    # 4 telemetry, 1 health, 4 device_info, statuses and stats: at least the first 9.
    assert _value(samples, "points_stored_total") >= 9
    assert _value(samples, "write_errors_total") == 0
    assert _value(samples, "write_duration_seconds_count") >= 1
    assert _value(samples, "write_duration_seconds_bucket", le="+Inf") == _value(
        samples, "write_duration_seconds_count")
    assert _value(samples, "write_in_flight_seconds") < 5
    assert _value(samples, "spool_points") == 0
    assert _value(samples, "mqtt_connected") == 1
    assert _value(samples, "registry_devices") == 4
    assert _value(samples, "devices", state="online") == 3
    assert _value(samples, "device_online", device_id=park, district="south", kind="parking") == 1
    assert _value(samples, "device_online", device_id=soil) == 0
    assert _value(samples, "uptime_seconds") > 0

    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"UrbanPulse gateway at {url}"
    assert "  broker    connected" in lines
    assert ("  messages  received 7, accepted 6, duplicates 1, rejected 2 "
            "(not_json 1, out_of_range 1)") in lines
    assert "  devices   4 registered: 3 online, 1 offline, 0 not seen yet" in lines
    assert f"  offline   {soil}" in lines
    assert from_config.returncode == 0 and from_config.stdout.startswith(
        f"UrbanPulse gateway at {url}\n")

    # The gateway has stopped: the command says so and exits 1.
    gone = _status("--url", url)
    assert gone.returncode == 1
    assert f"cannot reach the gateway's metrics at {url}" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_status_refuses_a_configuration_without_metrics(tmp_path: Path) -> None:
    config = tmp_path / "urbanpulse.toml"
    config.write_text("[metrics]\nport = 0\n")
    result = _status("--config", str(config))
    assert result.returncode == 2
    assert "[metrics] port = 0, the gateway serves no metrics" in result.stderr
