"""Sealed telemetry (CONTRACT.md v2) through a real gateway, Mosquitto and InfluxDB: the MAC
is checked with the board's key from the key store, a replay is refused, gaps and forks are
stored in ``device_integrity``, and a board the registry marks ``require_sealed`` is heard
only when it seals. Each attack is played as a client on the broker would."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from support.gateway_harness import Publisher, gateway_settings, rows, running_gateway
from support.services import Services
from support.waiting import wait_until
from urbanpulse.config import KeySettings
from urbanpulse.contract.sealed import digest, genesis, seal
from urbanpulse.registry.keystore import render_keys

pytestmark = pytest.mark.services

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class Board:
    """A board's side of the chain, made the way the firmware makes it."""

    def __init__(self, device_id: str, key: bytes = KEY, boot: int = 1) -> None:
        self.device_id = device_id
        self.key = key
        self.boot = boot
        self.seq = 0
        self.prev = genesis(device_id)

    def message(self, t: int, pm25: float, link: bytes | None = None) -> bytes:
        prev = self.prev if link is None else link
        body = (f'{{"v":2,"boot":{self.boot},"seq":{self.seq},"samples":[{{"t":{t},'
                f'"pm25":{pm25}}}],"prev":"{prev.hex()}"}}').encode()
        payload = seal(body, self.key)
        self.seq += 1
        self.prev = digest(payload)
        return payload


def _registry(path: Path, require: bool = False) -> Path:
    path.write_text("device_id,kind,district,require_sealed\n"
                    f"air-v2-01,air,north,{'true' if require else ''}\n"
                    "air-v2-02,air,north,true\n"
                    "air-v1-03,air,north,\n", encoding="utf-8")
    return path


def _keys(path: Path) -> Path:
    path.write_text(render_keys({"air-v2-01": KEY, "air-v2-02": KEY}), encoding="utf-8")
    path.chmod(0o600)
    return path


def _pm25(services: Services, device_id: str) -> list[float]:
    return [r["pm25"] for r in rows(services, "SELECT pm25 FROM air_quality WHERE "
                                    f"device_id = '{device_id}' ORDER BY time")]


def _integrity(services: Services, device_id: str) -> dict[str, Any]:
    got = rows(services, "SELECT sum(verified) AS verified, sum(gaps) AS gaps, sum(forks) AS "
               "forks, sum(bad_mac) AS bad_mac, sum(replayed) AS replayed FROM "
               f"device_integrity WHERE device_id = '{device_id}'")
    return {k: v for k, v in got[0].items() if k != "time"} if got else {}


def test_sealed_messages_are_verified_and_attacks_refused(
        influx: Services, tmp_path: Path, client_id: str) -> None:
    settings = gateway_settings(influx, _registry(tmp_path / "devices.csv"), client_id)
    settings.keys = KeySettings(device_keys=_keys(tmp_path / "device-keys.json"))
    t0 = time.time_ns() // 1_000_000 - 60_000
    board = Board("air-v2-01")
    pub = Publisher(influx, f"{client_id}-pub")
    topic = "city/air-v2-01/telemetry"
    try:
        with running_gateway(settings):
            first = board.message(t0, 1.0)
            pub.publish(topic, first)
            pub.publish(topic, first)  # a redelivery: the same bytes, stored once
            second = board.message(t0 + 1000, 2.0)
            pub.publish(topic, second)
            # A byte changed on the way: the MAC no longer holds.
            pub.publish(topic, board.message(t0 + 2000, 3.0).replace(b'"pm25":3.0',
                                                                      b'"pm25":9.0'))
            board.seq -= 1
            board.prev = digest(second)
            # Sealed with another key (a neighbour's, or a guess).
            pub.publish(topic, Board("air-v2-01", OTHER_KEY, boot=9).message(t0 + 2500, 4.0))
            # (boot, seq) of the second message with new bytes, sealed with the right key.
            replay = Board("air-v2-01")
            replay.seq = 1
            pub.publish(topic, replay.message(t0 + 3000, 5.0, link=digest(first)))
            # A message withheld upstream: the next one links to it, not to the last accepted.
            board.message(t0 + 4000, 6.0)
            pub.publish(topic, board.message(t0 + 5000, 7.0))
            # Another message linking to the same predecessor as the last: a fork (and a gap,
            # as it does not link to the last accepted).
            link = board.prev
            pub.publish(topic, board.message(t0 + 7000, 9.0))
            fork = Board("air-v2-01", boot=2)
            pub.publish(topic, fork.message(t0 + 6000, 8.0, link=link))
            wait_until(lambda: _pm25(influx, "air-v2-01") == [1.0, 2.0, 7.0, 8.0, 9.0], 20,
                       "the accepted readings stored")
            wait_until(lambda: _integrity(influx, "air-v2-01") == {
                "verified": 5, "gaps": 2, "forks": 1, "bad_mac": 2, "replayed": 1}, 20,
                "the chain's counts stored")
    finally:
        pub.close()


def test_require_sealed_refuses_version_1_and_others_keep_speaking_it(
        influx: Services, tmp_path: Path, client_id: str) -> None:
    settings = gateway_settings(influx, _registry(tmp_path / "devices.csv", require=True),
                                client_id)
    settings.keys = KeySettings(device_keys=_keys(tmp_path / "device-keys.json"))
    t0 = time.time_ns() // 1_000_000 - 60_000
    v1 = {"v": 1, "boot": 1, "seq": 0, "samples": [{"t": t0, "pm25": 5.0}]}
    pub = Publisher(influx, f"{client_id}-pub")
    try:
        with running_gateway(settings):
            pub.publish("city/air-v2-01/telemetry", v1)  # required to seal: refused
            pub.publish("city/air-v1-03/telemetry", v1)  # not required: stored
            # v2 from a board with no key in the store, and a v2 message without its MAC.
            pub.publish("city/air-v1-03/telemetry", Board("air-v1-03").message(t0, 6.0))
            unsealed = dict(v1, v=2, prev=genesis("air-v1-03").hex())
            pub.publish("city/air-v1-03/telemetry", json.dumps(unsealed))
            pub.publish("city/air-v2-02/telemetry", Board("air-v2-02").message(t0, 7.0))
            wait_until(lambda: _pm25(influx, "air-v2-02") == [7.0], 20, "the sealed reading")
            wait_until(lambda: _integrity(influx, "air-v1-03").get("bad_mac") == 2, 20,
                       "the refusals counted")
            assert _pm25(influx, "air-v1-03") == [5.0]
            wait_until(lambda: _integrity(influx, "air-v2-01").get("bad_mac") == 1, 20,
                       "the unsealed message from a board that must seal counted")
            assert _pm25(influx, "air-v2-01") == []
            assert _integrity(influx, "air-v2-02") == {
                "verified": 1, "gaps": 0, "forks": 0, "bad_mac": 0, "replayed": 0}
    finally:
        pub.close()
