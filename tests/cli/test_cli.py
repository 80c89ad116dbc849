"""The `urbanpulse` command as operators run it: real processes, real signals."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.gateway_harness import (
    REGISTRY_CSV,
    Publisher,
    count_points,
)
from support.services import Services
from support.waiting import wait_until
from urbanpulse.service.logs import RateLimitedLog


def urbanpulse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "urbanpulse", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_bad_configuration_exits_2_with_one_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "urbanpulse.toml"
    config.write_text('[mqtt]\nport = 70000\n[batch]\nmax_delay_s = "soon"\n')
    result = urbanpulse("gateway", "run", "--config", str(config))
    assert result.returncode == 2
    assert "[mqtt] port = 70000: Input should be less than or equal to 65535" in result.stderr
    assert "[batch] max_delay_s = 'soon'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_registry_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "urbanpulse.toml"
    config.write_text('[registry]\npath = "nowhere.csv"\n')
    result = urbanpulse("gateway", "run", "--config", str(config))
    assert result.returncode == 2
    assert f"{tmp_path / 'nowhere.csv'}: registry file not found" in result.stderr


def test_a_device_key_store_others_can_read_stops_the_gateway(tmp_path: Path) -> None:
    (tmp_path / "devices.csv").write_text(REGISTRY_CSV)
    store = tmp_path / "device-keys.json"
    store.write_text("{}\n")
    os.chmod(store, 0o644)
    config = tmp_path / "urbanpulse.toml"
    config.write_text(f'[registry]\npath = "{tmp_path / "devices.csv"}"\n'
                      f'[keys]\ndevice_keys = "{store}"\n')
    result = urbanpulse("gateway", "run", "--config", str(config))
    assert result.returncode == 2
    assert "must be readable by its owner only (it is 644; chmod 600" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.services
def test_gateway_process_logs_for_journald_and_stops_cleanly_on_sigterm(
    influx: Services, tmp_path: Path
) -> None:
    (tmp_path / "devices.csv").write_text(REGISTRY_CSV)
    config = tmp_path / "urbanpulse.toml"
    config.write_text(
        f'[mqtt]\nport = {influx.mqtt_port}\nclient_id = "cli-test-gw"\n'
        f'[influx]\nurl = "{influx.influx_url}"\n'
    )
    env = dict(os.environ, JOURNAL_STREAM="8:12345")
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse", "gateway", "run", "--config", str(config)],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )
    publisher = Publisher(influx, "cli-test-publisher")
    try:
        wait_until(lambda: "connected to" in log_path.read_text(), what="gateway connected")
        time.sleep(0.5)  # the subscription follows the connection
        now = time.time_ns() // 1_000_000
        publisher.publish("city/noise-centre-01/telemetry",
                          {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": now, "laeq": 55.5}]})
        publisher.publish("city/noise-centre-01/telemetry", b"garbage")
        wait_until(lambda: count_points(influx, "noise", "laeq") == 1, what="stored point")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        publisher.close()
        if process.poll() is None:
            process.kill()
    lines = log_path.read_text().splitlines()
    assert any(line.startswith("<6>INFO urbanpulse.gateway: gateway started") for line in lines)
    assert any(line.startswith("<4>WARNING urbanpulse.rejected: rejected telemetry message "
                               "reason=not_json device=noise-centre-01 ") for line in lines)
    assert any("gateway stopped" in line and "'stored_points'" in line for line in lines)


def test_registry_check_and_import(tmp_path: Path) -> None:
    registry = tmp_path / "devices.csv"
    registry.write_text(REGISTRY_CSV)
    result = urbanpulse("registry", "check", str(registry))
    assert result.returncode == 0
    assert "4 devices (air 1, noise 1, parking 1, streetlight 1)" in result.stdout

    new = tmp_path / "new.csv"
    new.write_text("device_id,kind,district\nsoil-park-01,soil,park\n")
    result = urbanpulse("registry", "import", str(new), "--into", str(registry))
    assert result.returncode == 0, result.stderr
    assert "1 devices added, 0 updated" in result.stdout
    assert "soil-park-01,soil,park" in registry.read_text()

    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,kind,district\nsoil-park-02,soil,park\nX,soil,park\n")
    result = urbanpulse("registry", "import", str(bad), "--into", str(registry))
    assert result.returncode == 2
    assert f"nothing imported: {bad} line 3: device_id='X'" in result.stderr
    assert "soil-park-02" not in registry.read_text()


def test_rejection_log_is_rate_limited_and_counts_what_it_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RateLimitedLog(logging.getLogger("test.rejected"), interval_s=0.3)
    with caplog.at_level(logging.WARNING, "test.rejected"):
        assert log.log("not_json", logging.WARNING, "first")
        for _ in range(50):
            assert not log.log("not_json", logging.WARNING, "flood")
        assert log.log("out_of_range", logging.WARNING, "another reason is not held back")
        time.sleep(0.35)
        assert log.log("not_json", logging.WARNING, "later")
    assert [r.getMessage() for r in caplog.records] == [
        "first",
        "another reason is not held back",
        "later (+50 more like this in the last 0.3 s)",
    ]
