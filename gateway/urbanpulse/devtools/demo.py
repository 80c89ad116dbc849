"""``urbanpulse demo``: the whole system on one machine, watched live.

Starts (unless already running) the local Mosquitto and InfluxDB, writes a demo configuration
and registry, runs the gateway as its own process, starts the fleet of boards running the real
firmware, and shows a live view until Ctrl-C, SIGTERM or SIGHUP (the terminal closed), then
stops what it started.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from contextlib import nullcontext, suppress
from pathlib import Path
from types import FrameType

from rich.console import Console, RenderableType
from rich.live import Live

from urbanpulse.config import InfluxSettings, load_settings
from urbanpulse.influx.writer import V1Writer, WriteError
from urbanpulse.registry.devices import merge_devices

from . import stack
from .fleet import Fleet, FleetError, host_board_config, plan_devices
from .live import collect, render

DISTRICTS = ("north", "centre", "south")
# Each of these ends the demo the way Ctrl-C does, with everything it started stopped.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _say(console: Console, text: str) -> None:
    """Print, unless the terminal is gone (SIGHUP): the clean-up must go on regardless."""
    with suppress(OSError):
        console.print(text)


def write_demo_config(state_dir: Path, settings: stack.StackSettings) -> Path:
    config = state_dir / "urbanpulse.toml"
    config.write_text(
        "# Written by `urbanpulse demo`; see README.md for every key.\n"
        f'[mqtt]\nhost = "{settings.host}"\nport = {settings.mqtt_port}\n'
        'client_id = "urbanpulse-demo-gateway"\n'
        f'[influx]\nurl = "http://{settings.host}:{settings.influx_port}"\n'
        f'database = "{settings.database}"\n'
        '[registry]\npath = "devices.csv"\nreload_interval_s = 2\n'
        "[stats]\ninterval_s = 2\n",
        encoding="utf-8",
    )
    return config


def run_demo(args: argparse.Namespace) -> int:
    console = Console()
    settings = stack.StackSettings(
        state_dir=args.state_dir,
        mqtt_port=args.mqtt_port,
        influx_port=args.influx_port,
        influx_rpc_port=args.influx_rpc_port,
    )
    already = {s.name for s in stack.status(settings) if s.running}
    # From here on a signal ends the demo through the clean-up below (stack.up itself stops
    # what it started when interrupted).
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        console.print("starting Mosquitto and InfluxDB ...")
        console.print(stack.format_status(stack.up(settings)))
    except stack.StackError as exc:
        console.print(f"[red]urbanpulse demo: {exc}[/red]")
        return 2

    log_path = args.state_dir / "gateway.log"
    gateway: subprocess.Popen[bytes] | None = None
    fleet: Fleet | None = None
    try:
        config_path = write_demo_config(args.state_dir, settings)
        gateway_settings = load_settings(config_path)
        sample_s, publish_s = 1.0, 2.0
        devices = plan_devices(max(args.devices, 7), DISTRICTS, publish_s)
        merge_devices(devices, gateway_settings.registry.path)
        with log_path.open("ab") as gateway_log:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse", "gateway", "run", "--config",
                 str(config_path)],
                stdout=gateway_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        fleet = Fleet(args.state_dir / "boards")
        for device in devices:
            fleet.add(device, host_board_config(device, gateway_settings.mqtt, sample_s, publish_s))
        fleet.start()
        console.print(
            f"gateway pid {gateway.pid} (log {log_path}), {len(devices)} boards in "
            f"{', '.join(DISTRICTS)}; Ctrl-C stops the demo"
        )
        _watch(console, gateway_settings.influx, gateway, fleet, args)
    except FleetError as exc:
        console.print(f"[red]urbanpulse demo: {exc}[/red]")
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        for sig in STOP_SIGNALS:  # a second Ctrl-C or kill must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        _say(console, "stopping the boards, the gateway and the services ...")
        if fleet is not None:
            fleet.stop()
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(15)
            except subprocess.TimeoutExpired:
                gateway.kill()
        started_here = [s for s in ("mosquitto", "influxdb") if s not in already]
        if started_here:
            stack.down(settings)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say(console, "demo stopped.")
    return 0


def _watch(
    console: Console,
    influx: InfluxSettings,
    gateway: subprocess.Popen[bytes],
    fleet: Fleet,
    args: argparse.Namespace,
) -> None:
    """Refresh the view every few seconds until the duration ends (or Ctrl-C)."""
    db = V1Writer(influx)
    deadline = None if args.duration is None else time.monotonic() + args.duration

    def view() -> RenderableType:
        try:
            return render(collect(db))
        except WriteError as exc:
            return f"InfluxDB query failed: {exc}"

    live = Live(console=console, auto_refresh=False) if not args.no_live else None
    with live or nullcontext():
        while deadline is None or time.monotonic() < deadline:
            if gateway.poll() is not None:
                raise FleetError(f"the gateway exited (code {gateway.returncode}); see its log")
            if live is not None:
                live.update(view(), refresh=True)
            time.sleep(3.0)
    if live is None:
        console.print(view())
    console.print(f"boards still running: {fleet.running()}")
