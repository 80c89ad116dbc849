"""Sealed telemetry (CONTRACT.md v2) from a real firmware process in a 64 KiB heap: every
message carries the device key's MAC and links to the one before, across reboots; a message
the broker may have had when the board stopped is sent again byte for byte."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from support.boardrun import Supervisor, assert_clean
from support.gateway_harness import gateway_settings, rows, running_gateway
from support.hostboards import Board, Broker, Recorder
from support.services import Services, start_service, stop_service
from support.waiting import wait_until
from urbanpulse.config import KeySettings
from urbanpulse.contract.sealed import check_mac, digest, genesis
from urbanpulse.contract.signing import new_device_key
from urbanpulse.registry.keystore import render_keys


def chain_problems(device_id: str, payloads: list[bytes], key: bytes) -> list[str]:
    """What is wrong with the board's chain: each payload (duplicates left out) must carry the
    key's MAC and name the one before it, the first one genesis."""
    problems = []
    prev = genesis(device_id)
    seen: set[bytes] = set()
    for i, p in enumerate(payloads):
        if p in seen:
            continue
        seen.add(p)
        doc = json.loads(p)
        if doc["v"] != 2 or list(doc)[-2:] != ["prev", "mac"]:
            problems.append(f"{i}: not a sealed message: {p[:80]!r}")
        if not check_mac(p, key):
            problems.append(f"{i}: bad MAC (boot {doc['boot']} seq {doc['seq']})")
        if doc["prev"] != prev.hex():
            problems.append(f"{i}: boot {doc['boot']} seq {doc['seq']} does not link to the "
                            "message before it")
        prev = digest(p)
    return problems


def test_a_board_seals_its_messages_in_one_chain_across_a_stop_and_a_start(
        broker: Broker, boards: Callable[..., Board]) -> None:
    key = new_device_key()
    board = boards("air-seal-01", "air", broker.port, device_key=key,
                   max_flash_bytes=65536)
    dev = board.device_id
    rec = Recorder(broker.port)
    try:
        board.start()
        wait_until(lambda: len(rec.on(dev, "telemetry")) >= 4, 30, "four sealed messages")
        # The broker freezes (SIGSTOP): the board's next message gets no PUBACK, and it stops
        # with that message unacknowledged. When the broker wakes up it reads the message
        # from its socket and delivers it: the board's next start must send those very bytes.
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)
            board.interrupt()
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        before = len(rec.on(dev, "telemetry"))
        board.start(write_config=False)
        wait_until(lambda: len(rec.on(dev, "telemetry")) >= before + 4, 30,
                   "messages of the second start")
        board.interrupt()
        payloads = [m.payload for m in rec.on(dev, "telemetry")]
        # Provisioned again: a new key, and a new chain from genesis.
        new_key = new_device_key()
        board.config["device_key"] = new_key
        board.start()
        wait_until(lambda: len(rec.on(dev, "telemetry")) > len(payloads), 30,
                   "a message under the new key")
        board.interrupt()
    finally:
        rec.close()
        board.kill()
    first_new = rec.on(dev, "telemetry")[len(payloads)].payload
    assert chain_problems(dev, [first_new], bytes.fromhex(new_key)) == []
    assert chain_problems(dev, payloads, bytes.fromhex(key)) == []
    boots = [json.loads(p)["boot"] for p in payloads]
    assert boots[0] == 1 and boots[-1] == 2, boots
    # The message in flight at the stop came again, unchanged, under its first boot's number.
    repeated = [p for i, p in enumerate(payloads) if p in payloads[:i]]
    assert len(repeated) == 1, [json.loads(p)["seq"] for p in payloads]
    assert json.loads(repeated[0])["boot"] == 1
    assert_clean(board.console())


@pytest.mark.services
def test_the_gateway_verifies_real_boards_through_an_outage_and_deep_sleep(
        influx: Services, tmp_path: Path, client_id: str,
        boards: Callable[..., Board]) -> None:
    """Boards the registry requires to seal, a broker outage in the middle (the air board
    keeps its messages in flash) and a deep-sleep board (every wake a boot): the gateway
    stores every sample and sees one unbroken chain per board."""
    keys = {"air-seal-02": new_device_key(), "soil-seal-03": new_device_key()}
    registry = tmp_path / "devices.csv"
    registry.write_text("device_id,kind,district,require_sealed\nair-seal-02,air,north,true\n"
                        "soil-seal-03,soil,north,true\n", encoding="utf-8")
    store = tmp_path / "device-keys.json"
    store.write_text(render_keys({d: bytes.fromhex(k) for d, k in keys.items()}))
    store.chmod(0o600)
    settings = gateway_settings(influx, registry, client_id)
    settings.keys = KeySettings(device_keys=store)
    air = boards("air-seal-02", "air", influx.mqtt_port, device_key=keys["air-seal-02"],
                 max_flash_bytes=65536)
    soil = boards("soil-seal-03", "soil", influx.mqtt_port, device_key=keys["soil-seal-03"],
                  deep_sleep={"wake_s": 0.05, "publish_every": 3})

    def stored(measurement: str, device_id: str) -> int:
        return len(rows(influx, f"SELECT * FROM {measurement} WHERE device_id = '{device_id}'"))

    with running_gateway(settings):
        air.start()
        sup = Supervisor(soil, max_starts=7).start()
        try:
            wait_until(lambda: stored("air_quality", air.device_id) >= 5, 30, "air readings")
            stop_service(influx, "mosquitto")
            time.sleep(3)
            start_service(influx, "mosquitto")
            wait_until(lambda: len(sup.codes) >= 7, 90, "7 wake-ups")
            time.sleep(2)
            air.interrupt()
            # What it took, less what it keeps in flash for its next start.
            sent = air.taken() - int(re.findall(r"kept for later: (\d+)", air.console())[-1])
            wait_until(lambda: stored("air_quality", air.device_id) == sent, 60,
                       f"all {sent} air samples sent stored")
            wait_until(lambda: stored("soil", soil.device_id) == 7, 30, "the 7 soil samples")

            def counts(device_id: str) -> dict[str, int]:
                got = rows(influx, "SELECT sum(verified) AS verified, sum(gaps) AS gaps, "
                           "sum(forks) AS forks, sum(bad_mac) AS bad_mac, sum(replayed) AS "
                           f"replayed FROM device_integrity WHERE device_id = '{device_id}'")
                return {k: v for k, v in got[0].items() if k != "time"} if got else {}

            for board in (air, soil):
                device_id = board.device_id
                wait_until(partial(lambda d: counts(d).get("verified", 0) > 0, device_id), 20,
                           "the counts stored")
                c = counts(device_id)
                assert (c["gaps"], c["forks"], c["bad_mac"], c["replayed"]) == (0, 0, 0, 0), c
        finally:
            sup.stop()
    assert_clean(air.console())
    assert_clean(soil.console())
