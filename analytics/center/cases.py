"""Follow-up cases (督办) in the control center's database: ``cases``, ``case_votes``,
``case_notes``, ``holidays``, ``followup_settings`` and ``followup_state`` (the feed cursor).

Plain storage; the rules (grouping, deadlines, what an action accepts) are in
analytics.cases. Functions that take ``conn`` run inside the caller's transaction
(``with db.transaction() as conn``); the others take the CenterDB.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from .db import county_filter

CASE_COLUMNS = ("id", "group_key", "window_id", "hall_id", "township_code", "county_code", "device", "status",
                "opened_at", "first_vote_at", "last_vote_at", "deadline", "vote_count", "assignee",
                "callback_result", "callback_note", "callback_at", "closed_at", "close_reason", "closed_by",
                "contact_deadline", "contacted_at", "no_answer_calls", "rectified_at", "rectify_note",
                "revisit_deadline", "revisit_result", "revisit_note", "revisit_at", "close_code")


def iso(moment: datetime) -> str:
    """A stored instant: always UTC, so that the text sorts and compares in SQL."""
    if moment.tzinfo is None:
        raise ValueError("datetimes stored for cases must be timezone-aware")
    return moment.astimezone(timezone.utc).isoformat()


# --- settings, holidays, state -----------------------------------------------------------

def settings(db) -> dict:
    """The stored settings (only those ever changed)."""
    return {row["key"]: json.loads(row["value"]) for row in db.query("SELECT key, value FROM followup_settings")}


def set_setting(db, key: str, value: int) -> None:
    """Store one setting."""
    db.execute("INSERT INTO followup_settings(key, value) VALUES (?, ?) "
               "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(value)))


def holidays(db) -> list[dict]:
    """Every holiday and 调休 workday (day, kind, name), by date."""
    return [dict(row) for row in db.query("SELECT day, kind, name FROM holidays ORDER BY day")]


def set_holiday(db, day: str, kind: str, name: str) -> None:
    """Add or change one day of the holiday list."""
    db.execute("INSERT INTO holidays(day, kind, name) VALUES (?, ?, ?) ON CONFLICT(day) DO UPDATE "
               "SET kind = excluded.kind, name = excluded.name", (day, kind, name))


def delete_holiday(db, day: str) -> bool:
    """Remove one day from the holiday list; True when it was there."""
    return db.execute("DELETE FROM holidays WHERE day = ?", (day,)).rowcount > 0


def state(db, key: str) -> str | None:
    """A stored state value (the feed cursor), or None."""
    rows = db.query("SELECT value FROM followup_state WHERE key = ?", (key,))
    return rows[0]["value"] if rows else None


def set_state(conn, key: str, value: str | None) -> None:
    """Store a state value."""
    conn.execute("INSERT INTO followup_state(key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


# --- attaching votes ---------------------------------------------------------------------

def vote_known(conn, device: str, seq: int) -> bool:
    """True when the vote is attached to a case already."""
    return conn.execute("SELECT 1 FROM case_votes WHERE device = ? AND seq = ?", (device, seq)).fetchone() is not None


def open_cases(conn, group_key: str) -> list[dict]:
    """The group's cases that are not closed (id, first_vote_at, last_vote_at), latest vote first."""
    return [dict(r) for r in conn.execute("SELECT id, first_vote_at, last_vote_at FROM cases WHERE group_key = ? "
                                          "AND status != 'closed' ORDER BY last_vote_at DESC", (group_key,))]


def extend_case(conn, case_id: int, first: datetime, last: datetime) -> None:
    """Count one more vote in a case whose votes now span first..last."""
    conn.execute("UPDATE cases SET first_vote_at = ?, last_vote_at = ?, vote_count = vote_count + 1 WHERE id = ?",
                 (iso(first), iso(last), case_id))


def insert_case(conn, *, group_key: str, place: dict, device: str, status: str, opened: datetime,
                time: datetime, deadline: datetime, contact_deadline: datetime) -> int:
    """A new case of one vote at ``place`` (window_id, hall_id, township_code, county_code); return its id."""
    cur = conn.execute(
        "INSERT INTO cases(group_key, window_id, hall_id, township_code, county_code, device, status, "
        "opened_at, first_vote_at, last_vote_at, deadline, contact_deadline, vote_count) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1)",
        (group_key, place.get("window_id"), place.get("hall_id"), place.get("township_code"),
         place.get("county_code"), device, status, iso(opened), iso(time), iso(time), deadline.isoformat(),
         contact_deadline.isoformat()))
    return cur.lastrowid


