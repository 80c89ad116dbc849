"""Open data: ``export`` (readings with their proofs) and ``verify`` (an export, by anyone)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .errors import CliError


def _instant(text: str, end: bool) -> int:
    """YYYY-MM-DD (a UTC day: its start, or with ``end`` its end) or YYYY-MM-DDTHH (an hour)."""
    import calendar

    for fmt, span in (("%Y-%m-%d", 86_400_000), ("%Y-%m-%dT%H", 3_600_000)):
        try:
            start = calendar.timegm(time.strptime(text, fmt)) * 1000
        except ValueError:
            continue
        return start + span if end else start
    raise CliError(f"{text!r}: give a UTC date YYYY-MM-DD or an hour YYYY-MM-DDTHH")


def _kpi_query(settings: Any) -> Any:
    from urbanpulse.influx.influxql import string
    from urbanpulse.influx.writer import V1Writer, WriteError

    def query(start: int, end: int, district: str | None) -> list[tuple[str, list[str],
                                                                        list[list[Any]]]]:
        where = f"time >= {start}ms AND time < {end}ms"
        if district is not None:
            where += f" AND district = {string(district)}"
        writer = V1Writer(settings.influx)  # InfluxQL, as the KPIs read
        try:
            series = writer.query(f"SELECT * FROM /^kpi_/ WHERE {where}")
        except WriteError as exc:
            raise CliError(f"the KPIs could not be read from InfluxDB ({exc}); --no-kpi "
                           "exports the readings alone") from None
        finally:
            writer.close()
        return [(s["name"], s["columns"], s["values"]) for s in series]

    return query


def cmd_export(args: argparse.Namespace) -> int:
    from urbanpulse.config import ConfigError, load_settings
    from urbanpulse.opendata.export import ExportError, ExportRequest, export

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    start, end = _instant(args.start, False), _instant(args.end, True)
    if end <= start:
        raise CliError("--to must come after --from")
    e = settings.export
    tty = sys.stderr.isatty()

    def progress(text: str) -> None:
        print(("\r" if tty else "") + text, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        summary = export(ExportRequest(
            archive=settings.archive.path, start_ms=start, end_ms=end, out=args.out,
            district=args.district, licence=e.licence, publisher=e.publisher, title=e.title,
            kpis=None if args.no_kpi else _kpi_query(settings), progress=progress))
    except (ExportError, OSError) as exc:
        raise CliError(f"export not made: {exc}") from None
    if tty:
        print(file=sys.stderr)
    rows = ", ".join(f"{m} {n}" for m, n in sorted(summary.rows.items())) or "no readings"
    print(f"{args.out}: {summary.payloads} payloads in {summary.receipts} receipts, {rows}")
    for m in summary.missing:
        print(f"left out: {m}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.live:
        return _verify_live(args)
    from urbanpulse.opendata.verify import verify

    if args.folder is None or not args.folder.is_dir():
        raise CliError(f"{args.folder} is not a folder (or give --live)")
    report = verify(args.folder)
    for failure in report.failures:
        print(f"FAIL {failure}")
    print(report.summary())
    return 0 if report.ok else 1


def _verify_live(args: argparse.Namespace) -> int:
    from urbanpulse.config import ConfigError, load_settings
    from urbanpulse.influx.writer import V1Writer, WriteError
    from urbanpulse.opendata.live import live_check

    if args.start is None or args.end is None:
        raise CliError("--live needs --from and --to")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    reader = V1Writer(settings.influx)
    try:
        report = live_check(settings.archive.path, reader.query, _instant(args.start, False),
                            _instant(args.end, True), args.district)
    except WriteError as exc:
        raise CliError(f"InfluxDB could not be read: {exc}") from None
    finally:
        reader.close()
    for failure in report.failures:
        print(f"FAIL {failure}")
    print(report.summary())
    return 0 if report.ok else 1


def add_opendata_commands(sub: Any) -> None:
    p = sub.add_parser("export", help="open data: readings, their source payloads, proofs "
                       "and receipts, for anyone to verify")
    p.add_argument("--from", dest="start", required=True, help="UTC date YYYY-MM-DD (or hour "
                   "YYYY-MM-DDTHH) of arrival")
    p.add_argument("--to", dest="end", required=True, help="last UTC date (or hour), included")
    p.add_argument("--district", default=None)
    p.add_argument("--out", type=Path, required=True, help="a new folder")
    p.add_argument("--config", type=Path, default=None, help="the gateway's configuration "
                   "([archive] path; [influx] for the KPIs; [export] title, publisher, licence)")
    p.add_argument("--no-kpi", action="store_true", help="the readings alone, no InfluxDB")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="check an export: receipts, proofs, every CSV value "
                       "(exit 0) or name what fails (exit 1); or with --live, InfluxDB's "
                       "readings against the archive")
    p.add_argument("folder", type=Path, nargs="?", default=None)
    p.add_argument("--live", action="store_true", help="compare the readings stored in "
                   "InfluxDB with the archive's sealed payloads (--from, --to, --config)")
    p.add_argument("--from", dest="start", default=None, help="with --live: UTC date or hour")
    p.add_argument("--to", dest="end", default=None, help="with --live: last UTC date or hour")
    p.add_argument("--district", default=None)
    p.add_argument("--config", type=Path, default=None, help="with --live: the gateway's "
                   "configuration ([archive], [influx])")
    p.set_defaults(func=cmd_verify)
