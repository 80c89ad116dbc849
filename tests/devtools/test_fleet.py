"""The simulated fleet brings a board back the way a board in the street comes back by itself:
after a reboot (a remote command), a deep sleep, or a watchdog reset. Real ``micropython``
boards (the fleet's 64 KiB heap) against a private Mosquitto, watched by a paho subscriber.
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.hostboards import (
    Broker,
    Recorder,
    statuses,
)
from support.waiting import wait_until
from urbanpulse.config import MqttSettings
from urbanpulse.devtools.fleet import (
    EXIT_DEEPSLEEP,
    EXIT_RESET,
    Fleet,
    host_board_config,
    plan_devices,
)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path / "boards")
    try:
        yield f
    finally:
        f.stop()


def add_board(fleet: Fleet, port: int, index: int, **extra: Any) -> str:
    """The fleet's board number ``index`` (kinds in turn: 0 air, 6 soil) with config extras."""
    device = plan_devices(index + 1, ["north"], 0.5)[index]
    config = host_board_config(device, MqttSettings(port=port), 0.2, 0.4)
    config.update(extra)
    fleet.add(device, config)
    return device.device_id


def online_boots(rec: Recorder, device_id: str) -> list[int]:
    return [s["boot"] for s in statuses(rec, device_id) if s["state"] == "online"]


def test_a_reboot_command_brings_the_board_back_with_the_next_boot(
        broker: Broker, fleet: Fleet) -> None:
    dev = add_board(fleet, broker.port, 1, health_interval_s=1)
    rec = Recorder(broker.port)
    try:
        fleet.start()
        wait_until(lambda: online_boots(rec, dev) == [1], 30, "the first boot online")
        wait_until(lambda: len(rec.on(dev, "telemetry")) >= 1, 30, "telemetry of boot 1")
        rec.client.publish(f"city/{dev}/cmd", json.dumps({"id": "rb-1", "op": "reboot"}),
                           qos=1).wait_for_publish(5)
        wait_until(lambda: any(a.get("id") == "rb-1" for a in rec.docs(dev, "cmd/ack")), 30,
                   "the reboot's ack")
        wait_until(lambda: online_boots(rec, dev) == [1, 2], 30, "boot 2 online")
        wait_until(lambda: any(d["boot"] == 2 for d in rec.docs(dev, "telemetry")), 30,
                   "telemetry of boot 2")
        wait_until(lambda: any(h["reset_cause"] == "reboot" for h in rec.docs(dev, "health")),
                   30, "health after the reboot")
        assert fleet.running() == 1
    finally:
        fleet.stop()
        rec.close()
    board = fleet.boards[0]
    assert next(a for a in rec.docs(dev, "cmd/ack") if a.get("id") == "rb-1")["ok"] is True
    assert board.starts == 2 and board.exit_codes[0] == EXIT_RESET, board.exit_codes
    assert "rebooting" in board.log_file.read_text()
    # Both boots' telemetry: seq starts again at 0 with the new boot.
    firsts = {d["boot"]: d["seq"] for d in reversed(rec.docs(dev, "telemetry"))}
    assert firsts == {1: 0, 2: 0}, firsts


def test_a_sleeping_board_wakes_after_its_sleep_time(broker: Broker, fleet: Fleet) -> None:
    # Wakes every 1.5 s, connects and publishes at every 2nd wake.
    dev = add_board(fleet, broker.port, 6, deep_sleep={"wake_s": 1.5, "publish_every": 2})
    board = fleet.boards[0]
    rec = Recorder(broker.port)
    try:
        fleet.start()
        wait_until(lambda: board.starts >= 5, 90, "5 wake-ups")
        # Asleep is not gone: the fleet counts it as running.
        wait_until(lambda: board.wake_at is not None, 30, "the board asleep")
        assert fleet.running() == 1
        wait_until(lambda: len({d["boot"] for d in rec.docs(dev, "telemetry")}) >= 2, 30,
                   "telemetry of two publishing wakes")
    finally:
        fleet.stop()
        rec.close()
    assert set(board.exit_codes) == {EXIT_DEEPSLEEP}, (board.exit_codes,
                                                       board.log_file.read_text()[-2000:])
    assert (board.folder / "deepsleep_ms").read_text() == "1500"
    boots = sorted({d["boot"] for d in rec.docs(dev, "telemetry")})
    # Every wake is a boot; the publishing ones are the 1st, 3rd, 5th...
    assert boots[:2] == [1, 3], boots
    times = [s["t"] for d in rec.docs(dev, "telemetry") for s in d["samples"]]
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    assert gaps and gaps[0] >= 1500, ("the board slept between samples", gaps)


def test_a_board_reset_by_its_watchdog_comes_back(broker: Broker, fleet: Fleet) -> None:
    dev = add_board(fleet, broker.port, 4, watchdog_s=2)
    board_folder = fleet.boards_dir / dev
    board_folder.mkdir(parents=True, exist_ok=True)
    # A stalled main loop: an NTP call that never returns (firmware/host/ntptime.py).
    (board_folder / "ntp_hang").write_text("")
    board = fleet.boards[0]
    rec = Recorder(broker.port)
    try:
        fleet.start()
        wait_until(lambda: board.exit_codes[:1] == [-signal.SIGKILL], 60, "the watchdog reset")
        (board_folder / "ntp_hang").unlink()
        wait_until(lambda: any(h["reset_cause"] == "wdt" for h in rec.docs(dev, "health")), 60,
                   "health after the watchdog reset")
    finally:
        fleet.stop()
        rec.close()
    assert board.starts >= 2
    assert "not fed for 2000 ms, resetting" in board.log_file.read_text()


def test_a_board_that_stops_for_good_is_not_started_again(broker: Broker,
                                                          fleet: Fleet) -> None:
    add_board(fleet, broker.port, 1, max_messages=2)  # exits 0 once 2 messages are acked
    fleet.start()
    assert fleet.wait(60), fleet.boards[0].log_file.read_text()
    board = fleet.boards[0]
    assert board.exit_codes == [0] and board.starts == 1 and board.done
