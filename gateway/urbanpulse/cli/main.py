"""The ``urbanpulse`` command: operators' and field technicians' entry point."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from urbanpulse import __version__

from .errors import CliError

if TYPE_CHECKING:  # the commands import their modules lazily, to keep start-up fast
    from urbanpulse.config import Settings
    from urbanpulse.devtools.stack import StackSettings

Command = Callable[[argparse.Namespace], int]


# -- stack ---------------------------------------------------------------------------------
def _stack_settings(args: argparse.Namespace) -> StackSettings:
    from urbanpulse.devtools.stack import StackSettings

    return StackSettings(
        state_dir=args.state_dir,
        mqtt_port=args.mqtt_port,
        influx_port=args.influx_port,
        influx_rpc_port=args.influx_rpc_port,
    )


def _print_secure(settings: StackSettings) -> None:
    from urbanpulse.devtools.stack.secure import secure_dir, write_gateway_config

    root = secure_dir(settings)
    config = write_gateway_config(settings)
    print(f"secure mode: TLS only on {settings.host}:{settings.mqtt_port} (CA {root / 'ca.crt'}),"
          f" passwords and the ACL; InfluxDB with authentication\n"
          f"  gateway:   urbanpulse gateway run --config {config}\n"
          f"  boards:    urbanpulse provision ... --config {config} --passwd-file"
          f" {root / 'mosquitto.passwd'} (TLS, signed commands, device keys), then"
          f" `urbanpulse stack reload --secure`\n"
          f"  commands:  urbanpulse cmd send DEVICE OP --config {root / 'operator.toml'}"
          f" --key-file {root / 'secrets' / 'command.key'}\n"
          f"  passwords: {root / 'secrets'}/ (0600; the operator's MQTT user is"
          f" urbanpulse-operator, Grafana's InfluxDB user urbanpulse-grafana)")


def cmd_stack(args: argparse.Namespace) -> int:
    from urbanpulse.devtools import stack
    from urbanpulse.devtools.stack.secure import secure_dir, secure_settings

    settings = _stack_settings(args)
    try:
        if args.secure and (args.action == "up" or secure_dir(settings).is_dir()):
            settings = secure_settings(settings)
        if args.action == "up":
            states = stack.up(settings)
            if settings.secure:
                _print_secure(settings)
        elif args.action == "down":
            states = stack.down(settings)
        elif args.action == "reload":
            states = stack.reload(settings)
        else:
            states = stack.status(settings)
    except stack.StackError as exc:
        raise CliError(str(exc)) from None
    print(stack.format_status(states))
    if args.action == "status":
        return 0 if all(s.running for s in states) else 3
    return 0


# -- gateway -------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> Settings:
    from urbanpulse.config import ConfigError, load_settings

    try:
        return load_settings(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _worker_index(text: str) -> tuple[int, int]:
    """``I/N``: worker I of N (service/workers.py)."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"worker {i} of {n}: expected 0 <= I < N")
    return i, n


def cmd_gateway_run(args: argparse.Namespace) -> int:
    from urbanpulse.registry.devices import RegistryError
    from urbanpulse.registry.keystore import KeyStoreError
    from urbanpulse.service.gateway import Gateway
    from urbanpulse.service.logs import setup_logging
    from urbanpulse.service.partition import Partition
    from urbanpulse.service.spool import SpoolError
    from urbanpulse.service.workers import Supervisor, die_with_parent, worker_settings

    settings = _settings(args)
    setup_logging(settings.log.level)
    supervisor: Supervisor | None = None
    try:
        if args.worker is not None:
            die_with_parent()
            index, count = args.worker
            worker = worker_settings(settings, index)
            gateway = Gateway(worker, role="worker", partition=None if worker.mqtt.shared_group
                              else Partition(index, count))
        elif settings.service.worker_count() > 1:
            supervisor = Supervisor(settings, args.config)
            gateway = supervisor.coordinator
        else:
            gateway = Gateway(settings)
    except (RegistryError, KeyStoreError, SpoolError) as exc:
        raise CliError(str(exc)) from None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        (supervisor or gateway).request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if supervisor is not None:
        return supervisor.run()
    gateway.start()
    gateway.run()
    gateway.stop()
    return 0


