"""Boards' answers to commands (``{prefix}/{id}/cmd/ack``) to ``device_command`` points, shown
on the network dashboard: what each board was told, and what it said.

Payload: ``{"id": "c-17", "ok": true, ...}`` or ``{"id": "c-17", "ok": false, "error":
"retained"}`` (``id`` is null when the command was not even JSON). An answer carries no time of
its own: it is stored at its arrival (one ms later than the board's previous answer at the
least, so that no two answers ever share a point). ``ok`` is a bool, ``id`` and ``error``
strings, and an update's ``state`` and ``fw`` (contract/ota.py) strings too; other members (a
``flush``'s ``buffered``) are left out. Over MAX_ACK_BYTES, not JSON,
not an object or without a bool ``ok``: rejected whole, counted and logged like any message.
"""

from __future__ import annotations

import time

from urbanpulse.contract.lineprotocol import encode_fields
from urbanpulse.contract.messages import MessageRejected, Reason, json_object
from urbanpulse.contract.vocabulary import DEVICE_COMMAND_MEASUREMENT, MAX_ACK_BYTES
from urbanpulse.registry.devices import RegisteredDevice

from .channels import DeviceChannel

# The string members stored, each cut at its limit.
_STRINGS = (("id", 64), ("error", 200), ("state", 16), ("fw", 32))


def parse_ack(payload: bytes) -> dict[str, bool | str]:
    """The fields to store, or raise MessageRejected."""
    if len(payload) > MAX_ACK_BYTES:
        raise MessageRejected(Reason.TOO_LARGE, f"{len(payload)} bytes, limit {MAX_ACK_BYTES}")
    raw = json_object(payload)
    ok = raw.get("ok")
    if not isinstance(ok, bool):
        raise MessageRejected(Reason.BAD_ENVELOPE, f"ok={ok!r}: must be true or false")
    fields: dict[str, bool | str] = {"ok": ok}
    for key, limit in _STRINGS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise MessageRejected(Reason.BAD_ENVELOPE, f"{key}={value!r}: must be a string")
        fields[key] = value[:limit]
    return fields


class AckHandler:
    """(topic, payload) of a command's answer to the point to store; counts and logs."""

    def __init__(self, channel: DeviceChannel) -> None:
        self._channel = channel
        # Per device, the last time stamped: two answers in one ms would be one point (same
        # series and time), so a later one gets the next ms.
        self._last_ms: dict[str, int] = {}

    def handle(self, topic: str, payload: bytes) -> tuple[RegisteredDevice | None, list[str]]:
        received = self._channel.receive(topic, payload, parse_ack)
        if received is None:
            return None, []
        device, fields = received
        self._channel.count_accepted()
        device_id = device.device.device_id
        t = max(time.time_ns() // 1_000_000, self._last_ms.get(device_id, 0) + 1)
        self._last_ms[device_id] = t
        point = f"{DEVICE_COMMAND_MEASUREMENT}{device.tag_string} {encode_fields(fields)} {t}"
        return device, [point]
