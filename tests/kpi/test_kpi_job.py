"""The KPI job: `urbanpulse kpi run --once`, the periodic run the gateway hosts, late data
and failures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from support.services import Services, free_port, influx_write
from support.services import points_by_time as kpi
from urbanpulse.config import Settings, load_settings
from urbanpulse.contract.lineprotocol import encode_point
from urbanpulse.kpi.job import KpiJob
from urbanpulse.registry.devices import Registry, load_registry

H = 3_600_000
M = 60_000


def test_kpi_run_once_command_and_the_periodic_job(influx: Services, tmp_path: Path) -> None:
    registry_path = tmp_path / "devices.csv"
    registry_path.write_text("device_id,kind,district,site\ntraf-e-01,traffic,east,Bridge\n")
    config = tmp_path / "urbanpulse.toml"
    config.write_text(f'[influx]\nurl = "{influx.influx_url}"\ndatabase = "{influx.database}"\n'
                      '[registry]\npath = "devices.csv"\n[kpi]\ninterval_s = 0.2\n')
    registry = load_registry(registry_path)
    reg = registry.get("traf-e-01")
    assert reg is not None
    now = time.time_ns() // 1_000_000
    hour = now - now % H
    t = hour - 20 * M  # the previous hour: complete, in the lookback
    influx_write(influx, encode_point("traffic", reg.device.tags,
                                      {"vehicles": 42.0, "period_s": 600.0}, t))
    result = subprocess.run(
        [sys.executable, "-m", "urbanpulse", "kpi", "run", "--once", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "points in" in result.stdout
    points = kpi(influx, "kpi_traffic_hourly", level="site", site="Bridge")
    assert points[hour - H]["vehicles"] == 42 and points[hour - H]["flow_vph"] == 252

    # The job the gateway runs: periodic, in its own thread, and a late sample re-counted.
    job = KpiJob(load_settings(config), lambda: registry)
    old = hour - 6 * H  # outside the 3-hour lookback
    influx_write(influx, encode_point("traffic", reg.device.tags,
                                      {"vehicles": 9.0, "period_s": 60.0}, old + M))
    job.note_samples("traf-e-01", old + M, old + M)
    job.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = kpi(influx, "kpi_traffic_hourly", level="device", device_id="traf-e-01")
            if old in got and job.runs >= 2:
                break
            time.sleep(0.1)
        assert got[old]["vehicles"] == 9
        assert job.runs >= 2 and job.failures == 0
    finally:
        job.stop()
    assert not job.run_due(time.monotonic() - 3600)  # not due yet: nothing runs


def test_a_failed_run_keeps_the_late_windows_for_the_next_one(tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    # An InfluxDB nobody listens on.
    settings = Settings(influx={"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 2})
    registry = Registry()
    job = KpiJob(settings, lambda: registry)
    job.note_samples("traf-e-01", now - 30 * H, now - 28 * H)
    assert job.engine.dirty_hours == 3
    assert job.run_due(0.0)  # runs, fails, logs
    assert job.failures == 1 and job.runs == 0
    assert job.engine.dirty_hours == 3  # kept for the next run
    disabled = Settings(kpi={"enabled": False})
    off = KpiJob(disabled, lambda: registry)
    off.note_samples("traf-e-01", now, now)
    assert not off.run_due(1e9) and off.engine.dirty_hours == 0
