"""A fleet of simulated boards: each one a real ``micropython`` process running the firmware.

Every board gets a folder of its own (its flash: ``config.json`` and the boot counter) and is
registered in the device registry, spread over districts and kinds.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urbanpulse.config import ConfigError, MqttSettings, load_settings
from urbanpulse.contract.vocabulary import KINDS
from urbanpulse.field.boardconfig import (
    board_config,
    on_default_wiring,
    sim_seed,
    simulated_sensors,
    standard_sensors,
)
from urbanpulse.field.bundle import BundleError, build_bundle, micropython_binary
from urbanpulse.registry.devices import Device, merge_devices

from . import hostboard

log = logging.getLogger("urbanpulse.fleet")

# Where the simulated city lies (lat, lon); districts sit around it.
CITY_CENTRE = (52.3702, 4.8952)


class FleetError(RuntimeError):
    pass


def plan_devices(count: int, districts: Sequence[str], interval_s: float) -> list[Device]:
    """``count`` boards: kinds in turn (so every kind appears once count >= 7), districts in
    turn within each kind, ids like ``air-north-01``."""
    if count < 1:
        raise FleetError("a fleet needs at least one board")
    if not districts:
        raise FleetError("a fleet needs at least one district")
    devices = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        round_ = i // len(KINDS)
        district = districts[(i + round_) % len(districts)]
        number = round_ + 1
        slug = re.sub(r"[^a-z0-9]+", "-", district.lower()).strip("-")[:12] or "district"
        d_index = districts.index(district)
        lat = CITY_CENTRE[0] + 0.01 * (d_index - 1) + 0.001 * (i % 7)
        lon = CITY_CENTRE[1] + 0.015 * (d_index - 1) + 0.0012 * round_
        devices.append(
            Device(
                device_id=f"{kind}-{slug}-{number:02d}",
                kind=kind,
                district=district,
                site=f"{district.title()} {kind} site {number}",
                lat=round(lat, 5),
                lon=round(lon, 5),
                interval_s=interval_s,
            )
        )
    return devices


# What a board of each kind carries in the street, on the firmware's default wiring. On a PC
# they talk to emulated chips (firmware/host/emu_*.py); the emulated water gauge hangs 600 cm
# above its datum, and air boards have the CO2 sensor too.
DRIVER_SENSORS: dict[str, list[dict[str, Any]]] = {
    kind: on_default_wiring(standard_sensors(kind, mount_cm=600, co2=True)) for kind in KINDS
}


def host_board_config(
    device: Device,
    mqtt: MqttSettings,
    sample_interval_s: float,
    publish_interval_s: float,
    max_messages: int | None = None,
    drivers: bool = False,
) -> dict[str, Any]:
    """A simulated board's ``config.json``, for the broker in ``mqtt`` (anonymous boards).

    ``drivers``: the kind's real sensor drivers (DRIVER_SENSORS) instead of simulated
    sensors.
    """
    sensors = DRIVER_SENSORS[device.kind] if drivers else simulated_sensors(device.kind)
    return board_config(
        device.device_id,
        device.kind,
        mqtt_host=mqtt.host,
        mqtt_port=mqtt.port,
        prefix=mqtt.topic_prefix,
        wifi_ssid="urbanpulse-sim",
        wifi_password="simulated",
        sample_interval_s=sample_interval_s,
        publish_interval_s=publish_interval_s,
        sensors=[dict(s) for s in sensors],
        seed=sim_seed(device.device_id),
        max_messages=max_messages,
    )


# How a board process on the host ends when a board would come back by itself
# (firmware/urbanpulse_fw/hwmisc.py): machine.reset() is an exit with EXIT_RESET,
# machine.deepsleep(ms) an exit with EXIT_DEEPSLEEP after writing ms to `deepsleep_ms`, and
# the host watchdog (firmware/host/hostwdt.py) SIGKILLs it after writing "wdt" to
# `reset_cause`. Any other exit (a bad config, max_messages reached, Ctrl-C) is for good.
EXIT_RESET = 3
EXIT_DEEPSLEEP = 4
# A board that resets this soon after it started is started again only once this long has
# passed since: a board in a crash loop must not take a PC's cores (an ESP32 waits 5 s before
# it resets after a fatal error, app.py).
RESET_PAUSE_S = 3.0


@dataclass
class Board:
    device: Device
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: Path = field(init=False)
    starts: int = 0  # processes started: the first boot and every reset or wake-up since
    exit_codes: list[int] = field(default_factory=list)
    wake_at: float | None = None  # monotonic time the board starts again (reset, asleep)
    started_at: float = 0.0  # monotonic time of the last start
    done: bool = False  # exited for good

    def __post_init__(self) -> None:
        self.log_file = self.folder / "console.log"

    def restart_delay(self, code: int, now: float) -> float | None:
        """Seconds until a board that exited with ``code`` at ``now`` is back, or None: it is
        not."""
        pause = max(0.0, self.started_at + RESET_PAUSE_S - now)
        if code == EXIT_RESET:
            return pause
        if code == EXIT_DEEPSLEEP:
            try:
                return int((self.folder / "deepsleep_ms").read_text()) / 1000
            except (OSError, ValueError):
                return 0.0
        if code == -signal.SIGKILL:
            try:
                # reset_cause is read and removed by the next boot; only the watchdog's kill
                # leaves "wdt" in it (the fleet's own kill, in stop(), never comes here).
                if (self.folder / "reset_cause").read_text().strip() == "wdt":
                    return pause
            except OSError:
                pass
        return None


# The RAM every board gets, simulated sensors, real drivers or a command key: what the
# firmware's data must live in (its code runs from the ROMFS image, outside it; see
# hostboard.heap_size). tests/firmware/test_firmware_soak.py runs a day of every kind's
# drivers in it.
HEAP = "64k"
# A board speaking TLS: on the unix port mbedTLS's buffers come from the same heap (an ESP32
# keeps them in its IDF heap, outside MicroPython's).
TLS_HEAP = "112k"


def board_heap(config: dict[str, Any]) -> str:
    """The RAM a host board with this config.json runs in."""
    return TLS_HEAP if config.get("mqtt", {}).get("tls") else HEAP


class Fleet:
    """Starts and stops the board processes, and starts a board again when it reboots,
    wakes from deep sleep or is reset by its watchdog, as a board in the street comes back
    by itself."""

    def __init__(self, boards_dir: Path, heap: str = HEAP) -> None:
        # Absolute: each board runs in its own folder, the bundle's paths must still hold.
        self.boards_dir = boards_dir.resolve()
        self.heap = heap
        self.boards: list[Board] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        # Boards run the compiled bundle, as flashed onto an ESP32.
        try:
            self._micropython = micropython_binary()
            self._firmware = build_bundle(self.boards_dir / "_firmware", host=True)
        except BundleError as exc:
            raise FleetError(str(exc)) from None

    def add(self, device: Device, config: dict[str, Any]) -> Board:
        folder = self.boards_dir / device.device_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        board = Board(device, folder)
        self.boards.append(board)
        return board

    def _launch(self, board: Board) -> None:
        # On the host the stand-ins for `network` etc. come first; a board has the real ones.
        env = hostboard.board_env(self._firmware, board.folder)
        with board.log_file.open("ab") as console:
            board.process = hostboard.launch(
                hostboard.board_argv(self._micropython, self.heap, self._firmware,
                                     folder=board.folder),
                board.folder, env, console)
        board.starts += 1
        board.started_at = time.monotonic()

    def start(self) -> None:
        with self._lock:
            for board in self.boards:
                self._launch(board)
        self._stopping.clear()
        self._supervisor = threading.Thread(target=self._supervise_loop,
                                            name="fleet-supervisor", daemon=True)
        self._supervisor.start()
        log.info("started %d boards under %s", len(self.boards), self.boards_dir)

    def _supervise_loop(self) -> None:
        while not self._stopping.wait(0.1):
            self.supervise()

    def supervise(self) -> None:
        """Start again the boards that rebooted, slept long enough or were reset by their
        watchdog (called every 0.1 s by start()'s thread)."""
        with self._lock:
            now = time.monotonic()
            for board in self.boards:
                p = board.process
                if p is None or board.done:
                    continue
                if board.wake_at is None and p.poll() is not None:
                    board.exit_codes.append(p.returncode)
                    delay = board.restart_delay(p.returncode, now)
                    if delay is None or self._stopping.is_set():
                        board.done = True
                        continue
                    board.wake_at = now + delay
                if board.wake_at is not None and now >= board.wake_at:
                    board.wake_at = None
                    self._launch(board)

    def running(self) -> int:
        """Boards that are up, or down for a moment (rebooting, asleep)."""
        self.supervise()  # a board that has just reset is not counted as gone
        with self._lock:
            return sum(1 for b in self.boards if b.wake_at is not None
                       or (b.process is not None and b.process.poll() is None))

    def wait(self, timeout_s: float) -> bool:
        """Wait for every board to exit for good (max_messages); True if they all did."""
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.running() == 0

    def stop(self, timeout_s: float = 5.0) -> None:
        """A clean stop first (hostboard.stop): the firmware publishes its offline status,
        disconnects and keeps what is unsent in flash; killed past ``timeout_s``."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
        with self._lock:
            for board in self.boards:
                if board.wake_at is not None:  # asleep or resetting: stays down
                    board.wake_at = None
                    board.done = True
                if board.process and board.process.poll() is None:
                    hostboard.stop(board.process)
        deadline = time.monotonic() + timeout_s
        for board in self.boards:
            if board.process is None:
                continue
            try:
                board.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                board.process.kill()
                board.process.wait()


def run_fleet_command(args: argparse.Namespace) -> int:
    from urbanpulse.service.logs import setup_logging

    setup_logging("INFO")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"urbanpulse: {exc}", file=sys.stderr)
        return 2
    districts = [d.strip() for d in args.districts.split(",") if d.strip()]
    drivers = bool(getattr(args, "drivers", False))
    try:
        devices = plan_devices(args.devices, districts, args.publish_interval)
        fleet = Fleet(args.state_dir / "boards")
    except FleetError as exc:
        print(f"urbanpulse: {exc}", file=sys.stderr)
        return 2
    merge_devices(devices, settings.registry.path)
    for device in devices:
        fleet.add(
            device,
            host_board_config(device, settings.mqtt, args.sample_interval, args.publish_interval,
                         drivers=drivers),
        )
    fleet.start()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while fleet.running() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
    print(f"fleet stopped; board consoles in {fleet.boards_dir}/*/console.log")
    return 0
