"""Which boards a worker takes (``[service] workers``), by plain per-board subscriptions.

A shared subscription would spread the boards over the workers by itself, but Mosquitto 2.0
does not restore a persistent session's shared subscriptions after a restart: until the
workers subscribe again, it acknowledges the boards' messages and drops them. Plain
subscriptions are restored, so each worker subscribes to its own boards' topics, chosen by a
CRC-32 of the device id that every process computes alike; the registry says which boards
there are, and a reload moves the subscriptions with it. A board that is not in the registry
is heard by no worker (a secure broker refuses it in any case), and is heard once it is
registered.

A session keeps its subscriptions across restarts of the gateway, also those of boards it no
longer owns (the registry or the number of workers changed meanwhile). Each worker keeps in
its spool directory the topics its session may hold and those the broker granted
(``subscriptions.json``). A topic it no longer owns is let go of only once the board's new
owner lists it as granted (or the board left the registry): never is a board left without a
subscriber, which would drop its messages. Meanwhile both store its messages (points are
idempotent in InfluxDB; the counters see them twice).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("urbanpulse.partition")

# What a worker stores per board; statuses are the coordinator's (every board's, for
# liveness).
STORED_CHANNELS = ("telemetry", "health", "cmd/ack")
STATE_FILE = "subscriptions.json"


@dataclass(frozen=True)
class Partition:
    index: int
    count: int

    def owner(self, device_id: str) -> int:
        return zlib.crc32(device_id.encode()) % self.count

    def owns(self, device_id: str) -> bool:
        return self.owner(device_id) == self.index

    def topics(self, prefix: str, device_ids: Iterable[str]) -> list[str]:
        """The topics of this worker's boards, telemetry first, in a stable order."""
        mine = sorted(d for d in device_ids if self.owns(d))
        return [f"{prefix}/{d}/{channel}" for channel in STORED_CHANNELS for d in mine]


@dataclass
class TopicState:
    held: set[str]  # what the broker may hold for the session (a superset)
    granted: set[str]  # what it confirmed (SUBACK), and not let go of since


def load_state(spool_dir: Path) -> TopicState:
    """What the session held when the worker last ran (nothing, if unknown)."""
    try:
        data = json.loads((spool_dir / STATE_FILE).read_text(encoding="utf-8"))
        return TopicState(set(data["held"]), set(data["granted"]))
    except FileNotFoundError:
        return TopicState(set(), set())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s unreadable (%s): topics this session no longer owns stay subscribed",
                    spool_dir / STATE_FILE, exc)
        return TopicState(set(), set())


def save_state(spool_dir: Path, state: TopicState) -> None:
    """Written atomically: a crash leaves the old state or the new one."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    tmp = spool_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps({"held": sorted(state.held), "granted": sorted(state.granted)}),
                   encoding="utf-8")
    os.replace(tmp, spool_dir / STATE_FILE)


class WorkerBoards:
    """One worker's boards: its topics, and which of the others it may let go of."""

    def __init__(self, partition: Partition, prefix: str, spool_dir: Path) -> None:
        self.partition = partition
        self.prefix = prefix
        self.spool_dir = spool_dir  # {spool}/worker-{I}: the others' are its siblings

    def topics(self, device_ids: Iterable[str]) -> list[str]:
        return self.partition.topics(self.prefix, device_ids)

    def describe(self, topics: list[str]) -> str:
        p = self.partition
        return f"{len(topics)} (the boards of worker {p.index} of {p.count})"

    def save(self, state: TopicState) -> None:
        save_state(self.spool_dir, state)

    def releasable(self, stale: set[str], device_ids: set[str]) -> set[str]:
        """Of the topics held but no longer ours, those another worker now has for sure."""
        granted: dict[int, set[str]] = {}
        free = set()
        for topic in stale:
            device_id = topic[len(self.prefix) + 1:].split("/", 1)[0]
            if device_id not in device_ids:
                free.add(topic)
                continue
            owner = self.partition.owner(device_id)
            if owner not in granted:
                sibling = self.spool_dir.parent / f"worker-{owner}"
                granted[owner] = load_state(sibling).granted
            if topic in granted[owner]:
                free.add(topic)
        return free
