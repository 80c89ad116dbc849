"""Telemetry validation against CONTRACT.md v1: valid and invalid messages of every kind."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from support.contract_examples import NOW, VALID_BY_KIND, message
from urbanpulse.contract.messages import MessageRejected, Reason, TelemetryValidator
from urbanpulse.contract.vocabulary import KIND_MEASUREMENTS, MAX_PAYLOAD_BYTES, VOCABULARY


def parse(payload: bytes) -> Any:
    return TelemetryValidator(max_future_ms=600_000).parse(payload, now_ms=NOW)


def test_every_kind_has_a_valid_example_covering_its_measurement() -> None:
    for kind, sample in VALID_BY_KIND.items():
        measurements = {VOCABULARY[f].measurement for f in sample}
        assert measurements == set(KIND_MEASUREMENTS[kind])
    covered = {f for s in VALID_BY_KIND.values() for f in s}
    assert covered == set(VOCABULARY)


@pytest.mark.parametrize("kind", sorted(VALID_BY_KIND))
def test_valid_message_of_each_kind_is_accepted_with_exact_values(kind: str) -> None:
    sample = {"t": NOW - 1000, **VALID_BY_KIND[kind]}
    result = parse(message(sample))
    assert result.rejected == []
    assert result.boot == 7 and result.seq == 1042
    assert [s.t for s in result.samples] == [NOW - 1000]
    assert result.samples[0].values == {k: v for k, v in sample.items() if k != "t"}


def test_contract_example_message_is_accepted() -> None:
    payload = (
        b'{"v": 1, "boot": 7, "seq": 1042, "samples": [{"t": 1763700000123, "pm25": 12.4,'
        b' "pm10": 20.0, "temperature": 21.3, "humidity": 48.0}]}'
    )
    result = parse(payload)
    assert result.rejected == []
    assert result.samples[0].values == {
        "pm25": 12.4,
        "pm10": 20.0,
        "temperature": 21.3,
        "humidity": 48.0,
    }


def test_samples_of_several_measurements_and_range_edges_are_accepted() -> None:
    edges = {
        "t": NOW,
        "temperature": -60,
        "humidity": 100,
        "co2": 40000,
        "period_s": 1,
        "water_level": 5000,
        "laeq": 0,
        "lamp_on": True,
    }
    assert parse(message(edges)).samples[0].values["co2"] == 40000


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ({"pm25": 1.0, "colour": "red"}, Reason.UNKNOWN_FIELD),
        ({"pm25": "12.4"}, Reason.WRONG_TYPE),
        ({"pm25": True}, Reason.WRONG_TYPE),
        ({"occupied": 1}, Reason.WRONG_TYPE),
        ({"occupied": "true"}, Reason.WRONG_TYPE),
        ({"pm25": None}, Reason.WRONG_TYPE),
        ({"pm25": [1]}, Reason.WRONG_TYPE),
        ({"pm25": math.nan}, Reason.NOT_FINITE),
        ({"laeq": math.inf}, Reason.NOT_FINITE),
        ({"pm25": -0.1}, Reason.OUT_OF_RANGE),
        ({"humidity": 100.01}, Reason.OUT_OF_RANGE),
        ({"temperature": -61}, Reason.OUT_OF_RANGE),
        ({"period_s": 0}, Reason.OUT_OF_RANGE),
        ({"energy": -1}, Reason.OUT_OF_RANGE),
        ({"energy": 1.7e308}, Reason.OUT_OF_RANGE),  # would overflow KPI sums
        ({}, Reason.EMPTY_SAMPLE),
    ],
)
def test_bad_sample_is_rejected_alone_and_the_rest_of_the_message_is_kept(
    sample: dict[str, Any], reason: Reason
) -> None:
    good_before = {"t": NOW - 2000, "pm25": 5.0}
    good_after = {"t": NOW - 1000, "laeq": 55.0}
    payload = json.dumps(
        {"v": 1, "boot": 1, "seq": 0, "samples": [good_before, {"t": NOW, **sample}, good_after]}
    ).encode()
    result = parse(payload)
    assert [r.reason for r in result.rejected] == [reason]
    assert result.rejected[0].detail.startswith("sample 1:")
    assert [s.t for s in result.samples] == [NOW - 2000, NOW - 1000]


@pytest.mark.parametrize(
    "t",
    [5, 1_500_000_000, 1_500_000_000_000, NOW + 600_001, 12.5, "1763700000000", None, -1],
    ids=["tiny", "seconds", "2017", "future", "float", "string", "null", "negative"],
)
def test_bad_timestamp_rejects_the_sample(t: Any) -> None:
    result = parse(message({"t": t, "pm25": 1.0}, {"t": NOW, "pm25": 2.0}))
    assert [r.reason for r in result.rejected] == [Reason.BAD_TIMESTAMP]
    assert [s.values["pm25"] for s in result.samples] == [2.0]


def test_sample_without_timestamp_is_a_bad_timestamp() -> None:
    result = parse(message({"pm25": 1.0}))
    assert [r.reason for r in result.rejected] == [Reason.BAD_TIMESTAMP]


def test_sample_that_is_not_an_object_is_a_wrong_type() -> None:
    result = parse(message({"t": NOW, "pm25": 1.0}, 42))  # type: ignore[arg-type]
    assert [r.reason for r in result.rejected] == [Reason.WRONG_TYPE]
    assert len(result.samples) == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", Reason.NOT_JSON),
        (b'{"v": 1, "boot": 1', Reason.NOT_JSON),
        (b"\xff\xfe\x00", Reason.NOT_JSON),
        (b"", Reason.NOT_JSON),
        (b"[1, 2]", Reason.BAD_ENVELOPE),
        (b'"hello"', Reason.BAD_ENVELOPE),
        (b'{"v": 3, "boot": 1, "seq": 0, "samples": []}', Reason.UNSUPPORTED_VERSION),
        # Version 2 without its MAC (CONTRACT.md v2): a missing MAC.
        (b'{"v": 2, "boot": 1, "seq": 0, "samples": []}', Reason.BAD_MAC),
        (b'{"v": "1", "boot": 1, "seq": 0, "samples": []}', Reason.UNSUPPORTED_VERSION),
        (
            b'{"boot": 1, "seq": 0, "samples": [{"t": 1763700000000, "pm25": 1}]}',
            Reason.BAD_ENVELOPE,
        ),
        (b'{"v": 1, "seq": 0, "samples": [{"t": 1763700000000, "pm25": 1}]}', Reason.BAD_ENVELOPE),
        (
            b'{"v": 1, "boot": -1, "seq": 0, "samples": [{"t": 1763700000000, "pm25": 1}]}',
            Reason.BAD_ENVELOPE,
        ),
        (
            b'{"v": 1, "boot": 1, "seq": 1.5, "samples": [{"t": 1763700000000, "pm25": 1}]}',
            Reason.BAD_ENVELOPE,
        ),
        (b'{"v": 1, "boot": 1, "seq": 0, "samples": []}', Reason.BAD_ENVELOPE),
        (b'{"v": 1, "boot": 1, "seq": 0, "samples": {"t": 1}}', Reason.BAD_ENVELOPE),
        (
            b'{"v": 1, "boot": 1, "seq": 0, "samples": [{"t": 1763700000000, "pm25": 1}],'
            b' "district": "elsewhere"}',
            Reason.BAD_ENVELOPE,
        ),
    ],
)
def test_bad_envelope_rejects_the_whole_message(payload: bytes, reason: Reason) -> None:
    with pytest.raises(MessageRejected) as info:
        parse(payload)
    assert info.value.rejection.reason is reason


def test_more_than_100_samples_rejects_the_message() -> None:
    samples = [{"t": NOW - i, "pm25": 1.0} for i in range(101)]
    with pytest.raises(MessageRejected) as info:
        parse(message(*samples))
    assert info.value.rejection.reason is Reason.BAD_ENVELOPE
    assert len(parse(message(*samples[:100])).samples) == 100


def test_payload_over_64_kib_is_rejected_before_parsing() -> None:
    payload = message({"t": NOW, "pm25": 1.0}, pad="x" * MAX_PAYLOAD_BYTES)
    with pytest.raises(MessageRejected) as info:
        parse(payload)
    assert info.value.rejection.reason is Reason.TOO_LARGE
