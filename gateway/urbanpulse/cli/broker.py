"""``urbanpulse broker config [--check]``: the shipped Mosquitto files, from the policy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import CliError

DEPLOY = Path("deploy/mosquitto")


def cmd_config(args: argparse.Namespace) -> int:
    from urbanpulse.broker.policy import deploy_files

    folder: Path = args.root / DEPLOY
    if not folder.is_dir():
        raise CliError(f"--root {args.root}: no {DEPLOY}/ folder there (run from the repository)")
    stale = [name for name, text in deploy_files().items()
             if not (folder / name).is_file() or (folder / name).read_text() != text]
    if args.check:
        for name in stale:
            print(f"out of date: {folder / name} (run `urbanpulse broker config`)")
        if not stale:
            print("the broker's deploy files match the policy")
        return 1 if stale else 0
    for name, text in deploy_files().items():
        if name in stale:
            (folder / name).write_text(text)
            print(f"wrote {folder / name}")
    return 0


def add_broker_commands(sub: Any) -> None:
    broker = sub.add_parser("broker", help="the broker's identities and ACL")
    broker_sub = broker.add_subparsers(dest="broker_command", required=True)
    p = broker_sub.add_parser("config", help=f"regenerate {DEPLOY}/ from urbanpulse.broker.policy")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 when a committed file differs from the policy")
    p.add_argument("--root", type=Path, default=Path("."),
                   help="repository root (default: the current directory)")
    p.set_defaults(func=cmd_config)
