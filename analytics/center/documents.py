"""Generated documents in the control center's database: the monthly bulletins (``bulletins``)."""

from __future__ import annotations

import json


def record_bulletin(db, month: str, generated_at: str, files: dict) -> None:
    """Record (or replace) the generated files of a month's bulletin."""
    db.execute("INSERT INTO bulletins (month, generated_at, files) VALUES (?, ?, ?) ON CONFLICT(month) DO UPDATE "
               "SET generated_at = excluded.generated_at, files = excluded.files, notified_at = NULL, "
               "notify_error = NULL", (month, generated_at, json.dumps(files, sort_keys=True)))


def bulletin_rows(db) -> list[dict]:
    """Every generated bulletin, newest month first."""
    return [dict(r) | {"files": json.loads(r["files"])}
            for r in db.query("SELECT * FROM bulletins ORDER BY month DESC")]


def bulletin_row(db, month: str) -> dict | None:
    """The generated bulletin of ``month``, or None."""
    rows = db.query("SELECT * FROM bulletins WHERE month = ?", (month,))
    return dict(rows[0]) | {"files": json.loads(rows[0]["files"])} if rows else None


def mark_notified(db, month: str, at: str | None, error: str | None) -> None:
    """Record the outcome of notifying about a month's bulletin."""
    db.execute("UPDATE bulletins SET notified_at = ?, notify_error = ? WHERE month = ?", (at, error, month))
