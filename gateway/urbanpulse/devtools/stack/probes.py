"""Whether the stack's services answer, and InfluxDB's first-start set-up (database, admin)."""

from __future__ import annotations

import errno
import json
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import urllib3
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from urbanpulse.influx import influxql

from .services import (
    MOSQUITTO,
    POLL_INTERVAL_S,
    PROBE_TIMEOUT_S,
    Service,
    StackError,
    StackSettings,
    host_port,
)

# --- probes -------------------------------------------------------------------------------------


def port_free(host: str, port: int) -> bool:
    # SO_REUSEADDR as both servers use it: a port in TIME_WAIT is free, a listener is not.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise StackError(f"cannot bind {host_port(host, port)}: {exc}") from exc
    return True


def answers(svc: Service, settings: StackSettings, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    if svc.name == MOSQUITTO:
        ca = settings.tls_ca_file if settings.secure else None
        return _mqtt_answers(settings.host, settings.mqtt_port, timeout_s, ca)
    return _influx_answers(settings.host, settings.influx_port, timeout_s)


def _mqtt_answers(host: str, port: int, timeout_s: float, tls_ca: Path | None = None) -> bool:
    """An MQTT CONNECT answered by a successful CONNACK (a bare TCP accept proves little).
    With ``tls_ca`` (the secure mode: TLS only, no anonymous clients), over TLS, and a
    refusal counts too: the broker answered."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"urbanpulse-stack-probe-{uuid.uuid4().hex[:12]}",
        clean_session=True,
    )
    client.connect_timeout = timeout_s
    if tls_ca is not None:
        client.tls_set(ca_certs=str(tls_ca), cert_reqs=ssl.CERT_REQUIRED)
    result: list[bool] = []

    def on_connect(
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        result.append(tls_ca is not None or not reason_code.is_failure)

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return False
    try:
        deadline = time.monotonic() + timeout_s
        while not result and time.monotonic() < deadline:
            if client.loop(timeout=POLL_INTERVAL_S) != mqtt.MQTT_ERR_SUCCESS:
                break
        return bool(result) and result[0]
    finally:
        client.disconnect()


def _influx_answers(host: str, port: int, timeout_s: float) -> bool:
    try:
        response = _influx_request(host, port, "GET", "/ping", timeout_s=timeout_s)
    except (urllib3.exceptions.HTTPError, OSError):
        return False
    return response.status == 204


def _influx_request(
    host: str,
    port: int,
    method: str,
    path: str,
    fields: dict[str, str] | None = None,
    timeout_s: float = 5.0,
    auth: tuple[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    headers = urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}") if auth else None
    with urllib3.HTTPConnectionPool(
        host, port, timeout=urllib3.Timeout(total=timeout_s), retries=False, maxsize=1
    ) as pool:
        if fields is None:
            return pool.request(method, path, headers=headers)
        return pool.request(
            method, path, fields=fields, encode_multipart=False, headers=headers
        )


def _influx_admin_query(settings: StackSettings, q: str, deadline: float) -> str | None:
    """Run q as the admin (if auth is on); the error text InfluxDB gave, or None."""
    try:
        response = _influx_request(
            settings.host,
            settings.influx_port,
            "POST",
            "/query",
            fields={"q": q},
            timeout_s=max(deadline - time.monotonic(), 1.0),
            auth=settings.influx_admin,
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return str(exc)
    body = response.data.decode(errors="replace")
    error: Any = None
    try:
        parsed = json.loads(body)
        error = parsed.get("error") or next(
            (r.get("error") for r in parsed.get("results", []) if r.get("error")), None
        )
    except (ValueError, AttributeError):
        error = body
    if response.status != 200 or error:
        return f"HTTP {response.status}: {error or body}"
    return None


def create_database(settings: StackSettings, deadline: float) -> None:
    name = settings.database
    if not name:
        raise StackError("the database name must not be empty")
    if settings.influx_admin is not None:
        user, password = settings.influx_admin
        # Allowed without credentials while no user exists; later starts find it there.
        error = _influx_admin_query(
            settings,
            f"CREATE USER {influxql.ident(user)} WITH PASSWORD {influxql.string(password)} "
            "WITH ALL PRIVILEGES",
            deadline,
        )
        if error is not None and "already exists" not in error:
            raise StackError(f"cannot create the InfluxDB admin user {user!r}: {error}")
    error = _influx_admin_query(settings, f"CREATE DATABASE {influxql.ident(name)}", deadline)
    if error is not None:
        raise StackError(f"cannot create database {name!r}: {error}")
    for user, password, privilege in settings.influx_users:
        if privilege not in ("ALL", "READ", "WRITE"):
            raise StackError(f"influx user {user!r}: privilege must be ALL, READ or WRITE")
        for statement in (
            f"CREATE USER {influxql.ident(user)} WITH PASSWORD {influxql.string(password)}",
            f"SET PASSWORD FOR {influxql.ident(user)} = {influxql.string(password)}",
            f"GRANT {privilege} ON {influxql.ident(name)} TO {influxql.ident(user)}",
        ):
            error = _influx_admin_query(settings, statement, deadline)
            if error is not None and "already exists" not in error:
                raise StackError(f"cannot set up the InfluxDB user {user!r}: {error}")


