"""``urbanpulse board check ID``: is this board alive, healthy and reporting? For the
technician at the pole, with the gateway's own configuration (broker and InfluxDB access).

Three sources, each shown with its age:
- the board's retained ``{prefix}/{id}/status`` on the broker (``online`` until its last will
  says ``offline``): the verdict, exit code 0 online, 1 offline or never seen;
- its last health report (``device_health``) and the gateway's liveness (``device_status``);
- its last readings, one row per measurement of its kind.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from urbanpulse.broker.subscriber import BrokerError, subscribed
from urbanpulse.config import MqttSettings, Settings
from urbanpulse.contract.ota import OTA_ID_PREFIX
from urbanpulse.contract.vocabulary import (
    DEVICE_COMMAND_MEASUREMENT,
    DEVICE_HEALTH_MEASUREMENT,
    DEVICE_STATUS_MEASUREMENT,
    HEALTH_FIELDS,
    KIND_MEASUREMENTS,
    MEASUREMENTS,
)
from urbanpulse.influx.influxql import ident, string
from urbanpulse.influx.writer import V1Writer, WriteError
from urbanpulse.registry.devices import Device, RegistryError, load_registry

TAGS = ("device_id", "district", "kind", "site")
# Mosquitto sends retained messages right after the SUBACK; this covers the round trip.
RETAINED_GRACE_S = 0.5


class BoardCheckError(RuntimeError):
    """The check could not be made (broker unreachable or refusing us)."""


@dataclass
class Status:
    payload: dict[str, Any] | None  # None: no retained status (never seen, or cleared)
    raw: bytes = b""


@dataclass
class Report:
    device_id: str
    device: Device | None
    status: Status
    now_ms: int
    health: dict[str, Any] | None = None
    liveness: dict[str, Any] | None = None
    update: dict[str, Any] | None = None  # the last answer to a firmware update (ota push)
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    influx_error: str | None = None
    registry_error: str | None = None

    @property
    def online(self) -> bool:
        return self.status.payload is not None and self.status.payload.get("state") == "online"


def read_status(settings: MqttSettings, device_id: str, timeout_s: float = 5.0) -> Status:
    """The retained status message of the board, as the broker holds it now."""
    topic = f"{settings.topic_prefix}/{device_id}/status"
    got = threading.Event()
    messages: list[bytes] = []

    def on_message(msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            messages.append(bytes(msg.payload))
            got.set()

    try:
        with subscribed(settings, topic, on_message, "boardcheck", timeout_s):
            got.wait(RETAINED_GRACE_S)
    except BrokerError as exc:
        raise BoardCheckError(str(exc)) from None
    if not messages:
        return Status(None)
    try:
        payload = json.loads(messages[-1])
    except ValueError:
        payload = {"state": "unreadable"}
    return Status(payload if isinstance(payload, dict) else {"state": "unreadable"},
                  messages[-1])


def _last_row(writer: V1Writer, measurement: str, device_id: str,
              where: str = "") -> dict[str, Any] | None:
    series = writer.query(
        f"SELECT * FROM {ident(measurement)} WHERE \"device_id\" = {string(device_id)} "
        f"{where} ORDER BY time DESC LIMIT 1"
    )
    if not series or not series[0].get("values"):
        return None
    row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
    return {k: v for k, v in row.items() if k not in TAGS and v is not None}


def check_board(settings: Settings, device_id: str, timeout_s: float = 5.0) -> Report:
    registry_error = None
    try:
        device = load_registry(settings.registry.path).get(device_id)
    except RegistryError as exc:
        device, registry_error = None, str(exc)
    report = Report(
        device_id=device_id,
        device=device.device if device else None,
        status=read_status(settings.mqtt, device_id, timeout_s),
        now_ms=time.time_ns() // 1_000_000,
        registry_error=registry_error,
    )
    kind = report.device.kind if report.device else None
    measurements = KIND_MEASUREMENTS.get(kind, MEASUREMENTS) if kind else MEASUREMENTS
    writer = V1Writer(settings.influx)
    try:
        report.health = _last_row(writer, DEVICE_HEALTH_MEASUREMENT, device_id)
        report.liveness = _last_row(writer, DEVICE_STATUS_MEASUREMENT, device_id)
        report.update = _last_row(writer, DEVICE_COMMAND_MEASUREMENT, device_id,
                                  f'AND "id" =~ /^{OTA_ID_PREFIX}/')
        for measurement in measurements:
            row = _last_row(writer, measurement, device_id)
            if row is not None:
                report.readings[measurement] = row
    except (WriteError, ValueError) as exc:
        report.influx_error = f"InfluxDB {settings.influx.url}: {exc}"
    finally:
        writer.close()
    return report


# -- output --------------------------------------------------------------------------------
def age(now_ms: int, then_ms: float) -> str:
    s = max(0.0, (now_ms - then_ms) / 1000)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 90 * 60:
        return f"{s / 60:.0f} min ago"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h ago"
    return f"{s / 86400:.1f} days ago"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _health_lines(health: dict[str, Any], now_ms: int) -> list[str]:
    parts = []
    for name, spec in HEALTH_FIELDS.items():
        if name in health and spec.type == "float" and name != "fault_count":
            unit = f" {spec.unit}" if spec.unit in ("V", "dBm", "s") else ""
            parts.append(f"{name} {_number(health[name])}{unit}")
    for name in ("fw", "reset_cause"):
        if health.get(name):
            parts.append(f"{name} {health[name]}")
    lines = [f"health    {age(now_ms, health['time'])}: {', '.join(parts) or '(no fields)'}"]
    faults = health.get("faults")
    lines.append(f"          faults: {faults}" if faults else "          faults: none")
    if health.get("config_error"):
        lines.append(f"          config error: {health['config_error']}")
    return lines


def format_report(report: Report, stale_after_s: float | None = None) -> str:
    now = report.now_ms
    d = report.device
    if d is not None:
        where = " / ".join(x for x in (d.district, d.site) if x)
        head = f"{report.device_id}  {d.kind}  {where}  (reports every {d.interval_s:g} s)"
    elif report.registry_error:
        head = f"{report.device_id}  (registry unreadable: {report.registry_error})"
    else:
        head = f"{report.device_id}  (not in the registry: the gateway rejects its data)"
    lines = [head]
    status = report.status.payload
    if status is None:
        lines.append("status    never seen (no retained status on the broker)")
    else:
        extra = ", ".join(f"{k} {status[k]}" for k in ("fw", "boot") if k in status)
        lines.append(f"status    {status.get('state', '?')}" + (f" ({extra})" if extra else ""))
    if report.influx_error:
        lines.append(f"storage   cannot read: {report.influx_error}")
    if report.liveness:
        live = report.liveness
        lines.append(f"gateway   {live.get('state', '?')} (reason {live.get('reason', '?')}, "
                     f"written {age(now, live['time'])})")
    if report.health:
        lines += _health_lines(report.health, now)
    elif not report.influx_error:
        lines.append("health    no health report stored")
    u = report.update
    if u:
        what = (u.get("state") or "?") if u.get("ok") else f"failed: {u.get('error')}"
        fw = f" {u['fw']}" if u.get("fw") else ""
        lines.append(f"update    {what}{fw} ({u.get('id')}, {age(now, u['time'])})")
    limit = stale_after_s or (3 * d.interval_s if d is not None else None)
    for measurement, row in report.readings.items():
        values = ", ".join(f"{k} {_number(v)}" for k, v in row.items() if k != "time")
        stale = limit is not None and (now - row["time"]) / 1000 > limit
        lines.append(f"readings  {measurement} {age(now, row['time'])}: {values}"
                     + ("  (stale)" if stale else ""))
    if not report.readings and not report.influx_error:
        lines.append("readings  none stored")
    verdict = "ONLINE" if report.online else (
        "NEVER SEEN" if status is None else "OFFLINE")
    lines.append(f"result    {verdict}")
    return "\n".join(lines)
