"""The city's keys and its signed commands: ``keys new`` and ``cmd send`` (CONTRACT.md v2)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .errors import CliError

KEY_NAMES = ("command", "receipt", "release")


def default_key_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "urbanpulse" / "keys"


# -- keys new --------------------------------------------------------------------------------
def cmd_keys_new(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from urbanpulse.contract.signing import public_hex, write_private

    out: Path = args.out_dir
    names = KEY_NAMES[:2] if args.which == "both" else (args.which,)
    existing = [out / f"{n}.key" for n in names if (out / f"{n}.key").exists()]
    if existing:
        raise CliError(f"{existing[0]} exists: a key is never overwritten (boards and exports "
                       "depend on it); move it away first if you really mean to replace it")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in names:
        key = Ed25519PrivateKey.generate()
        write_private(out / f"{name}.key", key)
        (out / f"{name}.pub").write_text(public_hex(key) + "\n", encoding="ascii")
        print(f"{name} key: {out / f'{name}.key'} (private, 0600), public "
              f"{out / f'{name}.pub'}: {public_hex(key)}")
    if "command" in names:
        print("Keep command.key with the operators only (not on the gateway or the broker);\n"
              "give command.pub to provisioning ([keys] command_public).")
    if "release" in names:
        print("Keep release.key where releases are built (`urbanpulse ota build`); give "
              "release.pub to provisioning ([keys] release_public).")
    if "receipt" in names:
        print("receipt.key belongs to the gateway's user; receipt.pub is published with every "
              "export.")
    return 0


# -- cmd send --------------------------------------------------------------------------------
def _params(words: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for word in words:
        name, sep, text = word.partition("=")
        if not sep or not name:
            raise CliError(f"{word!r}: arguments are NAME=VALUE (VALUE as JSON, else text)")
        try:
            params[name] = json.loads(text)
        except ValueError:
            params[name] = text
    return params


def targets(args: argparse.Namespace, settings: Any,
            words: list[str]) -> tuple[list[str], list[str]]:
    """(devices, the other words): with --district and/or --kind the registry's matching
    boards, else the first word."""
    if args.district is None and args.kind is None:
        if not words:
            raise CliError("name the boards, or give --district and/or --kind")
        return words[:1], words[1:]
    from urbanpulse.registry.devices import RegistryError, load_registry

    try:
        registry = load_registry(settings.registry.path)
    except RegistryError as exc:
        raise CliError(str(exc)) from None
    devices = [d.device_id for d in registry.devices
               if args.district in (None, d.district) and args.kind in (None, d.kind)]
    if not devices:
        raise CliError(f"no registered board matches --district {args.district} "
                       f"--kind {args.kind} in {settings.registry.path}")
    return devices, words


def _targets(args: argparse.Namespace, settings: Any) -> tuple[list[str], str, list[str]]:
    """(devices, op, NAME=VALUE words) from the positional words and --district / --kind."""
    devices, words = targets(args, settings, list(args.words))
    if not words:
        raise CliError("give DEVICE OP [NAME=VALUE ...], or --district/--kind and OP")
    return devices, words[0], words[1:]


def operator(args: argparse.Namespace) -> tuple[Any, Any]:
    """(settings of --config, the command private key of --key-file)."""
    from urbanpulse.config import ConfigError, load_settings
    from urbanpulse.contract.signing import KeyFileError, load_private

    try:
        return load_settings(args.config), load_private(args.key_file)
    except (ConfigError, KeyFileError) as exc:
        raise CliError(str(exc)) from None


def cmd_send(args: argparse.Namespace) -> int:
    from urbanpulse.field.commands import CommandError, send

    settings, key = operator(args)
    devices, op, words = _targets(args, settings)
    try:
        answers = send(settings.mqtt, devices, op, _params(words), key, ttl_s=args.ttl,
                       wait_s=args.wait, unsafe=args.unsafe)
    except CommandError as exc:
        raise CliError(str(exc)) from None
    width = max(len(a.device_id) for a in answers)
    for a in answers:
        print(f"{a.device_id:<{width}}  {a.describe()}")
    return 0 if all(a.ok for a in answers) else 1


def add_signing_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="the city's command and receipt keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    p = keys_sub.add_parser("new", help="make the command key pair and/or the gateway's "
                            "receipt key pair (Ed25519)")
    p.add_argument("--out-dir", type=Path, default=default_key_dir(),
                   help="where NAME.key (private, 0600) and NAME.pub go (default: "
                        "$XDG_CONFIG_HOME/urbanpulse/keys)")
    p.add_argument("--which", choices=("both", *KEY_NAMES), default="both")
    p.set_defaults(func=cmd_keys_new)

    cmd = sub.add_parser("cmd", help="commands to boards, signed with the command key")
    cmd_sub = cmd.add_subparsers(dest="cmd_command", required=True)
    p = cmd_sub.add_parser(
        "send", help="sign and send a command, wait for and print each board's answer",
        description="DEVICE OP [NAME=VALUE ...], or OP [NAME=VALUE ...] with --district and/or "
        "--kind for every matching board of the registry. Ops: reboot, identify seconds=N, "
        "flush, set_interval sensor=NAME interval_s=N, config config='{...}'. Exit 0 when "
        "every board said ok.")
    p.add_argument("words", nargs="+", metavar="ARG")
    p.add_argument("--key-file", type=Path, required=True,
                   help="the command private key (PEM, 0600; `urbanpulse keys new`)")
    p.add_argument("--config", type=Path, default=None,
                   help="a configuration with the broker ([mqtt], as an operator user) and "
                   "the registry")
    p.add_argument("--district", default=None)
    p.add_argument("--kind", default=None)
    p.add_argument("--ttl", type=float, default=300.0,
                   help="seconds until the command expires (300)")
    p.add_argument("--wait", type=float, default=30.0,
                   help="seconds to wait for the answers (30)")
    p.add_argument("--unsafe", action="store_true",
                   help="allow a config command to change mqtt, wifi, watchdog_s or rollback_s "
                   "(a wrong value can cut the board off for good)")
    p.set_defaults(func=cmd_send)
