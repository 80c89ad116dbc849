"""`urbanpulse board check`: against the real Mosquitto and InfluxDB, a real gateway, and a
real firmware board (provisioned, flashed through mpremote, then started from its flash)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.gateway_harness import (
    Publisher,
    gateway_settings,
    running_gateway,
)
from support.pty_board import PtyBoard
from support.services import Services, free_port
from support.waiting import wait_until
from urbanpulse.devtools import hostboard
from urbanpulse.field.bundle import find_tool, firmware_source

PY = sys.executable


def urbanpulse(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "urbanpulse", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def write_config(tmp_path: Path, services: Services, registry: Path, mqtt_port: int) -> Path:
    config = tmp_path / "urbanpulse.toml"
    config.write_text(
        f'[mqtt]\nhost = "{services.mqtt_host}"\nport = {mqtt_port}\n'
        f'[influx]\nurl = "{services.influx_url}"\ndatabase = "{services.database}"\n'
        f'[registry]\npath = "{registry}"\n'
    )
    return config


def check(config: Path, device_id: str) -> subprocess.CompletedProcess[str]:
    return urbanpulse("board", "check", device_id, "--config", str(config))


@pytest.mark.services
def test_a_board_never_seen_exits_1(influx: Services, tmp_path: Path) -> None:
    registry = tmp_path / "devices.csv"
    registry.write_text("device_id,kind,district,site\nsoil-park-01,soil,park,Rose Garden\n")
    result = check(write_config(tmp_path, influx, registry, influx.mqtt_port), "soil-park-01")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "soil-park-01  soil  park / Rose Garden  (reports every 60 s)"
    assert "status    never seen (no retained status on the broker)" in lines
    assert "health    no health report stored" in lines
    assert "readings  none stored" in lines
    assert lines[-1] == "result    NEVER SEEN"


@pytest.mark.services
def test_published_status_health_and_readings_are_shown_with_ages(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    registry = tmp_path / "devices.csv"
    registry.write_text("device_id,kind,district,site,interval_s\n"
                        "air-check-01,air,north,Town Hall,60\n")
    config = write_config(tmp_path, influx, registry, influx.mqtt_port)
    publisher = Publisher(influx, f"{client_id}-pub")
    try:
        with running_gateway(gateway_settings(influx, registry, client_id)):
            now = time.time_ns() // 1_000_000
            publisher.client.publish("city/air-check-01/status", json.dumps(
                {"state": "online", "fw": "0.4.0", "boot": 7}), qos=1, retain=True
            ).wait_for_publish(10)
            publisher.publish("city/air-check-01/health", {
                "t": now - 20_000, "battery": 3.91, "rssi": -67, "heap_free": 41234,
                "uptime": 3600, "buffered": 0, "dropped": 2, "fw": "0.4.0",
                "reset_cause": "power", "faults": "bme280:no_ack",
                "config_error": "sensors[1].uart.tx: must be an integer pin"})
            publisher.publish("city/air-check-01/telemetry", {"v": 1, "boot": 7, "seq": 0,
                              "samples": [{"t": now - 5_000, "pm25": 12.4, "pm10": 20.0}]})
            # An update's last answer (`urbanpulse ota push`), and a plain command's after it.
            publisher.publish("city/air-check-01/cmd/ack", {
                "id": "ota-0a1b2c3d", "ok": True, "state": "running", "fw": "0.4.0"})
            publisher.publish("city/air-check-01/cmd/ack", {"id": "c-9", "ok": True})

            def shown() -> subprocess.CompletedProcess[str] | None:
                result = check(config, "air-check-01")
                # Both stored ("health    no health report stored" is not enough: the
                # readings may be stored in an earlier batch than the health report).
                return result if "readings  air_quality" in result.stdout and "update " in \
                    result.stdout and re.search(
                    r"^health    \d+ s ago", result.stdout, re.MULTILINE) else None

            result = wait_until(shown, timeout_s=30, what="health and readings stored")
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "status    online (fw 0.4.0, boot 7)" in out
        health = re.search(r"^health    (\d+) s ago: (.*)$", out, re.MULTILINE)
        assert health, out
        assert 20 <= int(health[1]) < 60
        assert health[2] == ("battery 3.91 V, rssi -67 dBm, heap_free 41234, uptime 3600 s, "
                             "buffered 0, dropped 2, fw 0.4.0, reset_cause power")
        assert "          faults: bme280:no_ack" in out
        assert "          config error: sensors[1].uart.tx: must be an integer pin" in out
        assert "readings  air_quality " in out and ": pm10 20, pm25 12.4" in out
        assert re.search(r"^update    running 0.4.0 \(ota-0a1b2c3d, \d+ s ago\)$", out, re.M), out
        assert out.splitlines()[-1] == "result    ONLINE"

        # The board's last will (or a clean stop) leaves "offline" retained: exit 1.
        publisher.client.publish("city/air-check-01/status", json.dumps({"state": "offline"}),
                                 qos=1, retain=True).wait_for_publish(10)
        offline = check(config, "air-check-01")
        assert offline.returncode == 1
        assert "status    offline" in offline.stdout
        assert offline.stdout.splitlines()[-1] == "result    OFFLINE"
    finally:
        publisher.client.publish("city/air-check-01/status", b"", qos=1,
                                 retain=True).wait_for_publish(10)
        publisher.close()


def test_an_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    registry = tmp_path / "devices.csv"
    registry.write_text("device_id,kind,district\nsoil-park-01,soil,park\n")
    port = free_port()
    config = tmp_path / "urbanpulse.toml"
    config.write_text(f'[mqtt]\nport = {port}\n[registry]\npath = "{registry}"\n')
    result = check(config, "soil-park-01")
    assert result.returncode == 2
    assert f"cannot check soil-park-01: broker 127.0.0.1:{port} unreachable" in result.stderr


@pytest.mark.services
def test_a_provisioned_and_flashed_firmware_board(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    """The technician's whole path: provision, flash (mpremote over a pty to a MicroPython
    REPL), start the board from what was flashed, check it online, stop it, check it off."""
    registry = tmp_path / "devices.csv"
    boards = tmp_path / "provisioned"
    result = urbanpulse(
        "provision", "traffic-lab-01", "--kind", "traffic", "--district", "lab",
        "--site", "Bench", "--interval", "1", "--simulated", "--wifi-ssid", "lab",
        "--mqtt-host", influx.mqtt_host, "--mqtt-port", str(influx.mqtt_port), "--no-auth",
        "--registry", str(registry), "--out-dir", str(boards))
    assert result.returncode == 0, result.stderr
    board_config = boards / "traffic-lab-01" / "config.json"
    # Health every second instead of every 5 minutes, so the test sees one soon.
    cfg = json.loads(board_config.read_text())
    cfg["health_interval_s"] = 1
    board_config.write_text(json.dumps(cfg))
    config = write_config(tmp_path, influx, registry, influx.mqtt_port)

    flash = tmp_path / "flash"
    with PtyBoard(flash) as board:
        flashed = urbanpulse("flash", "--port", board.port, "--no-image", "--no-reset",
                             "--config", str(board_config),
                             "--bundle-dir", str(tmp_path / "bundle"))
        assert flashed.returncode == 0, flashed.stderr + flashed.stdout
    # "Reset": the board runs main.py from its flash, with the host's stand-in for the
    # ESP32's WiFi (firmware/host) as the fleet does.
    micropython = find_tool("micropython")
    assert micropython
    env = dict(os.environ, MICROPYPATH=f"{firmware_source() / 'host'}:.frozen")
    with (flash / "console.log").open("wb") as console:
        process = hostboard.launch([micropython, "main.py"], flash, env, console)
    try:
        with running_gateway(gateway_settings(influx, registry, client_id)):
            def reporting() -> subprocess.CompletedProcess[str] | None:
                r = check(config, "traffic-lab-01")
                ok = r.returncode == 0 and "readings  traffic" in r.stdout \
                    and "health    " in r.stdout
                return r if ok else None

            online = wait_until(reporting, timeout_s=60, what="the board reporting")
            out = online.stdout
            print(out)
            assert out.startswith("traffic-lab-01  traffic  lab / Bench")
            assert "status    online (fw " in out
            assert "period_s" in out and "vehicles" in out
            hostboard.stop(process)  # the firmware says goodbye: offline
            process.wait(30)
            offline = check(config, "traffic-lab-01")
            assert offline.returncode == 1, offline.stdout
            assert "status    offline" in offline.stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        print((flash / "console.log").read_text()[-3000:])
