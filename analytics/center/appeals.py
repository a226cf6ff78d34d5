"""申诉复核 in the control center's database: ``appeals`` and ``appeal_votes`` (the votes each
appeal covers; what a published quarter left out is kept with it, analytics.center.results).
Plain storage; the rules are in analytics.appeals.rules. Functions that take ``conn`` run inside
the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from .cases import iso
from .db import county_filter

COLUMNS = ("id", "county_code", "target_kind", "target_ref", "kind", "reason", "evidence", "status", "filed_by",
           "filed_at", "reviewed_by", "reviewed_at", "review_note")


def insert_appeal(conn, *, county_code: str | None, target_kind: str, target_ref: str, kind: str, reason: str,
                  evidence: str, filed_by: str, now: datetime, votes) -> int:
    """A pending appeal over ``votes`` (device, seq, rating, time); return its id."""
    appeal_id = conn.execute(
        "INSERT INTO appeals(county_code, target_kind, target_ref, kind, reason, evidence, filed_by, filed_at) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (county_code, target_kind, target_ref, kind, reason, evidence, filed_by, iso(now))).lastrowid
    conn.executemany("INSERT INTO appeal_votes(appeal_id, device, seq, rating, time) VALUES (?,?,?,?,?)",
                     [(appeal_id, d, s, r, iso(t)) for d, s, r, t in votes])
    return appeal_id


def claimed(conn, keys) -> set[tuple[str, int]]:
    """Of the (device, seq) ``keys``, those in a pending or accepted appeal."""
    found = set()
    for device, seq in keys:
        row = conn.execute("SELECT 1 FROM appeal_votes v JOIN appeals a ON a.id = v.appeal_id WHERE v.device = ? "
                           "AND v.seq = ? AND a.status IN ('pending', 'accepted')", (device, seq)).fetchone()
        if row:
            found.add((device, seq))
    return found


def appeal_state(conn, appeal_id: int) -> dict | None:
    """The appeal's columns inside a transaction, or None."""
    row = conn.execute("SELECT * FROM appeals WHERE id = ?", (int(appeal_id),)).fetchone()
    return {k: row[k] for k in COLUMNS} if row else None


def set_status(conn, appeal_id: int, status: str, by: str, now: datetime, note: str) -> None:
    """Record the review (or the withdrawal)."""
    conn.execute("UPDATE appeals SET status = ?, reviewed_by = ?, reviewed_at = ?, review_note = ? WHERE id = ?",
                 (status, by, iso(now), note, int(appeal_id)))


def appeal_rows(db, *, counties=None, status: str | None = None, target_kind: str | None = None,
                target_ref: str | None = None, limit: int = 1000) -> list[dict]:
    """Appeals newest first with their vote count; ``counties`` (a set) restricts to those counties."""
    scope = county_filter(counties)
    if scope is None:
        return []
    where, params = scope
    for column, value in (("status", status), ("target_kind", target_kind), ("target_ref", target_ref)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    sql = ("SELECT a.*, (SELECT COUNT(*) FROM appeal_votes v WHERE v.appeal_id = a.id) AS votes FROM appeals a"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY a.id DESC LIMIT ?")
    return [{k: r[k] for k in (*COLUMNS, "votes")} for r in db.query(sql, (*params, int(limit)))]


def appeal_row(db, appeal_id: int) -> dict | None:
    """One appeal with its votes, or None."""
    rows = db.query("SELECT * FROM appeals WHERE id = ?", (int(appeal_id),))
    if not rows:
        return None
    appeal = {k: rows[0][k] for k in COLUMNS}
    appeal["vote_list"] = [dict(r) for r in db.query(
        "SELECT device, seq, rating, time FROM appeal_votes WHERE appeal_id = ? ORDER BY time, device, seq",
        (appeal["id"],))]
    appeal["votes"] = len(appeal["vote_list"])
    return appeal


def accepted_votes(db, start: datetime | None = None, end: datetime | None = None) -> list[dict]:
    """The votes of accepted appeals (appeal_id, device, seq, rating, time) with time in [start, end)."""
    where, params = ["a.status = 'accepted'"], []
    if start is not None:
        where.append("v.time >= ?")
        params.append(iso(start))
    if end is not None:
        where.append("v.time < ?")
        params.append(iso(end))
    return [dict(r) for r in db.query(
        "SELECT v.appeal_id, v.device, v.seq, v.rating, v.time FROM appeal_votes v JOIN appeals a "
        "ON a.id = v.appeal_id WHERE " + " AND ".join(where) + " ORDER BY v.time, v.device, v.seq", params)]
