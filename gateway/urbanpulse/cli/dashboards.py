"""`urbanpulse dashboards build [--check]` and `urbanpulse dashboards push`.

Kept light (lazy imports) because the main parser imports it on every command.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .errors import CliError


def cmd_build(args: argparse.Namespace) -> int:
    from urbanpulse.dashboards.build import differences, write

    root: Path = args.root
    if not (root / "dashboards").is_dir():
        raise CliError(f"--root {root}: no dashboards/ folder there (run from the repository)")
    if args.check:
        stale = differences(root)
        for path in stale:
            print(f"out of date: {path} (run `urbanpulse dashboards build`)")
        if not stale:
            print("dashboards and provisioning files match the code")
        return 1 if stale else 0
    changed = write(root)
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(changed)} files changed")
    return 0


def _read_token(path: Path) -> str:

    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"--token-file {path}: {exc.strerror}") from None
    if not token:
        raise CliError(f"--token-file {path}: the file is empty")
    return token


def cmd_push(args: argparse.Namespace) -> int:
    from urbanpulse.dashboards.push import PushError, PushSettings, push

    token = _read_token(args.token_file)
    settings = PushSettings(
        influx_url=args.influx_url, influx_db=args.influx_db,
        influx_user=os.environ.get("URBANPULSE_INFLUX_USER", ""),
        influx_password=os.environ.get("URBANPULSE_INFLUX_PASSWORD", ""),
        alert_email=args.alert_email,
    )
    try:
        for line in push(args.url, token, settings):
            print(line)
    except PushError as exc:
        raise CliError(str(exc)) from None
    return 0


def add_dashboard_commands(sub: Any) -> None:
    dash = sub.add_parser("dashboards", help="Grafana dashboards, alert rules, provisioning")
    dash_sub = dash.add_subparsers(dest="dashboards_command", required=True)
    p = dash_sub.add_parser("build", help="regenerate dashboards/*.json and deploy/grafana/")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 when a committed file differs from the code")
    p.add_argument("--root", type=Path, default=Path("."),
                   help="repository root (default: the current directory)")
    p.set_defaults(func=cmd_build)
    p = dash_sub.add_parser("push", help="upload everything to a Grafana through its HTTP API")
    p.add_argument("--url", required=True, help="Grafana URL, e.g. http://grafana:3000")
    p.add_argument("--token-file", type=Path, required=True,
                   help="file holding a service account token (Admin role)")
    p.add_argument("--influx-url", default=os.environ.get("URBANPULSE_INFLUX_URL",
                                                          "http://127.0.0.1:8086"),
                   help="InfluxDB URL as Grafana reaches it (env URBANPULSE_INFLUX_URL)")
    p.add_argument("--influx-db", default=os.environ.get("URBANPULSE_INFLUX_DB", "urbanpulse"),
                   help="database (env URBANPULSE_INFLUX_DB)")
    p.add_argument("--alert-email", default=os.environ.get("URBANPULSE_ALERT_EMAIL",
                                                           "operators@example.org"),
                   help="where alerts are mailed (env URBANPULSE_ALERT_EMAIL)")
    p.set_defaults(func=cmd_push)
