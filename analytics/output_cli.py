"""``manyi bulletin`` and ``manyi export upward``: the assessment office's monthly documents.

Only the standard library is imported at the top (``manyi --help`` stays light).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from manyi.settings import DEFAULT_CENTER_DB, DEFAULT_STORE_URL, center_db_path, store_url


def _sources(p) -> None:
    p.add_argument("--store", help=f"vote store URL (default: MANYI_STORE or {DEFAULT_STORE_URL})")
    p.add_argument("--db", help=f"center database (default: MANYI_DB or {DEFAULT_CENTER_DB})")
    p.add_argument("--registry", help="registry directory (default: the active registry in the center "
                                      "database, else the Heze sample)")


def register(subparsers) -> None:
    """Add the ``bulletin`` and ``export`` sub-commands."""
    p = subparsers.add_parser("bulletin", help="monthly bulletin (月度通报): league tables, bottom units, overdue "
                                               "cases, stale terminals (pdf, xlsx, html)")
    p.add_argument("--month", required=True, help="month in China time, e.g. 2026-11")
    p.add_argument("--format", dest="fmt", choices=("pdf", "xlsx", "html"), help="default: the suffix of --out")
    p.add_argument("--out", required=True, help="file to write")
    _sources(p)
    p.set_defaults(func=run_bulletin)

    e = subparsers.add_parser("export", help="exports for other systems")
    sub = e.add_subparsers(dest="what", metavar="WHAT", required=True)
    u = sub.add_parser("upward", help="aggregates per unit and month for the province (数据归集): csv or json")
    u.add_argument("--month", required=True, help="month in China time, e.g. 2026-11")
    u.add_argument("--format", dest="fmt", choices=("csv", "json"), help="default: the suffix of --out")
    u.add_argument("--out", required=True, help="file to write")
    u.add_argument("--levels", default="standard", choices=("standard", "top"),
                   help="how the three keys map onto the five 好差评 levels (docs/indicators.md; default standard)")
    _sources(u)
    u.set_defaults(func=run_upward)


def _open(args):
    from analytics.center import CenterDB
    from analytics.quarter_cli import _registry
    from collector.stores import open_store

    db = CenterDB(center_db_path(args.db))
    return db, _registry(args.registry, db), open_store(store_url(args.store))


def _format(args, choices) -> str:
    from manyi.exc import ConfigError

    fmt = args.fmt or Path(args.out).suffix.lstrip(".").lower()
    if fmt not in choices:
        raise ConfigError(f"--out {args.out!r}: say --format {'|'.join(choices)} or use one of those suffixes")
    return fmt


def _month(text: str):
    from manyi.exc import ConfigError
    from manyi.periods import Month

    try:
        return Month.parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _write(path: str, data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


def run_bulletin(args: argparse.Namespace) -> int:
    """Write the monthly bulletin."""
    from datetime import datetime, timezone

    from analytics.output.bulletin import build_bulletin, render_bulletin

    fmt, month = _format(args, ("pdf", "xlsx", "html")), _month(args.month)
    db, registry, store = _open(args)
    try:
        bulletin = build_bulletin(store, registry, db, month, now=datetime.now(timezone.utc))
        _write(args.out, render_bulletin(bulletin, fmt))
    finally:
        store.close()
        db.close()
    print(f"{month}: {len(bulletin.counties)} counties, {len(bulletin.townships)} townships, "
          f"{len(bulletin.bottom)} units at the bottom twice, {len(bulletin.cases)} late cases -> {args.out}")
    return 0


def run_upward(args: argparse.Namespace) -> int:
    """Write the upward aggregate export."""
    from datetime import datetime, timezone

    from analytics.output.upward import render_upward, upward_rows

    fmt, month = _format(args, ("csv", "json")), _month(args.month)
    db, registry, store = _open(args)
    try:
        now = datetime.now(timezone.utc)
        rows = upward_rows(store, registry, db, month, now=now, levels=args.levels)
        _write(args.out, render_upward(rows, fmt, month=month, levels=args.levels, provisional=now < month.end))
    finally:
        store.close()
        db.close()
    print(f"{month}: {len(rows)} rows -> {args.out}", file=sys.stderr)
    return 0
