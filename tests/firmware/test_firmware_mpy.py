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
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from support.hostboards import (
    DRIVER_FIELDS,
    FIRMWARE,
    MPY_TESTS,
    OFFLINE,
    RUNNER,
    Board,
    Broker,
    Recorder,
    check_board_messages,
    micropython_binary,
    retained,
    statuses,
    telemetry_problems,
)
from support.paths import REPO
from support.waiting import wait_until
from urbanpulse.contract.vocabulary import (
    VOCABULARY,
)
from urbanpulse.devtools import hostboard
from urbanpulse.devtools.fleet import EXIT_RESET, HEAP

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
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO, check=False,
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
        assert len(console.splitlines()) <= 7, "no log line per sample:\n" + console
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


def test_bad_config_names_the_key_and_resets_after_a_while(
        tmp_path: Path, boards: Callable[..., Board]) -> None:
    # Not sys.exit (a soft reset loop too fast for a technician on USB), not the REPL (a
    # mounted board offline for good): hw.start_failed waits, then resets.
    board = boards("air-x-008", "air", 1883)
    board.config["mqtt"]["port"] = "1883"
    started = time.monotonic()
    board.start()
    assert board.wait(20) == EXIT_RESET, board.console()
    assert time.monotonic() - started >= 1.0  # hw.START_RETRY_S on the host (30 s on a board)
    console = board.console()
    assert "urbanpulse: config.json: mqtt.port: must be an integer" in console, console
    assert "start failed, resetting in 1 s" in console and "Traceback" not in console, console
    assert not (board.folder / "bootcount").exists(), "a bad config does not count as a boot"


def test_a_start_that_fails_resets_after_a_while(
        tmp_path: Path, boards: Callable[..., Board]) -> None:
    # A valid config whose CA file is missing from the board's flash: the TLS set-up raises
    # once the watchdog runs. The board resets (and reports it) rather than stop at the REPL.
    board = boards("air-x-009", "air", 1883)
    board.config["mqtt"]["tls"] = {"ca_file": "missing.der"}
    board.heap = "112k"  # a TLS board's
    board.start()
    assert board.wait(20) == EXIT_RESET, board.console()
    console = board.console()
    assert "tlsconf.py" in console and "start failed, resetting in 1 s" in console, console
    # What the next start reports: the chip says "hard" (as an ESP32 after machine.reset()),
    # the intent in RTC memory says why.
    assert (board.folder / "reset_cause").read_text() == "hard"
    assert (board.folder / "rtcmem").read_text() == " start"


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
@pytest.mark.parametrize("kind", sorted(DRIVER_FIELDS))
def test_fleet_driver_sensors_give_their_kinds_fields(kind: str, tmp_path: Path) -> None:
    """urbanpulse.devtools.fleet.DRIVER_SENSORS build without an error and, on the emulated chips,
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
    from urbanpulse.devtools.fleet import Fleet, host_board_config, plan_devices

    monkeypatch.chdir(tmp_path)
    device = plan_devices(5, ["north"], 0.5)[4]  # the streetlight
    fleet = Fleet(Path(".urbanpulse") / "boards")
    fleet.add(device, host_board_config(device, MqttSettings(port=broker.port), 0.2, 0.4,
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



def test_a_traffic_board_counts_vehicles_in_hardware(broker: Broker,
                                                     boards: Callable[..., Board]) -> None:
    """The pulse counter on a PCNT unit (machine.Counter; on the host, emulated beside the
    detector, firmware/host/hostbus.py): the board reports its counts as with the interrupt."""
    rec = Recorder(broker.port)
    try:
        board = boards("traffic-pcnt-01", "traffic", broker.port, max_messages=3,
                       sample_interval_s=1, sensors=[{"type": "pulse", "counter": 0}])
        board.start()
        assert board.wait(60) == 0, board.console()
        got = [s for d in rec.docs(board.device_id, "telemetry") for s in d["samples"]]
        assert got and all(isinstance(s.get("vehicles"), int) and s["period_s"] >= 1
                           for s in got), got
        assert "Traceback" not in board.console(), board.console()
    finally:
        rec.close()
