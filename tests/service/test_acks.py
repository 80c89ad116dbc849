"""Boards' answers to commands are stored (device_command) with the registry's tags; an
answer that is too large or malformed is rejected whole and costs nothing else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from support.gateway_harness import Publisher, gateway_settings, rows, running_gateway
from support.ops_harness import device_ids, write_registry
from support.services import Services
from support.waiting import wait_until
from urbanpulse.contract.messages import MessageRejected, Reason
from urbanpulse.registry.devices import Device, Registry
from urbanpulse.service.acks import AckHandler, parse_ack
from urbanpulse.service.channels import DeviceChannel
from urbanpulse.service.logs import RateLimitedLog
from urbanpulse.service.stats import Stats


@pytest.mark.parametrize(("payload", "fields"), [
    (b'{"id":"c-1","ok":true,"sensors":["air"]}', {"id": "c-1", "ok": True}),
    (b'{"id":"c-2","ok":false,"error":"retained"}', {"id": "c-2", "ok": False,
                                                      "error": "retained"}),
    (b'{"id":null,"ok":false,"error":"syntax error in JSON"}',
     {"ok": False, "error": "syntax error in JSON"}),
    # A firmware update's progress (contract/ota.py), and its end.
    (b'{"id":"ota-1","ok":true,"state":"installed","fw":"0.1.1"}',
     {"id": "ota-1", "ok": True, "state": "installed", "fw": "0.1.1"}),
    (b'{"id":"ota-1","ok":false,"error":"rolled_back","fw":"0.1.0","tried":"0.1.1"}',
     {"id": "ota-1", "ok": False, "error": "rolled_back", "fw": "0.1.0"}),
])
def test_an_answer_is_parsed_to_its_fields(payload: bytes, fields: dict[str, object]) -> None:
    assert parse_ack(payload) == fields


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"id":"c-1","ok":true,"pad":"' + b"x" * 1024 + b'"}', Reason.TOO_LARGE),
    (b"not json", Reason.NOT_JSON),
    (b'["ok"]', Reason.BAD_ENVELOPE),
    (b'{"id":"c-1","ok":"yes"}', Reason.BAD_ENVELOPE),
    (b'{"id":17,"ok":true}', Reason.BAD_ENVELOPE),
])
def test_a_bad_answer_is_rejected_whole(payload: bytes, reason: Reason) -> None:
    with pytest.raises(MessageRejected) as info:
        parse_ack(payload)
    assert info.value.rejection.reason is reason


@pytest.mark.services
def test_the_gateway_stores_answers_with_the_boards_tags(
    influx: Services, tmp_path: Path, client_id: str
) -> None:
    (board,) = device_ids("streetlight")
    registry = write_registry(tmp_path / "devices.csv", [(board, "streetlight", "south", 60.0)])
    publisher = Publisher(influx, f"{client_id}-board")
    try:
        with running_gateway(gateway_settings(influx, registry, client_id)) as gateway:
            publisher.publish(f"city/{board}/cmd/ack", {"id": "c-1", "ok": True})
            publisher.publish(f"city/{board}/cmd/ack", {"id": "c-2", "ok": False,
                                                        "error": "bad_signature"})
            publisher.publish(f"city/{board}/cmd/ack", b"{" + b" " * 2048 + b"}")
            publisher.publish("city/ghost-9/cmd/ack", {"id": "c-3", "ok": True})
            stored = wait_until(
                lambda: len(found := rows(influx, "SELECT * FROM device_command")) == 2
                and found, timeout_s=15, what="two answers stored")
            wait_until(lambda: gateway.stats.snapshot()["rejected_messages"] == 2,
                       timeout_s=10, what="the bad answer and the unknown board rejected")
            snap = gateway.stats.snapshot()
    finally:
        publisher.close()
    assert [(r["id"], r["ok"], r["error"]) for r in stored] == [
        ("c-1", True, None), ("c-2", False, "bad_signature")]
    assert {(r["device_id"], r["district"], r["kind"]) for r in stored} == {
        (board, "south", "streetlight")}
    assert snap["rejected_too_large"] == 1 and snap["rejected_unknown_device"] == 1


def test_two_answers_in_one_millisecond_stay_two_points() -> None:

    registry = Registry([Device(device_id="lamp-01", kind="streetlight", district="south")])
    handler = AckHandler(DeviceChannel("cmd/ack", "city", lambda: registry, Stats(),
                                       RateLimitedLog(logging.getLogger("test"), 0)))
    stamps = [handler.handle("city/lamp-01/cmd/ack", b'{"id":"c-%d","ok":true}' % n)[1][0]
              .rsplit(" ", 1)[1] for n in range(50)]
    assert len(set(stamps)) == 50
