"""Running a real gateway in-process against the test services, and publishing to it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from support.services import Services, influx_query
from urbanpulse.config import (
    ArchiveSettings,
    InfluxSettings,
    KpiSettings,
    LogSettings,
    MetricsSettings,
    MqttSettings,
    RegistrySettings,
    Settings,
    SpoolSettings,
    StatsSettings,
)
from urbanpulse.service.gateway import Gateway

REGISTRY_CSV = """device_id,kind,district,site,lat,lon,interval_s
air-north-01,air,north,Town Hall,52.3702,4.8952,60
noise-centre-01,noise,centre,Market Square,52.3731,4.8926,60
park-south-01,parking,south,,,,30
light-north-01,streetlight,north,Canal Street,,,60
"""


def gateway_settings(services: Services, registry: Path, client_id: str, **influx: Any) -> Settings:
    return Settings(
        mqtt=MqttSettings(host=services.mqtt_host, port=services.mqtt_port, client_id=client_id),
        influx=InfluxSettings(url=services.influx_url, database=services.database, **influx),
        registry=RegistrySettings(path=registry, reload_interval_s=0.2),
        log=LogSettings(rejection_interval_s=0),
        stats=StatsSettings(interval_s=0.5),
        # Next to the test's registry: a spool left by one test must never replay into another.
        spool=SpoolSettings(path=registry.parent / f"spool-{client_id}"),
        archive=ArchiveSettings(path=registry.parent / f"archive-{client_id}"),
        # Tests that need them turn these on: many gateways run at once here.
        metrics=MetricsSettings(port=0),
        kpi=KpiSettings(enabled=False),
    )


@contextmanager
def running_gateway(settings: Settings, stop_timeout_s: float = 8.0) -> Iterator[Gateway]:
    gateway = Gateway(settings)
    gateway.start()
    runner = threading.Thread(target=gateway.run, daemon=True)
    runner.start()
    try:
        assert gateway.connected.wait(10), "gateway did not connect to the broker"
        yield gateway
    finally:
        gateway.request_stop()
        runner.join(5)
        gateway.stop(stop_timeout_s)


class Publisher:
    """A paho QoS 1 publisher, as a board would be."""

    def __init__(self, services: Services, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect(services.mqtt_host, services.mqtt_port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str | dict[str, Any], qos: int = 1) -> None:
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        info = self.client.publish(topic, data, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published(), f"publish to {topic} was not acknowledged by the broker"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()



def count_points(services: Services, measurement: str, field: str) -> int:
    series = influx_query(services, f'SELECT count("{field}") FROM "{measurement}"')
    return int(series[0]["values"][0][1]) if series else 0


def rows(services: Services, query: str) -> list[dict[str, Any]]:
    """Query result as dicts, one per row, across all series (tags merged in)."""
    out = []
    for series in influx_query(services, query):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags", {}))
            out.append(row)
    return out