def add_case_vote(conn, case_id: int, device: str, seq: int, time: datetime) -> None:
    """Record that the vote (device, seq) belongs to the case."""
    conn.execute("INSERT INTO case_votes(device, seq, case_id, time) VALUES (?, ?, ?, ?)",
                 (device, seq, case_id, iso(time)))


# --- reading and acting on cases -----------------------------------------------------------

def case_rows(db, *, counties=None, county: str | None = None, status: str | None = None,
              assignee: str | None = None, first_from: datetime | None = None, first_before: datetime | None = None,
              limit: int = 1000) -> list[dict]:
    """Cases newest first, filtered; ``counties`` (a set) restricts to those counties (empty: none)."""
    scope = county_filter(counties)
    if scope is None:
        return []
    where, params = scope
    if county:
        where.append("county_code = ?")
        params.append(county)
    if status == "active":
        where.append("status != 'closed'")
    elif status:
        where.append("status = ?")
        params.append(status)
    if assignee:
        where.append("assignee LIKE ?")
        params.append(f"%{assignee}%")
    if first_from:
        where.append("first_vote_at >= ?")
        params.append(iso(first_from))
    if first_before:
        where.append("first_vote_at < ?")
        params.append(iso(first_before))
    sql = "SELECT * FROM cases" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
    return [{key: r[key] for key in CASE_COLUMNS} for r in db.query(sql, (*params, int(limit)))]


def case_row(db, case_id: int) -> dict | None:
    """One case with its votes and notes, or None."""
    rows = db.query("SELECT * FROM cases WHERE id = ?", (int(case_id),))
    if not rows:
        return None
    case = {key: rows[0][key] for key in CASE_COLUMNS}
    case["votes"] = [dict(r) for r in db.query(
        "SELECT device, seq, time FROM case_votes WHERE case_id = ? ORDER BY time", (case["id"],))]
    case["notes"] = [dict(r) for r in db.query(
        "SELECT id, author, kind, text, created_at FROM case_notes WHERE case_id = ? ORDER BY id", (case["id"],))]
    return case


def case_state(conn, case_id: int) -> dict | None:
    """The case's own columns (no votes, no notes) inside a transaction, or None when there is no such case."""
    row = conn.execute("SELECT * FROM cases WHERE id = ?", (int(case_id),)).fetchone()
    return {key: row[key] for key in CASE_COLUMNS} if row else None


def add_note(conn, case_id: int, author: str, kind: str, text: str, now: datetime) -> None:
    """Append a note (free text, or the record of an action) to the case."""
    conn.execute("INSERT INTO case_notes(case_id, author, kind, text, created_at) VALUES (?,?,?,?,?)",
                 (case_id, author, kind, text, iso(now)))


def set_assignee(conn, case_id: int, assignee: str, status: str) -> None:
    """Give the case to ``assignee`` with ``status``."""
    conn.execute("UPDATE cases SET assignee = ?, status = ? WHERE id = ?", (assignee, status, case_id))


def set_callback(conn, case_id: int, result: str, note: str, now: datetime, no_answer: bool) -> None:
    """Record a 回访 call's result; the first call also marks the contact done."""
    conn.execute("UPDATE cases SET callback_result = ?, callback_note = ?, callback_at = ?, "
                 "contacted_at = COALESCE(contacted_at, ?), no_answer_calls = no_answer_calls + ? WHERE id = ?",
                 (result, note, iso(now), iso(now), int(no_answer), case_id))


def set_rectified(conn, case_id: int, note: str, now: datetime, revisit_deadline: datetime) -> None:
    """Record the fix (整改) and the deadline of the second 回访."""
    conn.execute("UPDATE cases SET rectified_at = ?, rectify_note = ?, revisit_deadline = ? WHERE id = ?",
                 (iso(now), note, revisit_deadline.isoformat(), case_id))


def set_revisit(conn, case_id: int, result: str, note: str, now: datetime, no_answer: bool) -> None:
    """Record a second 回访 call: the citizen's rating of the fix (追评), or no answer."""
    conn.execute("UPDATE cases SET revisit_result = ?, revisit_note = ?, revisit_at = COALESCE(revisit_at, ?), "
                 "no_answer_calls = no_answer_calls + ? WHERE id = ?",
                 (result, note, iso(now), int(no_answer), case_id))


def set_closed(conn, case_id: int, status: str, code: str, reason: str, by: str, now: datetime) -> None:
    """Close the case."""
    conn.execute("UPDATE cases SET status = ?, closed_at = ?, close_code = ?, close_reason = ?, closed_by = ? "
                 "WHERE id = ?", (status, iso(now), code, reason, by, case_id))
