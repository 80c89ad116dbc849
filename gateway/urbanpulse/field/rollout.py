"""``urbanpulse ota push``: a release offered to boards over MQTT, health-gated.

The operator's machine signs an "ota" command per board (field/commands.py) and serves the
release's chunks to the boards that ask (contract/ota.py) until each is done. Canaries go
first; the others are offered the release only once every canary reported the new version
running (it confirms itself after its first health report reached the broker) within the
deadline. A canary that fails, rolls back or stays silent stops the rollout.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from urbanpulse.broker.subscriber import BrokerError, subscribed
from urbanpulse.config import MqttSettings
from urbanpulse.contract import ota
from urbanpulse.field.commands import CommandError, command_for
from urbanpulse.field.release import Release

# Outcomes: updated (the new version confirmed), current (it ran it already), failed (the
# board said why), timeout (no final answer in time), skipped (a canary failed first).
UPDATED, CURRENT, FAILED, TIMEOUT, SKIPPED = "updated", "current", "failed", "timeout", "skipped"


@dataclass
class Progress:
    device_id: str
    state: str = "offered"  # the board's last state (contract/ota.py), or an outcome
    detail: str = ""
    bytes_sent: int = 0
    done: bool = False

    @property
    def ok(self) -> bool:
        return self.state in (UPDATED, CURRENT)


class Rollout:
    def __init__(self, settings: MqttSettings, release: Release, key: Ed25519PrivateKey,
                 log: Callable[[str], None] = print, ttl_s: float = 300.0) -> None:
        self.settings = settings
        self.release = release
        self.key = key
        self.log = log
        self.ttl_s = ttl_s
        self.cid = f"{ota.OTA_ID_PREFIX}{secrets.token_hex(4)}"
        self.boards: dict[str, Progress] = {}
        self.changed = threading.Condition()
        self.client: mqtt.Client | None = None

    # -- MQTT callbacks (paho's thread) ------------------------------------------------------
    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        prefix = self.settings.topic_prefix
        device, _, channel = msg.topic[len(prefix) + 1:].partition("/")
        progress = self.boards.get(device)
        if progress is None or progress.done:
            return
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(doc, dict) or doc.get("id") != self.cid:
            return
        if channel == ota.REQUEST_CHANNEL:
            self._serve(device, progress, doc)
        elif channel == "cmd/ack":
            self._answer(progress, doc)

    def _serve(self, device: str, progress: Progress, doc: dict[str, Any]) -> None:
        f, o = doc.get("f"), doc.get("o")
        if not isinstance(f, int) or not isinstance(o, int):
            return
        data = self.release.content(f)
        if data is None or not 0 <= o < len(data):
            return
        piece = data[o:o + ota.CHUNK_BYTES]
        assert self.client is not None
        self.client.publish(f"{self.settings.topic_prefix}/{device}/{ota.CHUNK_CHANNEL}",
                            ota.chunk(f, o, piece), qos=0)
        progress.bytes_sent += len(piece)

    def _answer(self, progress: Progress, doc: dict[str, Any]) -> None:
        with self.changed:
            if doc.get("ok") is not True:
                progress.state, progress.done = FAILED, True
                progress.detail = str(doc.get("error"))
            elif doc.get("state") == ota.RUNNING:
                fw = doc.get("fw")
                progress.done = True
                if fw != self.release.version:
                    progress.state, progress.detail = FAILED, f"runs {fw}"
                else:
                    progress.state = UPDATED if progress.state != "offered" else CURRENT
            else:
                progress.state = str(doc.get("state"))
            self.log(f"{progress.device_id}: {progress.state}"
                     + (f" ({progress.detail})" if progress.detail else ""))
            self.changed.notify_all()

    # -- the rollout ---------------------------------------------------------------------------
    def offer(self, devices: Sequence[str], deadline_s: float) -> list[Progress]:
        """Send the command to ``devices`` and serve them until each is done or the deadline
        has passed."""
        assert self.client is not None
        wave = [self.boards.setdefault(d, Progress(d)) for d in devices]
        prefix = self.settings.topic_prefix
        params = self.release.command_params()
        for p in wave:
            payload = command_for(p.device_id, ota.OP, params, self.key, self.cid, self.ttl_s)
            info = self.client.publish(f"{prefix}/{p.device_id}/cmd", payload, qos=1)
            info.wait_for_publish(10)
            if not info.is_published():
                raise CommandError(f"broker {self.settings.host}:{self.settings.port} did not "
                                   "take the command")
        end = time.monotonic() + deadline_s
        with self.changed:
            while not all(p.done for p in wave):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(min(left, 1.0))
            for p in wave:
                if not p.done:
                    p.done = True
                    p.detail = f"last state {p.state}, after {deadline_s:.0f} s"
                    p.state = TIMEOUT
        return wave

    def run(self, devices: Sequence[str], canaries: int, deadline_s: float) -> list[Progress]:
        """Canaries first, then the rest if every canary is running the release."""
        prefix = self.settings.topic_prefix
        first, rest = list(devices[:canaries]), list(devices[canaries:])
        try:
            with subscribed(self.settings, f"{prefix}/+/{ota.REQUEST_CHANNEL}", self.on_message,
                            "ota") as client:
                # Ordered after this SUBSCRIBE on one connection: in place before any answer.
                client.subscribe(f"{prefix}/+/cmd/ack", qos=1)
                self.client = client
                if first:
                    self.log(f"release {self.release.version} to {len(first)} canaries: "
                             + ", ".join(first))
                    if not all(p.ok for p in self.offer(first, deadline_s)):
                        for d in rest:
                            self.boards[d] = Progress(d, SKIPPED, "a canary failed", done=True)
                        rest = []
                if rest:
                    self.log(f"release {self.release.version} to {len(rest)} boards")
                    self.offer(rest, deadline_s)
        except BrokerError as exc:
            raise CommandError(str(exc)) from None
        finally:
            self.client = None
        return [self.boards[d] for d in devices]
