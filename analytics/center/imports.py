"""Imports in the control center's database: the import log, 12333 survey answers, composite
scores (base_scores) and the center's secrets (the phone-hash salt).

The rules (what a row means, which rows are rejected) are in analytics.imports; here is
only how rows are stored, all-or-nothing in one transaction per import.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from datetime import datetime, timezone
from typing import Callable

from manyi.exc import StoreError


class _RollBack(Exception):
    """Raised inside the import transaction to undo it (rows were rejected while writing)."""


def commit_import(db, report, write: Callable[[sqlite3.Connection, int], None]):
    """Write an import all-or-nothing, in one transaction: an import_log row is opened,
    ``write(conn, import_id)`` stores the rows (stamped with that id) and counts them in the
    report, and the log row gets the final report. Unless ``report.partial``, nothing is
    written when any row is rejected, before or during ``write`` (which may reject rows,
    e.g. conflicts with stored data): the report is then marked ``aborted`` with
    imported = 0. A database failure rolls everything back and raises StoreError."""
    if report.rejected and not report.partial:
        return _aborted(report)
    try:
        with db.transaction() as conn:
            import_id = log_import(conn, report)
            write(conn, import_id)
            if report.rejected and not report.partial:
                raise _RollBack
            conn.execute("UPDATE import_log SET imported = ?, rejected = ?, report = ? WHERE id = ?",
                         (report.imported, len(report.rejected),
                          json.dumps(report.to_dict(), ensure_ascii=False), import_id))
    except _RollBack:
        return _aborted(report)
    except sqlite3.Error as exc:
        report.import_id = None
        raise StoreError(f"{report.filename}: writing the {report.kind} import of {report.quarter} to the center "
                         f"database failed, nothing was imported ({exc.__class__.__name__}: {exc})") from exc
    return report


def log_import(conn, report) -> int:
    """Open an import's import_log row (inside the caller's transaction; :func:`commit_import`
    fills in the counts and the report once the rows are written); return its id."""
    cursor = conn.execute(
        "INSERT INTO import_log (kind, quarter, filename, imported_at, rows_read, imported, rejected, report)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (report.kind, report.quarter, report.filename, datetime.now(timezone.utc).isoformat(timespec="seconds"),
         report.rows_read, report.imported, len(report.rejected), "{}"))
    report.import_id = int(cursor.lastrowid)
    return report.import_id


def import_history(db, kind: str | None = None, quarter=None) -> list[dict]:
    """Past imports, newest first: id, kind, quarter, filename, imported_at, rows_read, imported, rejected."""
    sql = "SELECT id, kind, quarter, filename, imported_at, rows_read, imported, rejected FROM import_log WHERE 1=1"
    params: list = []
    if kind:
        sql += " AND kind = ?"
        params.append(kind)
    if quarter is not None:
        sql += " AND quarter = ?"
        params.append(str(quarter))
    return [dict(row) for row in db.query(sql + " ORDER BY id DESC", params)]


def import_report(db, import_id: int) -> dict | None:
    """The stored report (ImportReport.to_dict()) of one import, or None."""
    rows = db.query("SELECT report FROM import_log WHERE id = ?", (import_id,))
    return json.loads(rows[0]["report"]) if rows else None

def _aborted(report):
    report.aborted = True
    report.imported = report.excluded = report.already_present = report.replaced = 0
    report.import_id = None
    return report


# --- the secret salt of phone hashes -----------------------------------------------------

def secret(db, name: str) -> str:
    """The center's secret ``name``: created at random once, then always the same."""
    db.execute("INSERT OR IGNORE INTO center_secrets (name, value) VALUES (?, ?)", (name, secrets.token_hex(32)))
    return db.query("SELECT value FROM center_secrets WHERE name = ?", (name,))[0]["value"]


# --- survey answers ----------------------------------------------------------------------

SURVEY_COLUMNS = ("quarter", "row_key", "answered_at", "level", "code", "county_code", "rating", "answer",
                  "phone_last4", "phone_hash", "note", "source_row", "import_id")


