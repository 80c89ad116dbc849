"""Sealed telemetry (CONTRACT.md v2) from a real firmware process in a 64 KiB heap: every
message carries the device key's MAC and links to the one before, across reboots; a message
the broker may have had when the board stopped is sent again byte for byte."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

from support.boardrun import assert_clean
from support.hostboards import Board, Broker, Recorder
from support.waiting import wait_until
from urbanpulse.contract.sealed import check_mac, digest, genesis
from urbanpulse.contract.signing import new_device_key


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
