"""Board health messages (``{prefix}/{id}/health``) to ``device_health`` points.

Payload (every field optional but ``t``)::

    {"t": 1763700000123, "battery": 3.91, "rssi": -67, "heap_free": 41234, "uptime": 3600,
     "buffered": 0, "dropped": 0, "fw": "0.4.0", "reset_cause": "power",
     "faults": "bme280:no_ack,pms5003:checksum", "config_error": "sensors[1].pin: ..."}

A health message is one sample of the board's state. Its fields are independent readings, so
a bad field (out of range, wrong type, unknown key) is rejected on its own, counted by reason
like a rejected telemetry sample, and the other fields are stored. The envelope (size, JSON,
an object, ``t``) is the unit for the message, as for telemetry. Numbers are stored as floats,
strings as strings, plus ``fault_count`` (entries in ``faults``). Tags come from the registry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, StrictInt, TypeAdapter, ValidationError

from urbanpulse.contract.lineprotocol import encode_fields
from urbanpulse.contract.messages import (
    MessageRejected,
    Reason,
    Rejection,
    json_object,
    timestamp_rejection,
)
from urbanpulse.contract.vocabulary import (
    DEVICE_HEALTH_MEASUREMENT,
    HEALTH_FAULT_COUNT,
    HEALTH_FIELDS,
    RESET_CAUSES,
    HealthField,
)
from urbanpulse.registry.devices import RegisteredDevice

from .channels import DeviceChannel


@dataclass
class Health:
    t: int
    fields: dict[str, float | str]
    rejected: list[Rejection] = field(default_factory=list)


def _adapter(spec: HealthField) -> TypeAdapter[Any]:
    if spec.type == "str":
        return TypeAdapter(Annotated[str, Field(max_length=spec.max_length, strict=True)])
    return TypeAdapter(
        Annotated[float, Field(ge=spec.minimum, le=spec.maximum, allow_inf_nan=False, strict=True)]
    )


_ADAPTERS = {name: _adapter(spec) for name, spec in HEALTH_FIELDS.items()}
_T = TypeAdapter(StrictInt)

_ERROR_REASONS: dict[str, Reason] = {
    "finite_number": Reason.NOT_FINITE,
    "greater_than_equal": Reason.OUT_OF_RANGE,
    "less_than_equal": Reason.OUT_OF_RANGE,
    "string_too_long": Reason.OUT_OF_RANGE,
}


def _check_field(name: str, value: Any) -> float | str | Rejection:
    spec = HEALTH_FIELDS.get(name)
    if spec is None:
        return Rejection(Reason.UNKNOWN_FIELD, f"{name}={value!r}: not a health field")
    if value is None:
        return Rejection(Reason.WRONG_TYPE, f"{name}=None: null is not a valid value")
    try:
        checked = _ADAPTERS[name].validate_python(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        reason = _ERROR_REASONS.get(err["type"], Reason.WRONG_TYPE)
        return Rejection(reason, f"{name}={value!r}: {err['msg']}")
    if isinstance(checked, str):
        if any(ord(c) < 32 or ord(c) == 127 for c in checked):
            return Rejection(Reason.OUT_OF_RANGE, f"{name}={value!r}: control characters")
        if name == "reset_cause" and checked not in RESET_CAUSES:
            return Rejection(
                Reason.OUT_OF_RANGE, f"{name}={value!r}: must be one of {', '.join(RESET_CAUSES)}"
            )
        return checked
    return float(checked)


def parse_health(payload: bytes, now_ms: int | None = None, max_future_ms: int = 600_000) -> Health:
    """The valid fields and the field rejections, or raise MessageRejected."""
    raw = json_object(payload)
    if "t" not in raw:
        raise MessageRejected(Reason.BAD_TIMESTAMP, "t is missing")
    try:
        t = _T.validate_python(raw["t"])
    except ValidationError:
        raise MessageRejected(Reason.BAD_TIMESTAMP, f"t={raw['t']!r}: not an integer") from None
    latest = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) + max_future_ms
    if (bad_time := timestamp_rejection(t, latest)) is not None:
        raise MessageRejected(bad_time.reason, bad_time.detail)
    health = Health(t=t, fields={})
    for name, value in raw.items():
        if name == "t":
            continue
        checked = _check_field(name, value)
        if isinstance(checked, Rejection):
            health.rejected.append(checked)
        else:
            health.fields[name] = checked
    faults = health.fields.get("faults")
    if isinstance(faults, str):
        health.fields[HEALTH_FAULT_COUNT] = float(
            sum(1 for entry in faults.split(",") if entry.strip())
        )
    return health


def health_point(device: RegisteredDevice, health: Health) -> str | None:
    """The ``device_health`` point, or None when no field is left to store."""
    if not health.fields:
        return None
    fields = encode_fields(health.fields)
    return f"{DEVICE_HEALTH_MEASUREMENT}{device.tag_string} {fields} {health.t}"


class HealthHandler:
    """(topic, payload) of a health message to the points to store; counts and logs."""

    def __init__(self, channel: DeviceChannel, max_future_ms: int = 600_000) -> None:
        self._channel = channel
        self._max_future_ms = max_future_ms

    def handle(self, topic: str, payload: bytes) -> tuple[RegisteredDevice | None, list[str]]:
        """The device (None when the message was rejected whole) and its points."""
        received = self._channel.receive(
            topic, payload, lambda p: parse_health(p, max_future_ms=self._max_future_ms)
        )
        if received is None:
            return None, []
        device, health = received
        for rejection in health.rejected:
            self._channel.reject(rejection, topic, what="field")
        self._channel.count_accepted()
        point = health_point(device, health)
        return device, [] if point is None else [point]
