"""The hot path (contract/fastpath.py) against the full validator (contract/messages.py).

The hot path may decline any message (the full validator then decides), but a message it
accepts must be one the full validator accepts whole, with the very same lines, envelope and
time span. Checked on every kind's valid sample, on the vocabulary's edge values, and on
several thousand payloads mutated to find a difference (seeded: the same ones every run).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from support.contract_examples import NOW, VALID_BY_KIND, message
from urbanpulse.contract.fastpath import telemetry_lines
from urbanpulse.contract.messages import MessageRejected, TelemetryValidator
from urbanpulse.contract.sealed import genesis, seal
from urbanpulse.contract.vocabulary import MIN_TIMESTAMP_MS, VOCABULARY
from urbanpulse.registry.devices import Device, RegisteredDevice, Registry
from urbanpulse.service.telemetry import telemetry_points

MAX_FUTURE_MS = 600_000
DEVICE: RegisteredDevice = Registry(
    [Device(device_id="air-north-01", kind="air", district="north", site="Town Hall")]
).get("air-north-01")  # type: ignore[assignment]


def same_as_full_path(payload: bytes) -> bool:
    """Assert the two paths agree on payload; True if the hot path accepted it."""
    fast = telemetry_lines(payload, DEVICE.tag_string, NOW + MAX_FUTURE_MS)
    if fast is None:
        return False
    try:
        full = TelemetryValidator(MAX_FUTURE_MS).parse(payload, now_ms=NOW)
    except MessageRejected as exc:
        raise AssertionError(f"hot path took {payload!r}, full path refused it: {exc}") from None
    assert full.rejected == [], payload
    assert fast.lines == telemetry_points(DEVICE, full), payload
    times = [s.t for s in full.samples]
    assert (fast.boot, fast.seq, fast.t_min, fast.t_max) == (
        full.boot, full.seq, min(times), max(times)), payload
    return True


@pytest.mark.parametrize("kind", sorted(VALID_BY_KIND))
def test_every_kinds_valid_message_takes_the_hot_path_with_the_same_lines(kind: str) -> None:
    samples = [{"t": NOW - 1000 * i, **VALID_BY_KIND[kind]} for i in range(5)]
    assert same_as_full_path(message(*samples))


def test_edge_values_take_the_hot_path_and_whole_numbers_are_written_as_floats() -> None:
    floats = [n for n, q in VOCABULARY.items() if q.type == "float"]
    for name in floats:
        q = VOCABULARY[name]
        for value in (q.minimum, q.maximum, int(q.minimum), -0.0 if q.minimum <= 0 else q.maximum):
            assert same_as_full_path(message({"t": MIN_TIMESTAMP_MS, name: value})), name
    fast = telemetry_lines(message({"t": NOW, "pm25": 12}), DEVICE.tag_string, NOW)
    assert fast is not None and fast.lines[0].split(" ")[-2] == "pm25=12.0"


# Replacements that each break one rule of the contract (or try to slip past one).
ODD_VALUES: list[Any] = [
    None, True, False, "12", "", [], {}, 1e400, -1e400, 10**30, -(10**30), 2**64, 2**32,
    2**32 - 1, -1, 0, 0.5, 1.0, 1e-320, float("nan"), float("inf"), MIN_TIMESTAMP_MS - 1,
    NOW + MAX_FUTURE_MS, NOW + MAX_FUTURE_MS + 1, 1.7e308,
]


def mutate(rng: random.Random, doc: dict[str, Any]) -> bytes:
    """A JSON document or its text, changed in one place."""
    samples: list[Any] = doc["samples"]
    choice = rng.randrange(9)
    if choice == 0:  # an envelope member gets an odd value, or goes
        key = rng.choice(["v", "boot", "seq", "samples"])
        if rng.random() < 0.2:
            del doc[key]
        else:
            doc[key] = rng.choice(ODD_VALUES)
    elif choice == 1:  # a sample's value, or its t
        sample = rng.choice(samples)
        sample[rng.choice(list(sample))] = rng.choice(ODD_VALUES)
    elif choice == 2:  # a field of another type, an unknown one, or a sample with t alone
        sample = rng.choice(samples)
        key = rng.choice([*VOCABULARY, "bogus", "T", "pm2.5"])
        sample[key] = rng.choice([*ODD_VALUES, 12.5, 40000, 2000.0001])
        if rng.random() < 0.1:
            samples.append({"t": NOW})
    elif choice == 3:  # no samples, or one too many
        doc["samples"] = [] if rng.random() < 0.5 else samples * (101 // len(samples) + 1)
    elif choice == 4:  # a member the contract does not know
        doc[rng.choice(["extra", "V", "sig"])] = 1
    elif choice == 5:  # a sample that is not an object
        samples[rng.randrange(len(samples))] = rng.choice([1, "x", None, []])
    text = json.dumps(doc, allow_nan=True).encode()
    if choice == 6:  # a member written twice (JSON allows it; the last one counts)
        text = text.replace(b'"seq": ', b'"seq": 5, "seq": ', 1) if rng.random() < 0.5 else \
            text.replace(b'{"t": ', b'{"t": 1, "t": ', 1)
    elif choice == 7:  # around the text: a byte-order mark, spaces, trailing bytes
        text = rng.choice([b"\xef\xbb\xbf" + text, b" \n" + text + b"\n ", text + b"x",
                           text + b"{}", text[:-1]])
    elif choice == 8:  # one byte changed
        i = rng.randrange(len(text))
        text = text[:i] + bytes([rng.randrange(256)]) + text[i + 1:]
    return text


def test_mutated_payloads_are_never_taken_unless_the_full_path_takes_them_whole() -> None:
    rng = random.Random(20261207)
    kinds = sorted(VALID_BY_KIND)
    taken = declined = 0
    for _ in range(4000):
        samples = [{"t": NOW - rng.randrange(10**6), **VALID_BY_KIND[rng.choice(kinds)]}
                   for _ in range(rng.randrange(1, 4))]
        doc = {"v": 1, "boot": rng.randrange(2**32), "seq": rng.randrange(2**32),
               "samples": samples}
        if same_as_full_path(mutate(rng, doc)):
            taken += 1
        else:
            declined += 1
    # Both ways were exercised: some mutations leave a valid message (a float for a float).
    assert taken > 100 and declined > 1000, (taken, declined)


def test_a_sealed_message_takes_the_hot_path_with_its_prev_and_the_same_lines() -> None:
    prev = genesis("air-north-01").hex()
    body = json.dumps({"v": 2, "boot": 3, "seq": 9,
                       "samples": [{"t": NOW, **VALID_BY_KIND["air"]}], "prev": prev},
                      separators=(",", ":")).encode()
    payload = seal(body, bytes(32))
    fast = telemetry_lines(payload, DEVICE.tag_string, NOW + MAX_FUTURE_MS, sealed=True)
    full = TelemetryValidator(MAX_FUTURE_MS).parse(payload, now_ms=NOW, sealed=True)
    assert fast is not None and fast.prev == full.prev == prev
    assert fast.lines == telemetry_points(DEVICE, full)
    # Unsealed, the same payload is not version 1: the hot path declines it.
    assert telemetry_lines(payload, DEVICE.tag_string, NOW + MAX_FUTURE_MS) is None
    bad_prev = payload.replace(prev.encode(), prev[:-1].encode() + b"G")
    assert telemetry_lines(bad_prev, DEVICE.tag_string, NOW, sealed=True) is None
