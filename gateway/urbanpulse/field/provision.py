"""Provisioning a board: registry entry, ``config.json``, broker credentials, label.

One command does all of it, all or nothing: the device is validated, its config is checked by
the firmware's own validator (run under the MicroPython unix port), and only then are the
broker password file, the ACL file, the board's ``config.json`` and the registry written. If a
write fails, the files already written are put back as they were.

The board's broker user is its device id; its password is random and appears only in
``config.json`` (and on the label with ``--show-secret``). ``mosquitto_passwd`` reads it from
stdin, so it never shows in the process list.

With the city's CA, the board speaks MQTT over TLS and trusts that CA alone (``ca.der``
beside ``config.json``). Keys (CONTRACT.md v2): every board gets a new random device key, in
its ``config.json`` and in the gateway's key store, never elsewhere; with the city's command
public key, the board carries out only commands signed with its private half.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from urbanpulse.broker.passwords import PasswordFileError, passwd_users, with_user
from urbanpulse.broker.policy import acl
from urbanpulse.contract.signing import new_device_key
from urbanpulse.registry.devices import Device, RegistryError, load_registry, merge_devices
from urbanpulse.registry.keystore import KeyStoreError, with_key

from .boardconfig import (
    BoardConfigError,
    board_config,
    simulated_sensors,
    standard_sensors,
)
from .bundle import SCRIPTS, BundleError, firmware_source, micropython_binary

PASSWORD_BYTES = 18  # 24 URL-safe characters
# Beside config.json, flashed with it: the city's CA, the only one the board trusts.
CA_FILE = "ca.der"


class ProvisionError(RuntimeError):
    """Provisioning refused or failed; nothing was changed. The message says why."""


@dataclass(frozen=True)
class BoardRequest:
    """What the technician asked for (the CLI's options)."""

    device_id: str
    kind: str
    district: str
    registry: Path
    out_dir: Path
    wifi_ssid: str
    mqtt_host: str
    wifi_password: str | None = field(default=None, repr=False)
    site: str | None = None
    lat: float | None = None
    lon: float | None = None
    interval_s: float = 60.0
    mqtt_port: int = 1883
    prefix: str = "city"
    passwd_file: Path | None = None  # None: the broker takes anonymous boards
    acl_file: Path | None = None
    sensors: list[dict[str, Any]] | None = None  # None: the kind's standard wiring
    mount_cm: float | None = None  # water: sensor height above the datum (required)
    threshold_cm: float | None = None  # water: alert level, for the registry
    simulated: bool = False
    force: bool = False
    key_store: Path | None = None  # the gateway's device key store
    command_key: str | None = None  # the command public key, hex; None: unsigned commands
    release_key: str | None = None  # the release public key, hex; None: no updates over the air
    mqtt_ca: bytes | None = None  # the city's CA (DER): the board speaks TLS, trusting it only
    mqtt_tls_hostname: str | None = None  # the name in the broker's certificate (None: host)
    mqtt_backup_hosts: tuple[str, ...] = ()  # brokers the board tries in turn after mqtt_host


@dataclass(frozen=True)
class Provisioned:
    device: Device
    config_path: Path
    config: dict[str, Any]
    fingerprint: str
    mqtt_user: str | None
    mqtt_password: str | None = field(repr=False)
    replaced: bool  # the id was registered before (--force)
    files: list[Path]
    signed_commands: bool = False


# -- validation by the firmware itself -----------------------------------------------------
def validate_with_firmware(config_text: str, firmware: Path | None = None) -> None:
    """Run the firmware's ``config.load`` under MicroPython on this text: what the board would
    say at start. Raises ProvisionError with the board's own message if it refuses it."""
    try:
        fw = firmware or firmware_source()
        micropython = micropython_binary()
    except BundleError as exc:
        raise ProvisionError(
            f"cannot check the config with the firmware's validator: {exc}"
        ) from None
    with tempfile.TemporaryDirectory(prefix="urbanpulse-validate-") as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(config_text, encoding="utf-8")
        env = dict(os.environ)
        # As in the fleet: host stand-ins for ESP32-only modules, then the firmware.
        env["MICROPYPATH"] = f"{fw / 'host'}:{fw}"
        result = subprocess.run(
            [micropython, str(fw / SCRIPTS / "validate_config.py"), str(path)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )
    out = result.stdout.strip()
    if result.returncode == 0 and out.endswith("VALID"):
        return
    if result.returncode == 3 and out.startswith("INVALID "):
        raise ProvisionError(f"the firmware would refuse this config: {out[8:]}")
    raise ProvisionError(
        f"the firmware's config validator did not run (exit {result.returncode}): "
        f"{(result.stderr or out).strip()[-800:]}"
    )


# -- config.json ---------------------------------------------------------------------------
def _config(req: BoardRequest, device: Device, password: str | None,
            device_key: str | None) -> dict[str, Any]:
    if req.simulated:
        sensors = simulated_sensors(device.kind)
    elif req.sensors is not None:
        sensors = req.sensors
    else:
        location = None
        if device.lat is not None and device.lon is not None:
            location = (device.lat, device.lon)
        try:
            sensors = standard_sensors(device.kind, mount_cm=req.mount_cm, location=location)
        except BoardConfigError as exc:
            raise ProvisionError(str(exc)) from None
    return board_config(
        device.device_id,
        device.kind,
        mqtt_host=req.mqtt_host,
        mqtt_port=req.mqtt_port,
        prefix=req.prefix,
        username=device.device_id if password is not None else None,
        password=password,
        wifi_ssid=req.wifi_ssid,
        wifi_password=req.wifi_password,
        # The registry's interval is how often the board reports; it samples at that pace
        # and sends every sample at once, so liveness (3 x interval) holds.
        sample_interval_s=device.interval_s,
        publish_interval_s=device.interval_s,
        sensors=sensors,
        cmd_key=req.command_key,
        device_key=device_key,
        ota_key=req.release_key,
        tls=None if req.mqtt_ca is None else {"ca_file": CA_FILE,
                                              "hostname": req.mqtt_tls_hostname},
        backup_hosts=list(req.mqtt_backup_hosts),
    )


def render_config(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"


def fingerprint(config_text: str) -> str:
    """Short hash of the exact config.json bytes: on the label, and printed by
    `urbanpulse flash` from the board's copy, so the two can be compared by eye."""
    digest = hashlib.sha256(config_text.encode("utf-8")).hexdigest()
    return f"{digest[:4]}-{digest[4:8]}-{digest[8:12]}"


# -- Mosquitto password and ACL files ------------------------------------------------------
# -- the whole operation -------------------------------------------------------------------
def _device(req: BoardRequest) -> Device:
    values: dict[str, Any] = {
        "device_id": req.device_id, "kind": req.kind, "district": req.district,
        "site": req.site, "lat": req.lat, "lon": req.lon, "interval_s": req.interval_s,
        "threshold_cm": req.threshold_cm,
    }
    if (req.lat is None) != (req.lon is None):
        raise ProvisionError("give both --lat and --lon, or neither")
    try:
        return Device.parse({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"])
            parts.append(f"{key}={err.get('input')!r}: {err['msg'].removeprefix('Value error, ')}")
        raise ProvisionError("; ".join(parts)) from None


def _create(path: Path, data: bytes, mode: int) -> None:
    """Write a new file that has ``mode`` from its first byte (a secret is never readable by
    others, not even between a write and a chmod)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_staged(text: str, tmp_dir: Path, name: str, mode: int) -> Path:
    path = tmp_dir / name
    _create(path, text.encode("utf-8"), mode)
    return path


class _Commit:
    """Moves staged files into place; undoes every move if a later one fails."""

    def __init__(self) -> None:
        self._done: list[tuple[Path, bytes | None]] = []

    def move(self, staged: Path, target: Path) -> None:
        before = target.read_bytes() if target.exists() else None
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Same directory as the target, so the final rename is atomic.
        tmp = target.with_name(f".{target.name}.urbanpulse-tmp")
        _create(tmp, staged.read_bytes(), staged.stat().st_mode & 0o777)
        os.replace(tmp, target)
        self._done.append((target, before))

    def undo(self) -> None:
        for target, before in reversed(self._done):
            if before is None:
                target.unlink(missing_ok=True)
            else:
                tmp = target.with_name(f".{target.name}.urbanpulse-tmp")
                tmp.write_bytes(before)
                os.replace(tmp, target)


def provision(req: BoardRequest) -> Provisioned:
    device = _device(req)
    try:
        registry = load_registry(req.registry) if req.registry.exists() else None
    except RegistryError as exc:
        raise ProvisionError(f"the registry cannot be read: {exc}") from None
    replaced = registry is not None and device.device_id in registry
    if replaced and not req.force:
        raise ProvisionError(
            f"{device.device_id} is already registered in {req.registry}; "
            "use --force to provision it again (new password, new config)"
        )
    if (req.passwd_file is not None and not req.force
            and device.device_id in passwd_users(req.passwd_file)):
        raise ProvisionError(
            f"{req.passwd_file} already has a broker user {device.device_id}; "
            "use --force to give it a new password"
        )
    config_path = req.out_dir / device.device_id / "config.json"
    if config_path.exists() and not req.force:
        raise ProvisionError(f"{config_path} exists; use --force to replace it")

    password = secrets.token_urlsafe(PASSWORD_BYTES) if req.passwd_file is not None else None
    # Without a key store the gateway could not check the board's seal: no key, and the
    # board sends unsealed (version 1) telemetry.
    device_key = new_device_key() if req.key_store is not None else None
    config = _config(req, device, password, device_key)
    text = render_config(config)
    validate_with_firmware(text)

    files: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="urbanpulse-provision-") as tmp:
        tmp_dir = Path(tmp)
        staged: list[tuple[Path, Path]] = []
        try:
            if req.passwd_file is not None and password is not None:
                staged.append((with_user(req.passwd_file, device.device_id, password,
                                         tmp_dir), req.passwd_file))
            if req.acl_file is not None:
                # The policy's ACL covers every board by pattern (a board is its device id):
                # nothing per board, and an older or edited file is put right.
                old = req.acl_file.read_text(encoding="utf-8") if req.acl_file.exists() else ""
                rules = acl(req.prefix)
                if old != rules:
                    staged.append((_write_staged(rules, tmp_dir, "acl", 0o600), req.acl_file))
            if req.key_store is not None and device_key is not None:
                staged.append((with_key(req.key_store, device.device_id,
                                        bytes.fromhex(device_key), tmp_dir), req.key_store))
            if req.mqtt_ca is not None:
                ca = tmp_dir / CA_FILE
                _create(ca, req.mqtt_ca, 0o644)
                staged.append((ca, config_path.with_name(CA_FILE)))
            # It holds the WiFi and broker passwords: for the technician's eyes only.
            staged.append((_write_staged(text, tmp_dir, "config.json", 0o600), config_path))
        except (PasswordFileError, KeyStoreError) as exc:
            raise ProvisionError(str(exc)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvisionError(f"nothing provisioned: {exc}") from None
        commit = _Commit()
        try:
            for source, target in staged:
                commit.move(source, target)
                files.append(target)
            # Last: the gateway picks the board up as soon as the registry names it.
            merge_devices([device], req.registry)
            files.append(req.registry)
        except (OSError, RegistryError) as exc:
            commit.undo()
            raise ProvisionError(f"nothing provisioned, files restored: {exc}") from None
    return Provisioned(
        device=device,
        config_path=config_path,
        config=config,
        fingerprint=fingerprint(text),
        mqtt_user=device.device_id if password is not None else None,
        mqtt_password=password,
        replaced=replaced,
        files=files,
        signed_commands=req.command_key is not None,
    )


def label(result: Provisioned, show_secret: bool = False) -> str:
    """A summary short enough for a label printer: no password unless asked for."""
    d = result.device
    rows: list[tuple[str, str]] = [
        ("id", d.device_id),
        ("kind", d.kind),
        ("district", d.district),
        ("site", d.site or "-"),
        ("location", f"{d.lat:.5f}, {d.lon:.5f}" if d.lat is not None and d.lon is not None
         else "-"),
        ("interval", f"{d.interval_s:g} s"),
        ("MQTT user", result.mqtt_user or "(anonymous)"),
        ("commands", "signed only" if result.signed_commands else "UNSIGNED accepted"),
        ("config", result.fingerprint),
    ]
    if show_secret and result.mqtt_password:
        rows.append(("MQTT pass", result.mqtt_password))
    return "\n".join(f"{name:<10}{value}" for name, value in rows)


def load_sensors(path: Path) -> list[dict[str, Any]]:
    """A --sensors file: the JSON list for config.json's "sensors"."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProvisionError(f"--sensors {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ProvisionError(f"--sensors {path}: not valid JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
        raise ProvisionError(f"--sensors {path}: must be a JSON list of objects")
    return data


def mosquitto_config_lines(passwd_file: Path, acl_file: Path | None) -> Sequence[str]:
    """The broker settings that make the files written here take effect."""
    lines = ["allow_anonymous false", f"password_file {passwd_file.resolve()}"]
    if acl_file is not None:
        lines.append(f"acl_file {acl_file.resolve()}")
    return lines
