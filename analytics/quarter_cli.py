"""``manyi report``: compute (and optionally publish) a quarter and write its report.

Only the standard library is imported at the top; pandas, openpyxl and the stores are
imported inside the handler so that ``manyi --help`` stays light.
"""

from __future__ import annotations

import argparse
import os
import sys

from manyi.settings import DEFAULT_CENTER_DB, DEFAULT_STORE_URL, center_db_path, store_url


def register(subparsers) -> None:
    """Add the ``report`` sub-command."""
    p = subparsers.add_parser(
        "report", help="quarterly report: scores, coefficients, corrected scores (xlsx, html, csv, pdf)",
        description="Compute the Heze model for a quarter from the vote store, the 12333 survey and the base "
                    "scores, and write the report. --publish stores the result (parameters, input counts, "
                    "time, version) in the center database.")
    p.add_argument("--quarter", required=True, help="quarter in China time, e.g. 2026Q3")
    p.add_argument("--format", dest="fmt", choices=("xlsx", "html", "csv", "pdf"),
                   help="output format (default: the suffix of --out)")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--store", help=f"vote store URL (default: MANYI_STORE or {DEFAULT_STORE_URL})")
    p.add_argument("--db", help=f"center database (default: MANYI_DB or {DEFAULT_CENTER_DB})")
    p.add_argument("--registry", help="registry directory (default: the active registry in the center "
                                      "database, else the Heze sample)")
    p.add_argument("--publish", action="store_true", help="store the result as the quarter's published figures")
    p.add_argument("--mode", choices=("absolute", "relative"), help="coefficient mode (default absolute)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="model parameter, repeatable: w_S w_B w_U m_T m_P lam beta k_min k_max min_n alpha")
    p.add_argument("--result", type=int, metavar="ID",
                   help="render the published result ID instead of computing (ignores --store/--param)")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``manyi report``."""
    from manyi.exc import ConfigError
    from manyi.periods import Quarter

    from .center import CenterDB
    from .model import Params
    from .quarter import compute_quarter, load_published, publish
    from .output.report import write_report

    try:
        quarter = Quarter.parse(args.quarter)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    fmt = args.fmt or os.path.splitext(args.out)[1].lstrip(".").lower()
    if fmt not in ("xlsx", "html", "csv", "pdf"):
        raise ConfigError(f"--out {args.out!r}: say --format xlsx|html|csv|pdf or use one of those suffixes")
    db = CenterDB(center_db_path(args.db))
    try:
        if args.result is not None:
            result = load_published(db, args.result)
            if result.quarter != quarter:
                raise ConfigError(f"published result {args.result} is of {result.quarter}, not {quarter}")
        else:
            params = Params()
            if args.mode:
                params = params.with_overrides([f"mode={args.mode}"])
            params = params.with_overrides(args.param)
            registry = _registry(args.registry, db)
            from collector.stores import open_store

            with open_store(store_url(args.store)) as store:
                result = compute_quarter(store, registry, db, quarter, params)
            if args.publish:
                publish(db, result)
        write_report(result, args.out, fmt)
    finally:
        db.close()
    for note in result.notes:
        print(f"注意: {note}", file=sys.stderr)
    ids = f", published as result {result.result_id}" if result.result_id is not None else ""
    print(f"{quarter}: {len(result.counties)} counties, {len(result.townships)} townships, "
          f"{result.input_counts.get('votes', 0)} votes{ids} -> {args.out}")
    return 0


def _registry(path, db):
    from analytics.center.registry import load_active
    from manyi.registry import Registry, heze_sample

    if path:
        return Registry.load(path)
    active = load_active(db)
    return active if active is not None else heze_sample()
