"""InfluxDB line protocol encoding with escaping that no value can break out of.

Rules (InfluxDB 1.x-3.x line protocol):
- measurement: escape ``,`` and space;
- tag keys, tag values, field keys: escape ``,``, ``=`` and space;
- string field values: double-quoted, escape ``"`` and ``\\``.

Line protocol has no escape for a newline in a tag or key, and a trailing backslash in a tag
would escape the separator after it; both could inject a point. Such strings are refused here
(the registry refuses them earlier, with a message naming the file and row).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_FIELD_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\", "\n": r"\n", "\r": r"\r"})

FieldValue = float | int | bool | str


class LineProtocolError(ValueError):
    """A name or value that cannot be represented safely in line protocol."""


def check_tag_text(text: str) -> str | None:
    """Why ``text`` cannot be a tag key/value (or measurement/field key), or None if it can."""
    if not text:
        return "must not be empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "must not contain control characters (newline, tab, ...)"
    if "\\" in text:
        return "must not contain a backslash"
    return None


def _checked(text: str, what: str) -> str:
    problem = check_tag_text(text)
    if problem is not None:
        raise LineProtocolError(f"{what} {text!r} {problem}")
    return text


def escape_measurement(name: str) -> str:
    return _checked(name, "measurement").translate(_MEASUREMENT_ESCAPES)


def escape_key(key: str) -> str:
    """Escape a tag key, tag value or field key."""
    return _checked(key, "key").translate(_KEY_ESCAPES)


def encode_tags(tags: Mapping[str, str]) -> str:
    """``,k=v,k2=v2`` sorted by key (InfluxDB's preferred order), empty values left out."""
    return "".join(
        f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v != ""
    )


def encode_field_value(value: FieldValue) -> str:
    # bool before int: bool is a subclass of int in Python.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field value {value!r} is not finite")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.translate(_STRING_FIELD_ESCAPES) + '"'
    raise LineProtocolError(f"unsupported field value type {type(value).__name__}")


def encode_fields(fields: Mapping[str, FieldValue]) -> str:
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    return ",".join(f"{escape_key(k)}={encode_field_value(v)}" for k, v in fields.items())


def encode_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    timestamp: int | None = None,
) -> str:
    """One line of line protocol; ``timestamp`` in the write's precision (ms here)."""
    line = escape_measurement(measurement) + encode_tags(tags) + " " + encode_fields(fields)
    return line if timestamp is None else f"{line} {timestamp}"
