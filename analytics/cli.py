"""``manyi registry``, ``manyi survey`` and ``manyi scores``: the registry and the quarterly imports.

Only the standard library is imported at the top (the ``manyi`` command must start on a
terminal without pandas); the handlers import what they need.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from manyi.settings import DEFAULT_CENTER_DB, center_db_path


def register(subparsers) -> None:
    """Add the registry, survey and scores sub-commands."""
    reg = subparsers.add_parser("registry", help="region registry: validate, import, export")
    reg_sub = reg.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    p = reg_sub.add_parser("validate", help="check a registry directory; list every problem as file:line:field")
    p.add_argument("directory", type=Path)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_registry_validate)
    p = reg_sub.add_parser("import", help="validate a registry directory and make it the center's active registry")
    p.add_argument("directory", type=Path)
    _db_arg(p)
    p.set_defaults(func=cmd_registry_import)
    p = reg_sub.add_parser("export", help="write the active registry (or the Heze sample) as a directory of CSV files")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sample", action="store_true", help="export the shipped Heze sample instead of the active one")
    _db_arg(p)
    p.set_defaults(func=cmd_registry_export)

    for kind, label in (("survey", "12333 phone survey"), ("scores", "composite assessment scores (综合考核得分)")):
        parser = subparsers.add_parser(kind, help=f"{label}: import a CSV/XLSX file, download a template")
        sub = parser.add_subparsers(dest=f"{kind}_command", metavar="ACTION", required=True)
        p = sub.add_parser("import", help=f"import a {label} file (CSV UTF-8/GBK or XLSX) for a quarter")
        p.add_argument("file", type=Path)
        p.add_argument("--quarter", required=True, help="e.g. 2026Q3")
        if kind == "survey":
            p.add_argument("--replace", action="store_true", help="replace the quarter's survey instead of adding to it")
        else:
            p.add_argument("--keep", action="store_true",
                           help="add to the quarter's scores instead of replacing them (conflicting scores are rejected)")
            p.add_argument("--max-score", type=float, default=100.0, help="highest valid score (default 100)")
        p.add_argument("--partial", action="store_true",
                       help="import the valid rows even when some rows are rejected (default: all-or-nothing)")
        p.add_argument("--registry", type=Path, help="registry directory (default: the active one, else the Heze sample)")
        p.add_argument("--json", action="store_true", help="print the full report as JSON")
        p.add_argument("--details", type=int, default=50, metavar="N", help="list at most N rejected rows (default 50)")
        _db_arg(p)
        p.set_defaults(func=cmd_import, kind=kind)
        p = sub.add_parser("template", help="write an empty template file (.xlsx or .csv by the extension)")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--format", choices=("xlsx", "csv"), help="default: from the file extension")
        p.set_defaults(func=cmd_template, kind=kind)


def _db_arg(parser) -> None:
    parser.add_argument("--db", type=Path, default=None,
                        help=f"control center database (default $MANYI_DB or {DEFAULT_CENTER_DB})")


def _db_path(args) -> Path:
    return Path(center_db_path(args.db))


def _open_db(args):
    from analytics.center import CenterDB

    return CenterDB(_db_path(args))


def cmd_registry_validate(args) -> int:
    """manyi registry validate DIR"""
    from manyi.registry import Registry

    registry = Registry.load(args.directory)
    summary = registry.summary()
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"{args.directory}: valid registry" + (" (SAMPLE data)" if registry.sample else ""))
        print("  " + ", ".join(f"{k} {v}" for k, v in summary.items() if k != "sample"))
    return 0


def cmd_registry_import(args) -> int:
    """manyi registry import DIR --db PATH"""
    from analytics.center.registry import store_active
    from manyi.registry import Registry

    registry = Registry.load(args.directory)
    db = _open_db(args)
    try:
        version = store_active(db, registry, source=str(args.directory.resolve()))
    finally:
        db.close()
    summary = registry.summary()
    print(f"registry version {version} is now active in {_db_path(args)}" + (" (SAMPLE data)" if registry.sample else ""))
    print("  " + ", ".join(f"{k} {v}" for k, v in summary.items() if k != "sample"))
    return 0


def cmd_registry_export(args) -> int:
    """manyi registry export --out DIR"""
    from analytics.center.registry import load_active
    from manyi.registry import heze_sample

    registry = None
    if not args.sample:
        db = _open_db(args)
        try:
            registry = load_active(db)
        finally:
            db.close()
        if registry is None:
            print(f"no registry imported in {_db_path(args)}: exporting the Heze SAMPLE registry", file=sys.stderr)
    registry = registry or heze_sample()
    registry.save(args.out)
    print(f"wrote {len(list(args.out.glob('*.csv')))} files to {args.out}")
    return 0


def resolve_registry(args, db):
    """--registry DIR, else the db's active registry, else the Heze sample (with a warning)."""
    from analytics.center.registry import load_active
    from manyi.registry import Registry, heze_sample

    if getattr(args, "registry", None):
        return Registry.load(args.registry)
    registry = load_active(db)
    if registry is None:
        print("no registry imported (manyi registry import): matching against the Heze SAMPLE registry",
              file=sys.stderr)
        registry = heze_sample()
    return registry


class ProgressBar:
    """A simple progress bar on stderr for long files (shown from ``min_total`` rows on)."""

    def __init__(self, label: str, stream=None, min_total: int = 1000, width: int = 30):
        self.label = label
        self.stream = stream or sys.stderr
        self.min_total = min_total
        self.width = width
        self.shown = False
        self.last_step = -1

    def __call__(self, done: int, total: int) -> None:
        if total < self.min_total:
            return
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        step = done * 20 // max(total, 1)   # without a terminal: one line per 5 %
        if not tty and step == self.last_step:
            return
        self.last_step = step
        filled = done * self.width // max(total, 1)
        bar = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        self.stream.write(("\r" + bar) if tty else bar + "\n")
        if tty and done >= total:
            self.stream.write("\n")
        self.stream.flush()
        self.shown = True


def cmd_import(args) -> int:
    """manyi survey|scores import FILE --quarter Q [--partial]: exit 0 imported, 1 rows rejected and
    nothing imported (or every row rejected with --partial), 2 file unreadable."""
    from analytics.imports.scores import import_scores
    from analytics.imports.survey import import_survey
    from manyi.periods import Quarter

    try:
        quarter = Quarter.parse(args.quarter)
    except ValueError as exc:
        from manyi.exc import ConfigError

        raise ConfigError(str(exc)) from None
    db = _open_db(args)
    try:
        registry = resolve_registry(args, db)
        progress = ProgressBar(f"{args.kind} {args.file.name}")
        if args.kind == "survey":
            report = import_survey(db, registry, args.file, quarter, replace=args.replace, partial=args.partial,
                                   progress=progress)
        else:
            report = import_scores(db, registry, args.file, quarter, replace=not args.keep, partial=args.partial,
                                   progress=progress, max_score=args.max_score)
    finally:
        db.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    else:
        print(report.summary())
        if report.rejected and args.details:
            print("rejected rows:")
            print(report.details(args.details))
    if report.aborted or (report.imported == 0 and report.already_present == 0 and report.rejected):
        return 1
    return 0


def cmd_template(args) -> int:
    """manyi survey|scores template --out FILE"""
    from analytics.imports.scores import scores_template
    from analytics.imports.survey import survey_template

    fmt = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "xlsx")
    data = survey_template(fmt) if args.kind == "survey" else scores_template(fmt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({fmt})")
    return 0
