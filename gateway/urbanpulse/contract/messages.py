"""Validation of telemetry messages against CONTRACT.md v1, and v2's sealed envelope.

Policy, chosen so that bad input never costs good data:
- The message is the unit for everything about the envelope: over 64 KiB, not JSON, not an
  object, wrong or missing ``v``/``boot``/``seq``, ``samples`` not a list of 1 to 100. Such a
  message is rejected whole.
- The sample is the unit for its readings: a sample with an unknown key, a wrong type, NaN or
  infinity, a value out of range or a bad timestamp is rejected on its own, and the other
  samples of the message are stored. A sample is not split further: its fields were measured
  together and some only make sense together (``vehicles`` needs its ``period_s``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, create_model

from .vocabulary import (
    CONTRACT_VERSION,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES_PER_MESSAGE,
    MIN_TIMESTAMP_MS,
    PREV_PATTERN,
    SEALED_VERSION,
    VOCABULARY,
    Quantity,
)


class Reason(StrEnum):
    """Why a message or a sample was rejected; the values are stable metric labels."""

    # whole message
    TOO_LARGE = "too_large"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    NOT_JSON = "not_json"
    BAD_ENVELOPE = "bad_envelope"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_MAC = "bad_mac"  # v2: a MAC missing, or not the device key's
    REPLAYED = "replayed"  # v2: a (boot, seq) accepted before, now with other bytes
    # one sample
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    EMPTY_SAMPLE = "empty_sample"


MESSAGE_REASONS = (
    Reason.TOO_LARGE,
    Reason.BAD_TOPIC,
    Reason.UNKNOWN_DEVICE,
    Reason.NOT_JSON,
    Reason.BAD_ENVELOPE,
    Reason.UNSUPPORTED_VERSION,
    Reason.BAD_MAC,
    Reason.REPLAYED,
)
SAMPLE_REASONS = tuple(r for r in Reason if r not in MESSAGE_REASONS)


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    detail: str


class MessageRejected(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.rejection = Rejection(reason, detail)


@dataclass(frozen=True)
class Sample:
    t: int
    values: dict[str, float | bool]


@dataclass
class Telemetry:
    boot: int
    seq: int
    samples: list[Sample]
    rejected: list[Rejection] = field(default_factory=list)
    prev: str | None = None  # a sealed (v2) message's link to the one before


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    v: int
    boot: Annotated[int, Field(ge=0, le=2**32 - 1)]
    seq: Annotated[int, Field(ge=0, le=2**32 - 1)]
    samples: Annotated[
        list[Any], Field(min_length=1, max_length=MAX_SAMPLES_PER_MESSAGE)
    ]


class _SealedEnvelope(_Envelope):
    prev: Annotated[str, Field(pattern=PREV_PATTERN)]
    mac: str  # checked on the bytes, before parsing (contract/sealed.py)


def _quantity_type(q: Quantity) -> Any:
    if q.type == "bool":
        return StrictBool | None
    # strict: a JSON string "12" or a bool is a wrong type; ints are accepted as floats.
    return (
        Annotated[
            float,
            Field(ge=q.minimum, le=q.maximum, allow_inf_nan=False, strict=True),
        ]
        | None
    )


_SampleModel: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "SampleModel",
    __config__=ConfigDict(extra="forbid", strict=True),
    t=(int, ...),
    **{name: (_quantity_type(q), None) for name, q in VOCABULARY.items()},
)

# pydantic error types -> our reasons
_ERROR_REASONS: dict[str, Reason] = {
    "extra_forbidden": Reason.UNKNOWN_FIELD,
    "finite_number": Reason.NOT_FINITE,
    "greater_than_equal": Reason.OUT_OF_RANGE,
    "less_than_equal": Reason.OUT_OF_RANGE,
    "greater_than": Reason.OUT_OF_RANGE,
    "less_than": Reason.OUT_OF_RANGE,
}


def _sample_rejection(exc: ValidationError) -> Rejection:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    if loc == "t":
        return Rejection(Reason.BAD_TIMESTAMP, f"t: {err['msg']}")
    reason = _ERROR_REASONS.get(err["type"], Reason.WRONG_TYPE)
    return Rejection(reason, f"{loc}={err.get('input')!r}: {err['msg']}")


def json_object(payload: bytes) -> dict[str, Any]:
    """The envelope checks telemetry and health share: at most MAX_PAYLOAD_BYTES, JSON, an
    object; else MessageRejected. NaN/Infinity are parsed so that they are reported as such
    (by the field checks), not as bad JSON."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageRejected(Reason.TOO_LARGE, f"{len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        raw = pydantic_core.from_json(payload, allow_inf_nan=True)
    except ValueError as exc:
        raise MessageRejected(Reason.NOT_JSON, str(exc)) from None
    if not isinstance(raw, dict):
        raise MessageRejected(Reason.BAD_ENVELOPE, "payload is not a JSON object")
    return raw


def timestamp_rejection(t: int, latest_ms: int) -> Rejection | None:
    """Why ``t`` (ms) is not a plausible reading time, or None when it is."""
    if MIN_TIMESTAMP_MS <= t <= latest_ms:
        return None
    return Rejection(
        Reason.BAD_TIMESTAMP,
        f"t={t} is outside {MIN_TIMESTAMP_MS}..{latest_ms} "
        "(board clock not synced, or not in milliseconds?)",
    )


class TelemetryValidator:
    """Parses and validates telemetry payloads; ``max_future_ms`` bounds clock skew."""

    def __init__(self, max_future_ms: int = 600_000) -> None:
        self.max_future_ms = max_future_ms

    def parse(self, payload: bytes, now_ms: int | None = None, sealed: bool = False) -> Telemetry:
        """Return the valid samples and the sample rejections, or raise MessageRejected.
        ``sealed``: the payload ends with a MAC that was checked (a v2 message)."""
        raw = json_object(payload)
        version = SEALED_VERSION if sealed else CONTRACT_VERSION
        if not sealed and raw.get("v") == SEALED_VERSION:
            raise MessageRejected(
                Reason.BAD_MAC, 'missing: a version 2 message ends with its "mac" member')
        if "v" in raw and raw["v"] != version:
            raise MessageRejected(
                Reason.UNSUPPORTED_VERSION,
                f"v={raw['v']!r}, this gateway speaks v{CONTRACT_VERSION} "
                f"and v{SEALED_VERSION} (sealed, with a mac)",
            )
        try:
            env = (_SealedEnvelope if sealed else _Envelope).model_validate(raw)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"]) or "message"
            raise MessageRejected(Reason.BAD_ENVELOPE, f"{loc}: {err['msg']}") from None

        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        latest = now_ms + self.max_future_ms
        result = Telemetry(boot=env.boot, seq=env.seq, samples=[],
                           prev=env.prev if isinstance(env, _SealedEnvelope) else None)
        for index, raw_sample in enumerate(env.samples):
            rejection = self._check_sample(raw_sample, latest, result)
            if rejection is not None:
                result.rejected.append(
                    Rejection(rejection.reason, f"sample {index}: {rejection.detail}")
                )
        return result

    def _check_sample(self, raw: Any, latest_ms: int, out: Telemetry) -> Rejection | None:
        if not isinstance(raw, dict):
            return Rejection(Reason.WRONG_TYPE, "a sample must be a JSON object")
        # The model's fields are optional (None = not reported), so a JSON null must be
        # caught here: it is a value of the wrong type, not an absent one.
        for key, value in raw.items():
            if value is None:
                reason = Reason.BAD_TIMESTAMP if key == "t" else Reason.WRONG_TYPE
                return Rejection(reason, f"{key}=None: null is not a valid value")
        try:
            model = _SampleModel.model_validate(raw)
        except ValidationError as exc:
            return _sample_rejection(exc)
        values = model.model_dump(exclude_none=True)
        t = values.pop("t")
        if (bad_time := timestamp_rejection(t, latest_ms)) is not None:
            return bad_time
        if not values:
            return Rejection(Reason.EMPTY_SAMPLE, "a sample needs at least one quantity")
        out.samples.append(Sample(t=t, values=values))
        return None