def delete_survey(conn, quarter: str) -> int:
    """Delete a quarter's survey answers (inside the caller's transaction, or on a CenterDB); return how many."""
    return conn.execute("DELETE FROM survey_answers WHERE quarter = ?", (quarter,)).rowcount


def survey_keys(conn, quarter: str) -> set[str]:
    """The row keys of a quarter's stored answers."""
    return {row[0] for row in conn.execute("SELECT row_key FROM survey_answers WHERE quarter = ?", (quarter,))}


def insert_survey(conn, records) -> None:
    """Insert answers: tuples in the order of SURVEY_COLUMNS."""
    conn.executemany(f"INSERT INTO survey_answers ({', '.join(SURVEY_COLUMNS)})"
                     f" VALUES ({', '.join('?' * len(SURVEY_COLUMNS))})", records)


def survey_count_rows(db, quarter: str, include_excluded: bool = False) -> list[tuple]:
    """(level, code, rating, n) of a quarter's answers; excluded answers only when asked."""
    sql = ("SELECT level, code, rating, COUNT(*) AS n FROM survey_answers WHERE quarter = ?"
           + ("" if include_excluded else " AND rating != 'excluded'")
           + " GROUP BY level, code, rating ORDER BY level, code, rating")
    return [tuple(r) for r in db.query(sql, (quarter,))]


def survey_counts_between(db, start: str, end: str) -> list[tuple]:
    """(level, code, county_code, rating, n) of the answers given in [start, end) (China-time ISO texts)."""
    return [tuple(r) for r in db.query(
        "SELECT level, code, county_code, rating, COUNT(*) AS n FROM survey_answers"
        " WHERE answered_at >= ? AND answered_at < ? GROUP BY level, code, county_code, rating"
        " ORDER BY level, code, rating", (start, end))]


def survey_summary(db, quarter: str) -> dict:
    """answers, rated, excluded, repeat phone numbers and units of the quarter's survey."""
    row = db.query(
        "SELECT COUNT(*) AS answers, SUM(rating != 'excluded') AS rated, SUM(rating = 'excluded') AS excluded,"
        " COUNT(DISTINCT level || code) AS units FROM survey_answers WHERE quarter = ?", (quarter,))[0]
    repeats = db.query(
        "SELECT COUNT(*) AS n FROM (SELECT phone_hash FROM survey_answers WHERE quarter = ? AND phone_hash != ''"
        " GROUP BY phone_hash HAVING COUNT(*) > 1)", (quarter,))[0]["n"]
    return {"quarter": quarter, "answers": row["answers"] or 0, "rated": row["rated"] or 0,
            "excluded": row["excluded"] or 0, "units": row["units"] or 0, "repeat_phones": repeats}


# --- composite scores --------------------------------------------------------------------

def delete_scores(conn, quarter: str) -> int:
    """Delete a quarter's scores (inside the caller's transaction, or on a CenterDB); return how many."""
    return conn.execute("DELETE FROM base_scores WHERE quarter = ?", (quarter,)).rowcount


def stored_scores(conn, quarter: str) -> dict[tuple[str, str], float]:
    """(level, code) -> score of a quarter's stored scores."""
    return {(r[0], r[1]): r[2] for r in conn.execute(
        "SELECT level, code, score FROM base_scores WHERE quarter = ?", (quarter,))}


def insert_score(conn, quarter: str, level: str, code: str, score: float, source_row: int, import_id: int) -> None:
    """Insert one unit's score."""
    conn.execute("INSERT INTO base_scores (quarter, level, code, score, source_row, import_id)"
                 " VALUES (?, ?, ?, ?, ?, ?)", (quarter, level, code, score, source_row, import_id))


def score_rows(db, quarter: str) -> list[tuple]:
    """(level, code, score) of a quarter's scores."""
    return [tuple(r) for r in db.query(
        "SELECT level, code, score FROM base_scores WHERE quarter = ? ORDER BY level, code", (quarter,))]
