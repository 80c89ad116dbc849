"""A short-lived client of the broker for the command-line tools (`board check`, `cmd send`):
connected with the configured credentials, subscribed, its network loop running."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from urbanpulse.config import MqttSettings

from .credentials import apply_credentials


class BrokerError(RuntimeError):
    """The broker could not be reached, refused us, or refused the subscription."""


@contextmanager
def subscribed(settings: MqttSettings, topic: str,
               on_message: Callable[[mqtt.MQTTMessage], None], name: str,
               timeout_s: float = 10.0) -> Iterator[mqtt.Client]:
    """A client subscribed to ``topic`` (QoS 1) once the broker confirmed it; disconnected on
    leaving. Its client id is the username where the broker binds them (the secure mode), else
    ``urbanpulse-{name}-`` and a random suffix.

    Never as the gateway: a broker that binds client ids to usernames would hand its
    persistent session to this client, and a clean start would throw away its backlog."""
    if settings.username and settings.username == settings.client_id:
        raise BrokerError(
            f"{settings.username} is the gateway's own broker identity: connecting as it "
            "would take over the gateway's session; use a configuration with an operator's "
            "user (the secure stack writes operator.toml)")
    v5 = settings.protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=settings.username or f"urbanpulse-{name}-{uuid.uuid4().hex[:10]}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    apply_credentials(client, settings)
    ready = threading.Event()
    problems: list[str] = []

    def on_connect(c: mqtt.Client, _u: Any, _f: mqtt.ConnectFlags, rc: ReasonCode,
                   _p: Properties | None) -> None:
        if rc.is_failure:
            problems.append(f"refused us: {rc}")
            ready.set()
        else:
            c.subscribe(topic, qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode],
                     _p: Properties | None) -> None:
        if codes and codes[0].is_failure:
            problems.append(f"refused the subscription to {topic}: {codes[0]}")
        ready.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda _c, _u, msg: on_message(msg)
    where = f"broker {settings.host}:{settings.port}"
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except OSError as exc:
        raise BrokerError(f"{where} unreachable: {exc}") from None
    client.loop_start()
    try:
        if not ready.wait(timeout_s):
            raise BrokerError(f"{where} did not answer within {timeout_s:g} s")
        if problems:
            raise BrokerError(f"{where} {problems[0]}")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()
