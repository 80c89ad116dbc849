"""The field technician's subcommands: ``provision``, ``flash`` and ``board check``.

Kept out of main.py so that the command's start-up stays fast (the modules behind these
commands are imported only when one of them runs).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .errors import CliError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def default_out_dir() -> Path:
    """Where provisioned boards' secrets go unless told: the technician's own data folder,
    never the repository (a `git add .` must not take a board's passwords along)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "urbanpulse" / "boards"


def _settings_or_none(config: Path | None) -> Any:
    if config is None:
        return None
    from urbanpulse.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


# -- provision -----------------------------------------------------------------------------
def _secret_from(file: Path | None, env: str) -> str | None:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"{file}: cannot read: {exc.strerror}") from None
    return os.environ.get(env)


def _command_key(path: Path | None) -> str | None:
    if path is None:
        return None
    from urbanpulse.contract.signing import KeyFileError, load_public_hex

    try:
        return load_public_hex(path)
    except KeyFileError as exc:
        raise CliError(str(exc)) from None


def _ca_der(path: Path) -> bytes:
    """The CA certificate (PEM or DER) as DER, what the board's TLS takes."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        data = path.read_bytes()
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{path}: not a certificate: {exc}") from None
    return cert.public_bytes(Encoding.DER)


def cmd_provision(args: argparse.Namespace) -> int:
    from urbanpulse.field.provision import (
        BoardRequest,
        ProvisionError,
        label,
        load_sensors,
        mosquitto_config_lines,
        provision,
    )

    settings = _settings_or_none(args.config)
    registry: Path | None = args.registry or (settings.registry.path if settings else None)
    if registry is None:
        raise CliError("give --registry FILE or --config FILE (its [registry] path)")
    host = args.mqtt_host or (settings.mqtt.host if settings else None)
    if not host:
        raise CliError("give --mqtt-host (the broker's address as the boards reach it)")
    port = args.mqtt_port or (settings.mqtt.port if settings else 1883)
    prefix = settings.mqtt.topic_prefix if settings else "city"
    if args.passwd_file is None and not args.no_auth:
        raise CliError("give --passwd-file (the broker's Mosquitto password file), or --no-auth "
                    "for a broker that takes anonymous boards")
    if args.acl_file is not None and args.passwd_file is None:
        raise CliError("--acl-file needs --passwd-file: an ACL names the board's broker user")
    if args.sensors is not None and args.simulated:
        raise CliError("give --sensors or --simulated, not both")
    ca_file = args.mqtt_ca or (settings.mqtt.ca_file if settings and settings.mqtt.tls
                               else None)
    key_store = args.key_store or (settings.keys.device_keys if settings else None)
    command_key = _command_key(args.command_key
                               or (settings.keys.command_public if settings else None))
    release_key = _command_key(args.release_key
                               or (settings.keys.release_public if settings else None))
    if release_key is not None and command_key is None:
        raise CliError("a release key needs a command key too: a board takes an update only "
                       "in a signed command")
    try:
        sensors = load_sensors(args.sensors) if args.sensors is not None else None
        result = provision(BoardRequest(
            device_id=args.device_id, kind=args.kind, district=args.district,
            site=args.site, lat=args.lat, lon=args.lon, interval_s=args.interval,
            threshold_cm=args.threshold_cm, mount_cm=args.mount_cm,
            registry=registry, out_dir=args.out_dir,
            wifi_ssid=args.wifi_ssid,
            wifi_password=_secret_from(args.wifi_password_file, "URBANPULSE_WIFI_PASSWORD"),
            mqtt_host=host, mqtt_port=port, prefix=prefix,
            passwd_file=args.passwd_file, acl_file=args.acl_file,
            sensors=sensors, simulated=args.simulated, force=args.force,
            key_store=key_store, command_key=command_key, release_key=release_key,
            mqtt_ca=_ca_der(ca_file) if ca_file else None,
            mqtt_tls_hostname=args.mqtt_tls_hostname,
            mqtt_backup_hosts=tuple(args.mqtt_backup_host),
        ))
    except (ProvisionError, OSError) as exc:
        raise CliError(f"{args.device_id} not provisioned: {exc}") from None
    print(label(result, show_secret=args.show_secret))
    print()
    verb = "re-provisioned (new password)" if result.replaced else "provisioned"
    print(f"{result.device.device_id} {verb}; wrote {', '.join(str(f) for f in result.files)}")
    print(f"next: urbanpulse flash --port PORT --image FIRMWARE.bin "
          f"--config {result.config_path}")
    if host in LOOPBACK:
        print(f"warning: mqtt host {host} is this machine; a board cannot reach it there",
              file=sys.stderr)
    if command_key is None:
        print("warning: no command key (--command-key, [keys] command_public): this board "
              "carries out unsigned commands", file=sys.stderr)
    if key_store is None:
        print("warning: no key store (--key-store, [keys] device_keys): this board gets no "
              "device key and sends unsealed (version 1) telemetry", file=sys.stderr)
    if args.passwd_file is not None:
        lines = "\n  ".join(mosquitto_config_lines(args.passwd_file, args.acl_file))
        print(f"broker: Mosquitto needs, in its configuration (then `systemctl reload "
              f"mosquitto` so it re-reads the files):\n  {lines}", file=sys.stderr)
    return 0


def add_provision(sub: Any) -> None:
    p = sub.add_parser("provision", help="register a board, write its config.json and "
                       "broker credentials, print its label")
    p.add_argument("device_id", help="3-32 characters of a-z 0-9 -, starting with a letter")
    p.add_argument("--kind", required=True,
                   help="air, noise, traffic, parking, streetlight, water or soil")
    p.add_argument("--district", required=True)
    p.add_argument("--site", default=None)
    p.add_argument("--lat", type=float, default=None, help="latitude, degrees")
    p.add_argument("--lon", type=float, default=None, help="longitude, degrees")
    p.add_argument("--interval", type=float, default=60.0,
                   help="seconds between reports (registry interval_s; default 60)")
    p.add_argument("--mount-cm", type=float, default=None,
                   help="water: the sensor's height above the river-bed datum (required)")
    p.add_argument("--threshold-cm", type=float, default=None,
                   help="water: alert level for the KPIs (registry threshold_cm)")
    p.add_argument("--sensors", type=Path, default=None,
                   help="JSON list for config.json's sensors (default: the kind's standard "
                   "wiring, firmware/README.md)")
    p.add_argument("--simulated", action="store_true",
                   help="simulated sensors (bench boards, demos)")
    p.add_argument("--wifi-ssid", required=True)
    p.add_argument("--wifi-password-file", type=Path, default=None,
                   help="file holding the WiFi password (else $URBANPULSE_WIFI_PASSWORD; "
                   "neither: an open network)")
    p.add_argument("--mqtt-host", default=None,
                   help="the broker as boards reach it (default: [mqtt] host of --config)")
    p.add_argument("--mqtt-port", type=int, default=None,
                   help="default: [mqtt] port of --config, else 1883")
    p.add_argument("--mqtt-backup-host", action="append", default=[], metavar="HOST",
                   help="a broker the board tries when the one before does not answer "
                   "(repeat for several, up to 4; same port and credentials)")
    p.add_argument("--registry", type=Path, default=None,
                   help="registry file (default: [registry] path of --config)")
    p.add_argument("--config", type=Path, default=None, help="urbanpulse.toml")
    p.add_argument("--passwd-file", type=Path, default=None,
                   help="Mosquitto password file to add the board's user to")
    p.add_argument("--acl-file", type=Path, default=None,
                   help="Mosquitto ACL file: the board may use only {prefix}/{id}/#")
    p.add_argument("--mqtt-ca", type=Path, default=None,
                   help="the city's CA certificate: the board speaks MQTT over TLS and trusts "
                   "this CA only (default: [mqtt] ca_file of --config when [mqtt] tls)")
    p.add_argument("--mqtt-tls-hostname", default=None,
                   help="the name in the broker's certificate, if not --mqtt-host")
    p.add_argument("--key-store", type=Path, default=None,
                   help="the gateway's device key store to add the board's key to (default: "
                   "[keys] device_keys of --config)")
    p.add_argument("--command-key", type=Path, default=None,
                   help="the command public key (command.pub): the board then carries out "
                   "only signed commands (default: [keys] command_public of --config)")
    p.add_argument("--release-key", type=Path, default=None,
                   help="the release public key (release.pub): the board then installs "
                   "updates over the air signed with it (default: [keys] release_public of "
                   "--config; none: no updates over the air)")
    p.add_argument("--no-auth", action="store_true",
                   help="no broker credentials (a broker that allows anonymous boards)")
    p.add_argument("--out-dir", type=Path, default=default_out_dir(),
                   help="config.json goes to OUT_DIR/DEVICE_ID/, 0600 (default: "
                        "$XDG_DATA_HOME/urbanpulse/boards, outside any checkout)")
    p.add_argument("--force", action="store_true",
                   help="provision an id that is already registered again (new password)")
    p.add_argument("--show-secret", action="store_true",
                   help="print the broker password on the label too")
    p.set_defaults(func=cmd_provision)


# -- flash ---------------------------------------------------------------------------------
def cmd_flash(args: argparse.Namespace) -> int:
    from urbanpulse.field.flashing import (
        FlashError,
        FlashPlan,
        check_config,
        check_image,
        describe,
        flash,
        planned_files,
    )

    if (args.image is None) == (not args.no_image):
        raise CliError("give --image FIRMWARE.bin, or --no-image to keep the board's MicroPython")
    try:
        if args.image is not None:
            check_image(args.image)
        check_config(args.config)
        plan = FlashPlan(port=args.port, image=args.image, config=args.config,
                         bundle_dir=args.bundle_dir, baud=args.baud, reset=not args.no_reset,
                         boot_count=args.boot_count)
        plan.files = planned_files(args.bundle_dir, args.config)
        if args.dry_run:
            print("\n".join(describe(plan)))
            return 0
        verified = flash(plan, wait_s=args.wait, say=lambda text: print(text, flush=True))
    except FlashError as exc:
        raise CliError(str(exc)) from None
    print(f"board on {args.port} flashed: {verified.files} files verified, config.json "
          f"fingerprint {verified.config_fingerprint} (compare with the label)")
    return 0


def add_flash(sub: Any) -> None:
    p = sub.add_parser("flash", help="write MicroPython, the firmware and config.json to a "
                       "board over USB, then verify them")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--image", type=Path, default=None,
                   help="MicroPython ESP32 image (.bin) to write at 0x1000 after erasing")
    p.add_argument("--no-image", action="store_true",
                   help="keep the board's MicroPython: only replace the firmware and config")
    p.add_argument("--config", type=Path, required=True,
                   help="the board's config.json (from `urbanpulse provision`)")
    p.add_argument("--dry-run", action="store_true", help="print every command, run none")
    p.add_argument("--baud", type=int, default=460800, help="esptool baud rate (460800)")
    p.add_argument("--wait", type=float, default=60.0,
                   help="seconds to wait for MicroPython after writing the image (60)")
    p.add_argument("--no-reset", action="store_true",
                   help="leave the board at its REPL instead of starting the firmware")
    p.add_argument("--boot-count", type=int, default=None,
                   help="leave at least this boot counter on the board (a replacement board "
                   "for an id that reported before: above the boot `board check` shows)")
    p.add_argument("--bundle-dir", type=Path, default=Path(".urbanpulse/bundle"),
                   help="where the .mpy bundle is built (default: .urbanpulse/bundle)")
    p.set_defaults(func=cmd_flash)


# -- board check ---------------------------------------------------------------------------
def cmd_board_check(args: argparse.Namespace) -> int:
    from urbanpulse.config import ConfigError, load_settings
    from urbanpulse.field.boardcheck import BoardCheckError, check_board, format_report

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        report = check_board(settings, args.device_id, args.timeout)
    except BoardCheckError as exc:
        raise CliError(f"cannot check {args.device_id}: {exc}") from None
    print(format_report(report))
    return 0 if report.online else 1


def add_board(sub: Any) -> None:
    board = sub.add_parser("board", help="one board, on site")
    board_sub = board.add_subparsers(dest="board_command", required=True)
    p = board_sub.add_parser("check", help="status, last health report and readings of a "
                             "board; exit 0 online, 1 offline or never seen")
    p.add_argument("device_id")
    p.add_argument("--config", type=Path, default=None,
                   help="urbanpulse.toml (broker and InfluxDB); URBANPULSE_* variables apply")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for the broker (5)")
    p.set_defaults(func=cmd_board_check)


def add_field_commands(sub: Any) -> None:
    """Called by cli.build_parser with its subparsers."""
    add_provision(sub)
    add_flash(sub)
    add_board(sub)
