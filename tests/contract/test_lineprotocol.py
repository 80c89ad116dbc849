"""Line protocol encoding (the round trip through a real InfluxDB is in test_integration)."""

from __future__ import annotations

import pytest

from urbanpulse.contract.lineprotocol import LineProtocolError, encode_field_value, encode_point


def test_point_with_escaped_tags_sorted_and_typed_fields() -> None:
    line = encode_point(
        "air quality",
        {"site": "Main St, 5th=corner", "district": "north"},
        {"pm25": 12.5, "ok": True, "n": 3, "fw": 'v"1\\2'},
        1763700000123,
    )
    assert line == (
        r"air\ quality,district=north,site=Main\ St\,\ 5th\=corner "
        r'pm25=12.5,ok=true,n=3i,fw="v\"1\\2" 1763700000123'
    )


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "tab\there", "end\\", ""])
def test_unrepresentable_tag_values_are_refused(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        encode_point("m", {"site": bad} if bad else {"": "x"}, {"f": 1.0})


def test_empty_tag_values_are_left_out_and_a_point_needs_a_field() -> None:
    assert encode_point("m", {"site": ""}, {"f": 1.0}) == "m f=1.0"
    with pytest.raises(LineProtocolError):
        encode_point("m", {}, {})


def test_field_values() -> None:
    assert encode_field_value(False) == "false"
    assert encode_field_value(1e-05) == "1e-05"
    assert encode_field_value("line\nbreak") == r'"line\nbreak"'
    with pytest.raises(LineProtocolError):
        encode_field_value(float("nan"))