def cmd_gateway_status(args: argparse.Namespace) -> int:
    from urbanpulse.service.metrics import MetricsUnreachable, scrape, summary

    url: str | None = args.url
    if url is None:
        metrics = _settings(args).metrics if args.config else None
        if metrics is not None and metrics.port == 0:
            raise CliError(f"{args.config}: [metrics] port = 0, the gateway serves no metrics")
        host, port = (metrics.host, metrics.port) if metrics else ("127.0.0.1", 9464)
        url = f"http://{host}:{port}/metrics"
    try:
        samples = scrape(url)
    except MetricsUnreachable as exc:
        print(f"urbanpulse: {exc} (is the gateway running? see [metrics] host/port)",
              file=sys.stderr)
        return 1
    print(summary(url, samples))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from urbanpulse.registry.devices import RegistryError, load_registry

    settings = _settings(args)
    try:
        registry = load_registry(settings.registry.path)
    except RegistryError as exc:
        raise CliError(f"configuration is valid, but the registry is not: {exc}") from None
    print(settings.model_dump_json(indent=2))
    print(f"registry {settings.registry.path}: {len(registry)} devices", file=sys.stderr)
    return 0


# -- registry ------------------------------------------------------------------------------
def cmd_registry_check(args: argparse.Namespace) -> int:
    from urbanpulse.registry.devices import RegistryError, load_registry

    try:
        registry = load_registry(args.file)
    except RegistryError as exc:
        raise CliError(str(exc)) from None
    by_kind: dict[str, int] = {}
    for device in registry.devices:
        by_kind[device.kind] = by_kind.get(device.kind, 0) + 1
    summary = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
    print(f"{args.file}: {len(registry)} devices ({summary or 'none'})")
    return 0


def cmd_registry_import(args: argparse.Namespace) -> int:
    from urbanpulse.registry.devices import RegistryError, import_devices

    target: Path = args.into
    if target is None:
        target = _settings(args).registry.path
    try:
        added, updated = import_devices(args.file, target)
    except RegistryError as exc:
        raise CliError(f"nothing imported: {exc}") from None
    print(f"{target}: {added} devices added, {updated} updated from {args.file}")
    return 0


# -- fleet and demo ------------------------------------------------------------------------
def cmd_fleet_run(args: argparse.Namespace) -> int:
    from urbanpulse.devtools.fleet import run_fleet_command

    result: int = run_fleet_command(args)
    return result


def cmd_demo(args: argparse.Namespace) -> int:
    from urbanpulse.devtools.demo import run_demo

    result: int = run_demo(args)
    return result


# -- kpi -----------------------------------------------------------------------------------
def cmd_kpi_run(args: argparse.Namespace) -> int:
    from urbanpulse.kpi.job import KpiJob
    from urbanpulse.registry.devices import RegistryError, RegistryWatcher
    from urbanpulse.service.logs import setup_logging

    settings = _settings(args)
    setup_logging(settings.log.level)
    try:
        watcher = RegistryWatcher(settings.registry.path)
    except RegistryError as exc:
        raise CliError(str(exc)) from None
    job = KpiJob(settings, lambda: watcher.registry)
    if args.once:
        try:
            report = job.engine.run()
        except Exception as exc:
            raise CliError(f"kpi run failed: {exc}") from None
        print(f"kpi: {report.hours} hours, {report.days} days, {report.points} points "
              f"in {report.seconds:.2f} s")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    job.enabled = True  # asked for explicitly, whatever [kpi] enabled says
    while not stop.is_set():
        try:
            watcher.poll()
        except RegistryError as exc:
            print(f"urbanpulse: registry not reloaded: {exc}", file=sys.stderr)
        job.run_due(time.monotonic())
        stop.wait(1.0)
    return 0


# -- parser --------------------------------------------------------------------------------
def _add_stack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=Path(".urbanpulse"),
                   help="data, logs and pid files (default: .urbanpulse)")
    p.add_argument("--mqtt-port", type=int, default=18831, help="Mosquitto port (18831)")
    p.add_argument("--influx-port", type=int, default=18086, help="InfluxDB HTTP port (18086)")
    p.add_argument("--influx-rpc-port", type=int, default=18088,
                   help="InfluxDB RPC port (18088)")


