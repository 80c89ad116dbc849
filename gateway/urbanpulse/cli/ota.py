"""Over-the-air updates: ``ota build``, ``ota verify`` and ``ota push`` (field/release.py,
field/rollout.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import CliError
from .signing import operator, targets


def cmd_build(args: argparse.Namespace) -> int:
    from urbanpulse.contract.signing import KeyFileError, load_private
    from urbanpulse.field.bundle import BundleError
    from urbanpulse.field.release import ReleaseError, build

    try:
        release = build(args.out, load_private(args.key_file), args.source)
    except (KeyFileError, ReleaseError, BundleError) as exc:
        raise CliError(str(exc)) from None
    print(f"release {release.version}: {len(release.files)} files, {release.size} bytes, "
          f"manifest {release.manifest_sha256}, signed by {release.key}, in {args.out}")
    return 0


def _load(folder: Path, key_file: Path | None) -> Any:
    from urbanpulse.contract.signing import KeyFileError, load_public_hex
    from urbanpulse.field.release import ReleaseError, load

    try:
        return load(folder, load_public_hex(key_file) if key_file else None)
    except (KeyFileError, ReleaseError) as exc:
        raise CliError(str(exc)) from None


def cmd_verify(args: argparse.Namespace) -> int:
    release = _load(args.release, args.release_key)
    print(f"release {release.version}: signature and {len(release.files)} files verified "
          f"(key {release.key})")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from urbanpulse.field.commands import CommandError
    from urbanpulse.field.rollout import Rollout

    settings, key = operator(args)
    release = _load(args.release, args.release_key or settings.keys.release_public)
    if args.devices and (args.district or args.kind):
        raise CliError("give --devices, or --district and/or --kind, not both")
    devices = list(args.devices) or targets(args, settings, [])[0]
    try:
        results = Rollout(settings.mqtt, release, key).run(devices, args.canary, args.deadline)
    except CommandError as exc:
        raise CliError(str(exc)) from None
    width = max(len(r.device_id) for r in results)
    for r in results:
        print(f"{r.device_id:<{width}}  {r.state}" + (f": {r.detail}" if r.detail else "")
              + f"  ({r.bytes_sent} bytes sent)")
    return 0 if all(r.ok for r in results) else 1


def add_ota_commands(sub: Any) -> None:
    ota = sub.add_parser("ota", help="firmware updates over the air: build, verify, push")
    ota_sub = ota.add_subparsers(dest="ota_command", required=True)
    p = ota_sub.add_parser("build", help="compile the firmware into a release signed with the "
                           "release key")
    p.add_argument("--out", type=Path, required=True, help="the release's folder (new)")
    p.add_argument("--key-file", type=Path, required=True,
                   help="the release private key (`urbanpulse keys new --which release`)")
    p.add_argument("--source", type=Path, default=None,
                   help="the firmware sources (default: this checkout's firmware/)")
    p.set_defaults(func=cmd_build)

    p = ota_sub.add_parser("verify", help="check a release: signature, manifest, every file")
    p.add_argument("release", type=Path)
    p.add_argument("--release-key", type=Path, default=None,
                   help="the release public key it must be signed with (else the one it names)")
    p.set_defaults(func=cmd_verify)

    p = ota_sub.add_parser(
        "push", help="offer a release to boards, canaries first; exit 0 when all run it",
        description="Signs an ota command per board with the command key and serves the "
        "release's files until each board runs it (confirmed after its first health report) "
        "or fails. With --canary N the first N boards go first, and the rest only if all N "
        "run the release within --deadline.")
    p.add_argument("release", type=Path)
    p.add_argument("--devices", nargs="+", default=[], metavar="ID")
    p.add_argument("--district", default=None)
    p.add_argument("--kind", default=None)
    p.add_argument("--canary", type=int, default=0, help="boards to update first (0)")
    p.add_argument("--deadline", type=float, default=900.0,
                   help="seconds each wave may take to run the release (900)")
    p.add_argument("--key-file", type=Path, required=True,
                   help="the command private key (PEM, 0600)")
    p.add_argument("--release-key", type=Path, default=None,
                   help="the release public key (default: [keys] release_public of --config)")
    p.add_argument("--config", type=Path, default=None,
                   help="a configuration with the broker (as an operator user) and the registry")
    p.set_defaults(func=cmd_push)
