"""The gateway's hot path for telemetry (CONTRACT.md v1 and v2's sealed envelope): JSON bytes
to line protocol in one pass.

msgspec decodes a payload straight into typed structs whose constraints are the vocabulary's
(types, ranges, 1 to 100 samples, no unknown keys), in C; the lines are then joined from
pieces escaped once at import. Nothing per sample is built and thrown away: no dict of
values, no model, no per-field string but the value's own.

It decides only the common case. A message it accepts is one that the full validator
(messages.TelemetryValidator.parse) accepts whole, with the same values. Anything else (a
rejection of the message or of one sample, a null, NaN, a timestamp outside the window, an
empty sample) gives None, and the full validator decides, with its reasons and messages:
every rejection still reads as it always did. tests/contract/test_fastpath.py holds the two
paths to that on the contract's examples and on payloads made to find a difference.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .lineprotocol import escape_key, escape_measurement
from .vocabulary import (
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES_PER_MESSAGE,
    MIN_TIMESTAMP_MS,
    PREV_PATTERN,
    VOCABULARY,
)

_UINT32 = msgspec.Meta(ge=0, le=2**32 - 1)


def _field_type(name: str) -> Any:
    q = VOCABULARY[name]
    if q.type == "bool":
        return bool | msgspec.UnsetType
    finite = float("-inf") < q.minimum and q.maximum < float("inf")
    # msgspec's float takes JSON integers too (as the full validator does) but no bool.
    meta = msgspec.Meta(ge=q.minimum, le=q.maximum) if finite else msgspec.Meta(
        ge=q.minimum) if q.minimum > float("-inf") else msgspec.Meta(le=q.maximum)
    return Annotated[float, meta] | msgspec.UnsetType


# A sample: t and every quantity, each absent (UNSET) unless the board sent it.
_FIELDS = tuple(VOCABULARY)
_Sample = msgspec.defstruct(
    "_Sample",
    [("t", int)] + [(name, _field_type(name), msgspec.UNSET) for name in _FIELDS],
    forbid_unknown_fields=True,
)


_SAMPLES: Any = Annotated[
    list[_Sample],  # type: ignore[valid-type]
    msgspec.Meta(min_length=1, max_length=MAX_SAMPLES_PER_MESSAGE),
]


class _Message(msgspec.Struct, forbid_unknown_fields=True):
    v: Literal[1]
    boot: Annotated[int, _UINT32]
    seq: Annotated[int, _UINT32]
    samples: _SAMPLES


class _Sealed(msgspec.Struct, forbid_unknown_fields=True):
    v: Literal[2]
    boot: Annotated[int, _UINT32]
    seq: Annotated[int, _UINT32]
    samples: _SAMPLES
    prev: Annotated[str, msgspec.Meta(pattern=PREV_PATTERN)]
    mac: str  # checked on the bytes before (contract/sealed.py)


_DECODER = msgspec.json.Decoder(_Message)
_SEALED_DECODER = msgspec.json.Decoder(_Sealed)


# Per field, escaped once: its measurement (one string object per measurement, compared by
# identity below) and its "key=" prefix.
_MEASUREMENTS = {q.measurement: escape_measurement(q.measurement) for q in VOCABULARY.values()}
_FIELD_PIECES = {name: (_MEASUREMENTS[q.measurement], escape_key(name) + "=")
                 for name, q in VOCABULARY.items()}
_to_builtins = msgspec.to_builtins


class FastTelemetry(msgspec.Struct, frozen=True):
    """A telemetry message accepted whole: its envelope, its samples' time span and its lines."""

    boot: int
    seq: int
    t_min: int
    t_max: int
    lines: list[str]
    prev: str | None = None


def telemetry_lines(payload: bytes, tags: str, latest_ms: int,
                    sealed: bool = False) -> FastTelemetry | None:
    """The message's lines (``tags``: the device's escaped ``,k=v`` tag string), or None when
    the full validator must decide (see the module's docstring). ``latest_ms``: the newest
    plausible sample time. ``sealed``: a v2 message whose MAC was checked."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        msg: _Message | _Sealed = (_SEALED_DECODER if sealed else _DECODER).decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    lines: list[str] = []
    t_min = t_max = msg.samples[0].t
    # A dict per sample of the fields sent (UNSET ones left out), in vocabulary order, where
    # a measurement's fields are next to each other (vocabulary.py): one line per run.
    for fields in _to_builtins(msg.samples):
        t = fields.pop("t")
        if not MIN_TIMESTAMP_MS <= t <= latest_ms or not fields:
            return None
        t_min = min(t_min, t)
        t_max = max(t_max, t)
        stamp = f" {t}"
        measurement = ""
        parts: list[str] = []
        for name, value in fields.items():
            m, key = _FIELD_PIECES[name]
            if m is not measurement:
                if parts:
                    lines.append(measurement + tags + " " + ",".join(parts) + stamp)
                measurement, parts = m, []
            parts.append(key + _value(value))
        lines.append(measurement + tags + " " + ",".join(parts) + stamp)
    return FastTelemetry(msg.boot, msg.seq, t_min, t_max, lines,
                         msg.prev if isinstance(msg, _Sealed) else None)


def _value(x: float | bool) -> str:
    # As lineprotocol.encode_field_value writes them; finite by the decoder's constraints.
    if x is True:
        return "true"
    if x is False:
        return "false"
    return repr(x)