def _add_config_option(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--config", type=Path, required=required, default=None,
                   help="urbanpulse.toml; every key can be overridden by URBANPULSE_* variables")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urbanpulse", description="UrbanPulse smart-city sensor platform"
    )
    parser.add_argument("--version", action="version", version=f"urbanpulse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="local Mosquitto and InfluxDB for development and tests")
    p.add_argument("action", choices=["up", "down", "status", "reload"],
                   help="reload: Mosquitto reads its password and ACL files again")
    _add_stack_options(p)
    p.add_argument("--secure", action="store_true",
                   help="as a city runs it: TLS-only broker with passwords and the ACL, "
                        "InfluxDB with authentication (files in STATE_DIR/secure)")
    p.set_defaults(func=cmd_stack)

    gw = sub.add_parser("gateway", help="the MQTT to InfluxDB gateway service")
    gw_sub = gw.add_subparsers(dest="gateway_command", required=True)
    p = gw_sub.add_parser("run", help="run the gateway in the foreground (systemd runs this)")
    _add_config_option(p)
    # One of [service] workers, started by its parent (service/workers.py), never by hand.
    p.add_argument("--worker", type=_worker_index, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_gateway_run)
    p = gw_sub.add_parser("status", help="a running gateway's state, from its /metrics")
    p.add_argument("--url", default=None,
                   help="metrics URL (default: from --config [metrics], else "
                        "http://127.0.0.1:9464/metrics)")
    _add_config_option(p)
    p.set_defaults(func=cmd_gateway_status)

    p = sub.add_parser("config", help="configuration tools")
    cfg_sub = p.add_subparsers(dest="config_command", required=True)
    p = cfg_sub.add_parser("check", help="validate the configuration and registry, print them")
    _add_config_option(p)
    p.set_defaults(func=cmd_config_check)

    reg = sub.add_parser("registry", help="the device registry")
    reg_sub = reg.add_subparsers(dest="registry_command", required=True)
    p = reg_sub.add_parser("check", help="validate a registry file (CSV or TOML)")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_registry_check)
    p = reg_sub.add_parser("import", help="merge devices from a CSV/TOML file into the registry")
    p.add_argument("file", type=Path)
    p.add_argument("--into", type=Path, default=None,
                   help="registry file to update (default: [registry] path of --config)")
    _add_config_option(p)
    p.set_defaults(func=cmd_registry_import)

    fleet = sub.add_parser("fleet", help="simulated boards running the real firmware")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True)
    p = fleet_sub.add_parser("run", help="start N boards (MicroPython processes)")
    _add_config_option(p, required=True)
    p.add_argument("--devices", type=int, default=12, help="number of boards (12)")
    p.add_argument("--districts", default="north,centre,south",
                   help="comma-separated district names")
    p.add_argument("--sample-interval", type=float, default=2.0, help="seconds between samples")
    p.add_argument("--publish-interval", type=float, default=4.0,
                   help="seconds between telemetry messages")
    p.add_argument("--state-dir", type=Path, default=Path(".urbanpulse"),
                   help="where board folders are created (default: .urbanpulse)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--drivers", action="store_true",
                   help="real sensor drivers against emulated chips instead of simulated "
                   "sensors")
    p.set_defaults(func=cmd_fleet_run)

    kpi = sub.add_parser("kpi", help="city KPIs computed from the stored telemetry")
    kpi_sub = kpi.add_subparsers(dest="kpi_command", required=True)
    p = kpi_sub.add_parser("run", help="compute the KPIs every [kpi] interval_s (or --once)")
    p.add_argument("--once", action="store_true",
                   help="recompute the last [kpi] lookback_h hours and their days, then exit")
    _add_config_option(p)
    p.set_defaults(func=cmd_kpi_run)

    p = sub.add_parser("demo", help="stack, gateway, fleet and a live view, all at once")
    _add_stack_options(p)
    p.add_argument("--devices", type=int, default=14, help="number of boards (14)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--no-live", action="store_true", help="print a summary instead of a live view")
    p.set_defaults(func=cmd_demo)

    # The broker's deploy files from its policy: config [--check].
    from .broker import add_broker_commands

    add_broker_commands(sub)

    # Grafana dashboards as code: build [--check], push (cli/dashboards.py).
    from .dashboards import add_dashboard_commands

    add_dashboard_commands(sub)

    # The field technician's tools: provision, flash, board check (cli/field.py).
    from .field import add_field_commands

    add_field_commands(sub)

    # The city's keys and signed commands: keys new, cmd send (cli/signing.py).
    from .signing import add_signing_commands

    add_signing_commands(sub)

    # Firmware updates over the air: ota build, verify, push (cli/ota.py).
    from .ota import add_ota_commands

    add_ota_commands(sub)

    # Open data anyone can verify: export, verify (cli/opendata.py).
    from .opendata import add_opendata_commands

    add_opendata_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except CliError as exc:
        print(f"urbanpulse: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
