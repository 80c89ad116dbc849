"""Board health messages: validated field by field, stored as device_health, counted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from support.gateway_harness import (
    Publisher,
    rows,
    running_gateway,
)
from support.ops_harness import device_ids, now_ms, ops_settings, write_registry
from support.services import Services
from support.waiting import wait_until
from urbanpulse.contract.messages import MessageRejected, Reason
from urbanpulse.contract.vocabulary import HEALTH_FAULT_COUNT, HEALTH_FIELDS
from urbanpulse.service.health import parse_health


def test_bad_fields_are_rejected_one_by_one_and_the_rest_kept() -> None:
    t = now_ms()
    health = parse_health(json.dumps({
        "t": t, "battery": 9.5, "rssi": "-67", "heap_free": 41234, "uptime": float("nan"),
        "reset_cause": "brownout", "fw": "0.4.0", "colour": "red", "dropped": None,
        "faults": "bme280:no_ack,pms5003:checksum",
    }).encode())  # json.dumps writes NaN, as a board might
    assert health.t == t
    assert health.fields == {
        "heap_free": 41234.0, "fw": "0.4.0", "faults": "bme280:no_ack,pms5003:checksum",
        HEALTH_FAULT_COUNT: 2.0,
    }
    reasons = {r.detail.split("=")[0]: r.reason for r in health.rejected}
    assert reasons == {
        "battery": Reason.OUT_OF_RANGE, "rssi": Reason.WRONG_TYPE, "uptime": Reason.NOT_FINITE,
        "reset_cause": Reason.OUT_OF_RANGE, "colour": Reason.UNKNOWN_FIELD,
        "dropped": Reason.WRONG_TYPE,
    }
    assert any("battery=9.5" in r.detail and "less than or equal to 6" in r.detail
               for r in health.rejected)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{nope", Reason.NOT_JSON),
        (b"[1, 2]", Reason.BAD_ENVELOPE),
        (b'{"battery": 3.9}', Reason.BAD_TIMESTAMP),
        (b'{"t": 1700000000, "battery": 3.9}', Reason.BAD_TIMESTAMP),  # seconds, not ms
        (b'{"t": "1763700000123"}', Reason.BAD_TIMESTAMP),
    ],
)
def test_a_bad_envelope_rejects_the_whole_message(payload: bytes, reason: Reason) -> None:
    with pytest.raises(MessageRejected) as info:
        parse_health(payload)
    assert info.value.rejection.reason is reason


def test_readme_documents_every_health_and_status_field(repo_root: Path) -> None:
    schema = (repo_root / "README.md").read_text().split("## InfluxDB schema as built", 1)[1]
    health = next(line for line in schema.splitlines() if line.startswith("| `device_health` |"))
    for name in (*HEALTH_FIELDS, HEALTH_FAULT_COUNT):
        assert f"`{name}`" in health, name
    status = next(line for line in schema.splitlines() if line.startswith("| `device_status` |"))
    for name in ("online", "state", "reason", "status", "will", "timeout", "telemetry"):
        assert f"`{name}`" in status, name


@pytest.mark.services
def test_health_is_stored_with_registry_tags_and_bad_input_counted(
    influx: Services, tmp_path: Path, client_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    board, other = device_ids("air", "noise")
    registry = write_registry(tmp_path / "devices.csv",
                              [(board, "air", "north", 60), (other, "noise", "centre", 60)])
    settings = ops_settings(influx, registry, client_id)
    publisher = Publisher(influx, f"{client_id}-pub")
    t = now_ms()
    try:
        with caplog.at_level(logging.WARNING, "urbanpulse.rejected"), \
                running_gateway(settings) as gateway:
            publisher.publish(f"city/{board}/health", {
                "t": t, "battery": 3.91, "rssi": -67, "heap_free": 41234, "uptime": 3600,
                "buffered": 0, "dropped": 2, "fw": "0.4.0", "reset_cause": "wdt",
                "faults": "bme280:no_ack,pms5003:checksum", "config_error": "",
            })
            # One bad field costs only itself.
            publisher.publish(f"city/{other}/health",
                              {"t": t + 1, "battery": 7.5, "rssi": -80, "fw": "0.4.1"})
            publisher.publish("city/nobody-here-01/health", {"t": t, "battery": 3.3})
            publisher.publish(f"city/{board}/health", b"not json")
            wait_until(lambda: len(rows(influx, "SELECT * FROM device_health")) == 2,
                       what="2 device_health points")
            snap = gateway.stats.snapshot()
    finally:
        publisher.close()

    stored = {r["device_id"]: r for r in rows(
        influx, "SELECT * FROM device_health GROUP BY device_id, district, kind, site")}
    first = stored[board]
    assert first["time"] == t
    assert (first["district"], first["kind"], first["site"]) == ("north", "air", "Town Hall")
    assert (first["battery"], first["rssi"], first["heap_free"], first["uptime"]) == (
        3.91, -67.0, 41234.0, 3600.0)
    assert (first["buffered"], first["dropped"], first["fault_count"]) == (0.0, 2.0, 2.0)
    assert (first["fw"], first["reset_cause"], first["config_error"]) == ("0.4.0", "wdt", "")
    assert first["faults"] == "bme280:no_ack,pms5003:checksum"
    second = stored[other]
    assert second["battery"] is None and second["rssi"] == -80.0 and second["fw"] == "0.4.1"

    assert snap["rejected_out_of_range"] == 1
    assert snap["rejected_unknown_device"] == 1
    assert snap["rejected_not_json"] == 1
    assert snap["received"] >= 4
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"rejected health field reason=out_of_range device={other} ")
               and "battery=7.5" in m for m in messages), messages
    assert any(m.startswith("rejected health message reason=unknown_device "
                            "device=nobody-here-01") for m in messages), messages
