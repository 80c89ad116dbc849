"""Test helpers: a private Mosquitto and InfluxDB (urbanpulse.devtools.stack) on free ports.

Imported by conftest.py and test modules. Tests that need the services fail, never skip,
when the binaries are missing: a skipped integration test hides a broken setup.
"""

from __future__ import annotations

import json
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3

from urbanpulse.devtools import stack
from urbanpulse.devtools.stack import processes
from urbanpulse.devtools.stack.services import Service, stack_services

NOT_INSTALLED = "Mosquitto/InfluxDB not installed: run `make setup` (or `urbanpulse stack up`)"

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=30))


@dataclass(frozen=True)
class Services:
    settings: stack.StackSettings
    mqtt_host: str
    mqtt_port: int
    influx_url: str
    database: str


class InfluxQueryError(RuntimeError):
    """InfluxDB answered a query with an HTTP or statement error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_services(state_dir: Path) -> Services:
    """Start Mosquitto and InfluxDB with their state in state_dir, on free ports."""
    mqtt_port, influx_port, rpc_port = free_ports(3)
    settings = stack.StackSettings(
        state_dir=state_dir,
        mqtt_port=mqtt_port,
        influx_port=influx_port,
        influx_rpc_port=rpc_port,
    )
    try:
        stack.up(settings)
    except stack.NotInstalledError as exc:
        pytest.fail(f"{NOT_INSTALLED}\n({exc})", pytrace=False)
    return services_for(settings)


def services_for(settings: stack.StackSettings) -> Services:
    """The addresses of a stack started (or to be started) with these settings."""
    return Services(
        settings=settings,
        mqtt_host=settings.host,
        mqtt_port=settings.mqtt_port,
        influx_url=f"http://{settings.host}:{settings.influx_port}",
        database=settings.database,
    )


def stop_services(s: Services) -> None:
    stack.down(s.settings)


def stop_service(services: Services, name: str) -> None:
    """Stop one of the two services (SIGTERM: Mosquitto saves its persistence file first).

    urbanpulse.devtools.stack only stops both at once; its pid check (only a process running
    our binary with our config is signalled) is reused here.
    """
    svc = stack_service(services.settings, name)
    pid = processes.our_pid(svc)
    assert pid is not None, f"{name} is not running"
    processes.stop_all([(svc, pid)], timeout_s=30)


def stack_service(settings: stack.StackSettings, name: str) -> Service:
    """One of the stack's services (stack.MOSQUITTO or stack.INFLUXDB): its pid file, ports."""
    return next(s for s in stack_services(settings) if s.name == name)


def start_service(services: Services, name: str) -> None:
    """Start one service of a running stack again (`stack.up` starts whatever is down)."""
    svc = stack_service(services.settings, name)
    processes.spawn(svc, processes.find_binary(svc), services.settings)


def start_stopped_services(services: Services) -> None:
    """`stack up` starts whichever service is not running and waits until it answers."""
    stack.up(services.settings, timeout_s=60)


def influx_query(s: Services, q: str) -> list[dict[str, Any]]:
    """The series of the first statement's result ([] if it has none); raises on any error."""
    response = _http.request(
        "GET", f"{s.influx_url}/query", fields={"db": s.database, "epoch": "ms", "q": q}
    )
    results = _results(response, q)
    series: list[dict[str, Any]] = results[0].get("series", []) if results else []
    return series


def influx_write(s: Services, lines: str, precision: str = "ms") -> None:
    """Write line protocol; raises unless InfluxDB answers 204."""
    response = _http.request(
        "POST",
        f"{s.influx_url}/write?{urlencode({'db': s.database, 'precision': precision})}",
        body=lines.encode(),
    )
    if response.status != 204:
        raise InfluxQueryError(f"write: HTTP {response.status}: {response.data.decode()[:500]}")


def influx_drop_and_create(s: Services) -> None:
    """A fresh, empty database between tests."""
    name = '"' + s.database.replace("\\", "\\\\").replace('"', '\\"') + '"'
    q = f"DROP DATABASE {name}; CREATE DATABASE {name}"
    response = _http.request(
        "POST", f"{s.influx_url}/query", fields={"q": q}, encode_multipart=False
    )
    _results(response, q)


def _results(response: urllib3.BaseHTTPResponse, q: str) -> list[dict[str, Any]]:
    body = response.data.decode(errors="replace")
    try:
        payload = json.loads(body)
    except ValueError:
        raise InfluxQueryError(f"{q!r}: HTTP {response.status}: {body[:500]}") from None
    if response.status != 200 or "error" in payload:
        raise InfluxQueryError(f"{q!r}: HTTP {response.status}: {payload.get('error', body)}")
    results: list[dict[str, Any]] = payload.get("results", [])
    for result in results:
        if "error" in result:
            raise InfluxQueryError(f"{q!r}: {result['error']}")
    return results


def clear_retained(s: Services, timeout_s: float = 5.0) -> int:
    """Delete every retained message on the shared broker (boards' status, for one): a later
    test's gateway would otherwise receive them. Returns how many were cleared."""
    import threading
    import uuid

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    marker = f"test-marker/{uuid.uuid4().hex}"
    retained: set[str] = set()
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == marker:
            done.set()  # retained messages come right after SUBACK, before this
        elif msg.retain and msg.payload:
            retained.add(msg.topic)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cleaner-{uuid.uuid4().hex}")
    client.on_message = on_message
    client.connect(s.mqtt_host, s.mqtt_port)
    client.loop_start()
    try:
        client.subscribe("#", qos=1)
        client.publish(marker, b"x", qos=1)
        if not done.wait(timeout_s):
            raise AssertionError(f"broker at {s.mqtt_host}:{s.mqtt_port} did not echo {marker}")
        for topic in sorted(retained):
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(timeout_s)
    finally:
        client.loop_stop()
        client.disconnect()
    return len(retained)


def points_by_time(services: Services, measurement: str, **tags: str) -> dict[int, dict[str, Any]]:
    """``measurement``'s points with these tag values: time (ms) -> fields."""
    where = " AND ".join(f"\"{k}\" = '{v}'" for k, v in tags.items())
    series = influx_query(services, f'SELECT * FROM "{measurement}" WHERE {where}')
    out: dict[int, dict[str, Any]] = {}
    for s in series:
        for row in s["values"]:
            out[int(row[0])] = dict(zip(s["columns"][1:], row[1:], strict=True))
    return out


def mosquitto_password_file(path: Path, passwords: dict[str, str]) -> Path:
    """A Mosquitto password file (0600) with these users, written by `mosquitto_passwd`."""
    path.touch(mode=0o600)
    for user, password in passwords.items():
        result = subprocess.run(["mosquitto_passwd", "-b", str(path), user, password],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"mosquitto_passwd failed ({NOT_INSTALLED}): {result.stderr}",
                        pytrace=False)
    return path
