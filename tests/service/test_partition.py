"""Workers take their boards by plain per-board subscriptions (service/partition.py), and a
session lets go of the topics it no longer owns, against the real broker."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.services import Services
from support.waiting import wait_until
from urbanpulse.config import MqttSettings
from urbanpulse.service.batcher import AckToken
from urbanpulse.service.partition import (
    STATE_FILE,
    Partition,
    TopicState,
    WorkerBoards,
    load_state,
    save_state,
)
from urbanpulse.service.session import TOPICS_PER_PACKET, BrokerSession

DEVICES = [f"air-{i:04d}" for i in range(2000)]


@pytest.mark.parametrize("count", [1, 2, 3, 16])
def test_every_board_belongs_to_exactly_one_worker(count: int) -> None:
    parts = [Partition(i, count) for i in range(count)]
    for device in DEVICES:
        assert sum(p.owns(device) for p in parts) == 1, device
    # Every worker gets a fair share (a hash, not the order of the registry).
    shares = [sum(p.owns(d) for d in DEVICES) for p in parts]
    assert min(shares) > len(DEVICES) / count * 0.8, shares


def test_the_owner_is_the_same_in_every_process() -> None:
    # CRC-32 of the id, not Python's salted hash(): the parent and each worker agree.
    assert [Partition(i, 4).owns("air-0001") for i in range(4)] == [False, True, False, False]


def test_a_workers_topics_are_its_boards_stored_channels_telemetry_first() -> None:
    topics = Partition(0, 1).topics("city", ["b", "a"])
    assert topics == ["city/a/telemetry", "city/b/telemetry", "city/a/health",
                      "city/b/health", "city/a/cmd/ack", "city/b/cmd/ack"]


def test_the_state_survives_and_a_broken_one_holds_nothing(tmp_path: Path) -> None:
    assert load_state(tmp_path) == TopicState(set(), set())
    save_state(tmp_path / "w", TopicState({"city/a/telemetry", "city/b/health"},
                                          {"city/a/telemetry"}))
    assert load_state(tmp_path / "w") == TopicState({"city/a/telemetry", "city/b/health"},
                                                    {"city/a/telemetry"})
    (tmp_path / "w" / STATE_FILE).write_text("{not json")
    assert load_state(tmp_path / "w") == TopicState(set(), set())


def test_a_moved_board_is_let_go_of_only_once_its_new_owner_has_it(tmp_path: Path) -> None:
    # Two workers became three: worker 0 held boards that worker 2 now owns.
    boards = WorkerBoards(Partition(0, 3), "city", tmp_path / "worker-0")
    moved = sorted(d for d in DEVICES[:50] if Partition(2, 3).owns(d))[:3]
    stale = {f"city/{d}/telemetry" for d in moved} | {"city/gone-01/telemetry"}
    registered = set(DEVICES)
    # Worker 2 has not subscribed yet: only the board that left the registry goes.
    assert boards.releasable(stale, registered) == {"city/gone-01/telemetry"}
    save_state(tmp_path / "worker-2", TopicState(stale, {f"city/{moved[0]}/telemetry"}))
    assert boards.releasable(stale, registered) == {"city/gone-01/telemetry",
                                                     f"city/{moved[0]}/telemetry"}


class Received:
    def __init__(self) -> None:
        self.topics: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, token: AckToken | None) -> None:
        with self.lock:
            self.topics.append(topic)


def _publish(services: Services, topics: list[str]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(services.mqtt_host, services.mqtt_port)
    client.loop_start()
    try:
        for topic in topics:
            client.publish(topic, b"{}", qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_session_keeps_what_it_holds_until_released_and_follows_set_topics(
        influx: Services, client_id: str) -> None:
    settings = MqttSettings(host=influx.mqtt_host, port=influx.mqtt_port, client_id=client_id)
    # More topics than fit in one SUBSCRIBE packet: the session sends several.
    mine = [f"city/b{i:04d}/telemetry" for i in range(TOPICS_PER_PACKET + 20)]
    old = "city/old/telemetry"
    states: list[TopicState] = []
    got = Received()
    # The session held `old` from before (the broker still has it: subscribe it for real).
    first = BrokerSession(settings, [old], got, lambda: None, lambda reason: None)
    first.start()
    wait_until(lambda: first.connected.is_set(), 10, "the first session ready")
    first.stop()
    session = BrokerSession(settings, mine, got, lambda: None, lambda reason: None,
                            state=TopicState({old}, {old}), on_state=states.append)
    session.start()
    try:
        wait_until(lambda: session.connected.is_set(), 10, "the session ready")
        wait_until(lambda: states and states[-1].granted == {old, *mine}, 10, "all granted")
        assert session.stale() == {old}
        _publish(influx, [old, mine[-1]])
        wait_until(lambda: sorted(got.topics) == sorted([old, mine[-1]]), 10,
                   "held topics still heard until released")
        session.release({old, mine[0]})  # its own topics are never released
        wait_until(lambda: states[-1].held == set(mine), 10, "the stale topic let go of")
        assert states[-1].granted == set(mine)
        # A registry reload: one board more; the first one's topic stays until released.
        session.set_topics([*mine[1:], "city/new/telemetry"])
        wait_until(lambda: "city/new/telemetry" in states[-1].granted, 10, "the new board")
        assert session.stale() == {mine[0]}
        got.topics.clear()
        _publish(influx, [old, mine[0], "city/new/telemetry"])
        wait_until(lambda: sorted(got.topics) == sorted([mine[0], "city/new/telemetry"]), 10,
                   "the new board and the unreleased one, not the released one")
    finally:
        session.stop()
