"""`urbanpulse cmd send`: commands to boards, signed with the city's command key
(CONTRACT.md v2, "Signed commands"), and each board's answer.

The operator's own broker user publishes (the policy lets operators write ``cmd`` and read
``cmd/ack``); the private key never leaves the operator's machine. Each board gets its own
payload: ``device`` names it, ``n`` is the time in milliseconds (so operators on several
machines need no shared counter; a board refuses an ``n`` not above the last it accepted,
which also catches a clock gone back), ``exp`` is a few minutes ahead.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from urbanpulse.broker.subscriber import BrokerError, subscribed
from urbanpulse.config import MqttSettings
from urbanpulse.contract.signing import FIXED_CONFIG_KEYS, UNSAFE_CONFIG_KEYS, sign_command

DEFAULT_TTL_S = 300
_last_n = 0


class CommandError(RuntimeError):
    """The commands could not be sent (broker unreachable or refusing us, bad arguments)."""


@dataclass(frozen=True)
class Answer:
    device_id: str
    ack: dict[str, Any] | None  # None: no answer in time

    @property
    def ok(self) -> bool:
        return self.ack is not None and self.ack.get("ok") is True

    def describe(self) -> str:
        if self.ack is None:
            return "no answer (board offline, or not subscribed)"
        if self.ok:
            extra = {k: v for k, v in self.ack.items() if k not in ("id", "ok")}
            return "ok" + (f" {json.dumps(extra)}" if extra else "")
        return f"refused: {self.ack.get('error')}"


def next_counter() -> int:
    """The time in ms, strictly increasing within this process."""
    global _last_n
    _last_n = max(_last_n + 1, time.time_ns() // 1_000_000)
    return _last_n


def command_for(device_id: str, op: str, params: Mapping[str, Any], key: Ed25519PrivateKey,
                cid: str, ttl_s: float = DEFAULT_TTL_S, unsafe: bool = False) -> bytes:
    """The signed payload of ``op`` for one board."""
    reserved = {"id", "op", "device", "n", "exp", "sig", "unsafe"} & set(params)
    if reserved:
        raise CommandError(f"{', '.join(sorted(reserved))}: set by urbanpulse, not an argument")
    if op == "config":
        config = params.get("config")
        if not isinstance(config, dict) or not config:
            raise CommandError("config needs config='{...}', a non-empty JSON object")
        fixed = sorted(set(config) & set(FIXED_CONFIG_KEYS))
        if fixed:
            raise CommandError(f"config changes {', '.join(fixed)}: set over USB only "
                               "(urbanpulse provision), never by a command")
        risky = sorted(set(config) & set(UNSAFE_CONFIG_KEYS))
        if risky and not unsafe:
            raise CommandError(f"config changes {', '.join(risky)}: a wrong value can cut the "
                               "board off for good; add --unsafe if you mean it")
    body: dict[str, Any] = {"id": cid, "op": op, **params, "device": device_id,
                            "n": next_counter(), "exp": int(time.time() + ttl_s)}
    if unsafe:
        body["unsafe"] = True
    return sign_command(body, key)


def send(settings: MqttSettings, devices: Iterable[str], op: str, params: Mapping[str, Any],
         key: Ed25519PrivateKey, ttl_s: float = DEFAULT_TTL_S, wait_s: float = 30.0,
         unsafe: bool = False) -> list[Answer]:
    """Sign and publish ``op`` to each board, then wait up to ``wait_s`` for their answers."""
    cid = f"c-{secrets.token_hex(4)}"
    payloads = {d: command_for(d, op, params, key, cid, ttl_s, unsafe) for d in devices}
    prefix = settings.topic_prefix
    acks: dict[str, dict[str, Any]] = {}
    all_in = threading.Event()

    def on_message(msg: mqtt.MQTTMessage) -> None:
        device = msg.topic[len(prefix) + 1:].split("/", 1)[0]
        try:
            ack = json.loads(msg.payload)
        except ValueError:
            return
        if device in payloads and isinstance(ack, dict) and ack.get("id") == cid:
            acks[device] = ack
            if len(acks) == len(payloads):
                all_in.set()

    try:
        with subscribed(settings, f"{prefix}/+/cmd/ack", on_message, "cmd") as client:
            sent = [client.publish(f"{prefix}/{d}/cmd", p, qos=1) for d, p in payloads.items()]
            for info in sent:
                info.wait_for_publish(10)
                if not info.is_published():
                    raise CommandError(f"broker {settings.host}:{settings.port} did not take "
                                       "the command")
            all_in.wait(wait_s)
    except BrokerError as exc:
        raise CommandError(str(exc)) from None
    return [Answer(d, acks.get(d)) for d in payloads]
