"""The gateway runs the KPI engine, and a board's late data recomputes the windows it touches."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.gateway_harness import (
    REGISTRY_CSV,
    Publisher,
    gateway_settings,
    rows,
    running_gateway,
)
from support.services import Services
from support.waiting import wait_until
from urbanpulse.config import KpiSettings

pytestmark = pytest.mark.services

HOUR_MS = 3_600_000


def test_samples_delivered_hours_late_get_their_hourly_kpi_from_the_running_gateway(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    registry = tmp_path / "devices.csv"
    registry.write_text(REGISTRY_CSV)
    settings = gateway_settings(influx, registry, client_id)
    # Runs look back 3 hours; the samples below are 6 hours old, so only the late-data path
    # (the gateway noting the hours they fall in) can make the engine compute their hour.
    settings.kpi = KpiSettings(enabled=True, interval_s=1.0, lookback_h=3)
    now = time.time_ns() // 1_000_000
    hour = (now - 6 * HOUR_MS) // HOUR_MS * HOUR_MS
    message = {"v": 1, "boot": 3, "seq": 0, "samples": [
        {"t": hour + 60_000, "pm25": 10.0, "pm10": 20.0},
        {"t": hour + 120_000, "pm25": 14.0, "pm10": 30.0},
    ]}
    publisher = Publisher(influx, f"{client_id}-pub")
    try:
        with running_gateway(settings):
            publisher.publish("city/air-north-01/telemetry", message)

            def hourly() -> list[dict[str, object]]:
                return rows(
                    influx,
                    "SELECT pm25, pm10, samples FROM kpi_air_hourly "
                    "WHERE \"level\" = 'device' AND device_id = 'air-north-01'",
                )

            found = wait_until(hourly, timeout_s=30, what="the late hour's KPI")
    finally:
        publisher.close()
    assert [(r["time"], r["pm25"], r["pm10"], r["samples"]) for r in found] == [
        (hour, 12.0, 25.0, 2.0)
    ]


def test_the_gateway_computes_no_kpi_before_its_first_interval(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    """At start the stored data lags (backlog, reconnecting boards): a "now" KPI computed at
    once would call every board offline, so the first run comes one interval later."""
    registry = tmp_path / "devices.csv"
    registry.write_text(REGISTRY_CSV)
    settings = gateway_settings(influx, registry, client_id)
    settings.kpi = KpiSettings(enabled=True, interval_s=4.0, lookback_h=1)
    started_ms = time.time_ns() // 1_000_000
    with running_gateway(settings) as gateway:
        wait_until(lambda: gateway.kpi.runs >= 1, timeout_s=30, what="the first KPI run")
    first = rows(influx, "SELECT * FROM kpi_network_now WHERE \"level\" = 'city'")
    # A run stamps its "now" KPIs with the time it ran.
    assert first and first[0]["time"] >= started_ms + 4_000, (started_ms, first)
