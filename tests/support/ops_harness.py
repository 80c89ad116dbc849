"""Helpers for the operations tests (health, liveness, metrics): devices of their own."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from support.gateway_harness import (
    gateway_settings,
    rows,
)
from support.services import Services
from urbanpulse.config import LivenessSettings, MetricsSettings, Settings


def device_ids(*kinds: str) -> list[str]:
    """Device ids no other test uses: the broker keeps retained statuses across tests."""
    tag = uuid.uuid4().hex[:6]
    return [f"{kind}-{tag}-{n}" for n, kind in enumerate(kinds)]


def write_registry(path: Path, devices: list[tuple[str, str, str, float]]) -> Path:
    """(device_id, kind, district, interval_s) rows; site only for the first device."""
    lines = ["device_id,kind,district,site,lat,lon,interval_s"]
    for n, (device_id, kind, district, interval_s) in enumerate(devices):
        site = "Town Hall" if n == 0 else ""
        lines.append(f"{device_id},{kind},{district},{site},,,{interval_s:g}")
    path.write_text("\n".join(lines) + "\n")
    return path


def ops_settings(
    services: Services,
    registry: Path,
    client_id: str,
    *,
    metrics_port: int = 0,
    timeout_factor: float = 3.0,
    heartbeat_s: float = 300.0,
) -> Settings:
    settings = gateway_settings(services, registry, client_id)
    settings.metrics = MetricsSettings(port=metrics_port)
    settings.liveness = LivenessSettings(timeout_factor=timeout_factor, heartbeat_s=heartbeat_s)
    return settings


def now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def telemetry(seq: int, **values: Any) -> str:
    return json.dumps({"v": 1, "boot": 1, "seq": seq, "samples": [{"t": now_ms(), **values}]})


def status_rows(services: Services, device_id: str) -> list[dict[str, Any]]:
    return rows(
        services,
        "SELECT online, state, reason FROM device_status "
        f"WHERE device_id = '{device_id}' ORDER BY time",
    )
