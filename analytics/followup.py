"""不满意督办: every unsatisfied vote opens or joins a follow-up case.

Three layers, each usable alone:

* pure working-day arithmetic (:func:`is_working_day`, :func:`add_working_days`,
  :func:`working_deadline`): weekends and an editable holiday list are not working
  days, 调休 make-up days (a Saturday or Sunday declared a working day) are;
* the grouping rule (:func:`joins_case`): an unsatisfied vote at a window joins the
  open case of that window when it falls within ``group_minutes`` of the case's votes;
* storage in the control center's CenterDB (tables ``cases``, ``case_votes``,
  ``case_notes``, ``holidays``, ``followup_settings``) and :func:`sync_cases`, which reads
  new votes from the vote store's live feed (cursor kept in the db) and is idempotent:
  a vote is attached to at most one case, keyed by (device, seq).

Deadlines are the end (24:00 China time) of the N-th working day after the day the
case was opened; a case opened on a Friday with N=3 is due at the end of Wednesday.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

from collector.stores.base import FLAG_TEST
from manyi.exc import ManyiError
from manyi.periods import local_midnight, to_local

from .center import in_clause

UNSATISFIED = "unsatisfied"
STATUS_OPEN, STATUS_ASSIGNED, STATUS_CLOSED = "open", "assigned", "closed"
STATUSES = (STATUS_OPEN, STATUS_ASSIGNED, STATUS_CLOSED)
STATUS_LABELS = {STATUS_OPEN: "待处理", STATUS_ASSIGNED: "处理中", STATUS_CLOSED: "已办结"}
CALLBACK_RESULTS = ("满意", "基本满意", "不满意", "未接通", "无需回访")
HOLIDAY, WORKDAY = "holiday", "workday"

DEFAULT_SETTINGS = {
    "deadline_days": 3,        # working days to close a case
    "group_minutes": 30,       # unsatisfied votes at one window this close together share a case
    "backfill_days": 30,       # first sync: look this far back for unsatisfied votes
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key TEXT NOT NULL,            -- window id, or 'device:<id>' for an unassigned terminal
    window_id TEXT, hall_id TEXT, township_code TEXT, county_code TEXT,
    device TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    opened_at TEXT NOT NULL,            -- ISO, UTC: when the case was created
    first_vote_at TEXT NOT NULL,
    last_vote_at TEXT NOT NULL,
    deadline TEXT NOT NULL,             -- ISO, China time: end of the last working day
    vote_count INTEGER NOT NULL DEFAULT 0,
    assignee TEXT,
    callback_result TEXT, callback_note TEXT, callback_at TEXT,
    closed_at TEXT, close_reason TEXT, closed_by TEXT
);
CREATE INDEX IF NOT EXISTS cases_group ON cases(group_key, status);
CREATE INDEX IF NOT EXISTS cases_county ON cases(county_code, status);
CREATE TABLE IF NOT EXISTS case_votes (
    device TEXT NOT NULL, seq INTEGER NOT NULL,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    time TEXT NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX IF NOT EXISTS case_votes_case ON case_votes(case_id);
CREATE TABLE IF NOT EXISTS case_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    author TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'note', text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS holidays (
    day TEXT PRIMARY KEY,               -- YYYY-MM-DD
    kind TEXT NOT NULL CHECK (kind IN ('holiday', 'workday')),
    name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS followup_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS followup_state (key TEXT PRIMARY KEY, value TEXT);
"""


class CaseError(ManyiError, ValueError):
    """A case action is not allowed or its input is invalid (the message says which)."""


# --- pure working-day arithmetic ---------------------------------------------------

def is_working_day(day: date, holidays: Iterable[date] = (), workdays: Iterable[date] = ()) -> bool:
    """True when ``day`` is a working day: a 调休 workday, or a weekday that is not a holiday."""
    if day in set(workdays):
        return True
    return day.weekday() < 5 and day not in set(holidays)


def add_working_days(start: date, n: int, holidays: Iterable[date] = (), workdays: Iterable[date] = ()) -> date:
    """The N-th working day after ``start`` (``start`` itself is not counted); n=0 gives ``start``."""
    if n < 0:
        raise ValueError(f"number of working days must be >= 0, got {n}")
    holidays, workdays = frozenset(holidays), frozenset(workdays)
    day = start
    remaining = n
    while remaining:
        day += timedelta(days=1)
        if is_working_day(day, holidays, workdays):
            remaining -= 1
    return day


def working_deadline(opened: datetime, n: int, holidays: Iterable[date] = (),
                     workdays: Iterable[date] = ()) -> datetime:
    """Deadline of a case opened at ``opened``: 24:00 China time of the N-th working day after it."""
    last = add_working_days(to_local(opened).date(), n, holidays, workdays)
    return local_midnight(last + timedelta(days=1))


def working_days_between(start: date, end: date, holidays: Iterable[date] = (), workdays: Iterable[date] = ()) -> int:
    """Working days in (start, end]; negative when end is before start."""
    if end < start:
        return -working_days_between(end, start, holidays, workdays)
    holidays, workdays = frozenset(holidays), frozenset(workdays)
    return sum(1 for i in range(1, (end - start).days + 1)
               if is_working_day(start + timedelta(days=i), holidays, workdays))


def joins_case(first_vote_at: datetime, last_vote_at: datetime, vote_time: datetime, group_minutes: float) -> bool:
    """True when a vote at ``vote_time`` belongs to a case whose votes span first..last."""
    slack = timedelta(minutes=group_minutes)
    return first_vote_at - slack <= vote_time <= last_vote_at + slack


def is_overdue(case: dict, now: datetime) -> bool:
    """True when the case is not closed and its deadline has passed."""
    return case["status"] != STATUS_CLOSED and now >= _dt(case["deadline"])


# --- storage ----------------------------------------------------------------------

def _iso(moment: datetime) -> str:
    # Always UTC: the text is compared and sorted in SQL, which only works with one offset.
    if moment.tzinfo is None:
        raise ValueError("datetimes stored for cases must be timezone-aware")
    return moment.astimezone(timezone.utc).isoformat()


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def ensure(db) -> None:
    """Create the follow-up tables if needed."""
    db.ensure(SCHEMA)


def get_settings(db) -> dict:
    """The follow-up settings, defaults filled in."""
    ensure(db)
    values = dict(DEFAULT_SETTINGS)
    for row in db.query("SELECT key, value FROM followup_settings"):
        values[row["key"]] = json.loads(row["value"])
    return values


def set_settings(db, **values) -> dict:
    """Change settings (deadline_days 0..60, group_minutes 0..1440, backfill_days 0..366); return all."""
    ensure(db)
    bounds = {"deadline_days": (0, 60), "group_minutes": (0, 1440), "backfill_days": (0, 366)}
    for key, value in values.items():
        if key not in bounds:
            raise CaseError(f"未知设置项 {key!r}")
        low, high = bounds[key]
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise CaseError(f"设置项 {key} 必须是整数，收到 {value!r}") from None
        if not low <= number <= high:
            raise CaseError(f"设置项 {key} 必须在 {low} 到 {high} 之间，收到 {number}")
        db.execute("INSERT INTO followup_settings(key, value) VALUES (?, ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(number)))
    return get_settings(db)


def list_holidays(db) -> list[dict]:
    """Every holiday and 调休 workday, by date."""
    ensure(db)
    return [dict(row) for row in db.query("SELECT day, kind, name FROM holidays ORDER BY day")]


def calendar(db) -> tuple[frozenset[date], frozenset[date]]:
    """(holidays, make-up workdays) as sets of dates."""
    rows = list_holidays(db)
    return (frozenset(date.fromisoformat(r["day"]) for r in rows if r["kind"] == HOLIDAY),
            frozenset(date.fromisoformat(r["day"]) for r in rows if r["kind"] == WORKDAY))


def set_holiday(db, day: date | str, kind: str = HOLIDAY, name: str = "") -> None:
    """Add or change one day of the holiday list (kind 'holiday' or 'workday' for 调休)."""
    ensure(db)
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day.strip())
        except ValueError:
            raise CaseError(f"日期 {day!r} 格式应为 YYYY-MM-DD") from None
    if kind not in (HOLIDAY, WORKDAY):
        raise CaseError(f"类型 {kind!r} 应为 holiday 或 workday")
    db.execute("INSERT INTO holidays(day, kind, name) VALUES (?, ?, ?) ON CONFLICT(day) DO UPDATE "
               "SET kind = excluded.kind, name = excluded.name", (day.isoformat(), kind, (name or "").strip()[:50]))


def delete_holiday(db, day: date | str) -> bool:
    """Remove one day from the holiday list; True when it was there."""
    ensure(db)
    text = day.isoformat() if isinstance(day, date) else str(day).strip()
    return db.execute("DELETE FROM holidays WHERE day = ?", (text,)).rowcount > 0


def _state(db, key: str) -> str | None:
    rows = db.query("SELECT value FROM followup_state WHERE key = ?", (key,))
    return rows[0]["value"] if rows else None


def _set_state(conn, key: str, value: str | None) -> None:
    conn.execute("INSERT INTO followup_state(key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


@dataclass(frozen=True)
class SyncResult:
    """What one :func:`sync_cases` run did."""

    seen: int = 0        # unsatisfied votes read
    opened: int = 0      # new cases
    joined: int = 0      # votes added to an existing case
    known: int = 0       # votes already attached to a case (idempotence)


def _locate(registry, device: str, at: datetime):
    if registry is None:
        return None
    try:
        return registry.locate(device, at)
    except Exception:  # noqa: BLE001 - an unknown terminal still gets its case
        return None


def attach_vote(db, registry, device: str, seq: int, time: datetime, now: datetime,
                settings: dict | None = None, cal=None) -> str:
    """Attach one unsatisfied vote to a case; return 'opened', 'joined' or 'known'."""
    ensure(db)
    settings = settings or get_settings(db)
    holidays, workdays = cal or calendar(db)
    loc = _locate(registry, device, time)
    group_key = loc.window_id if loc else f"device:{device}"
    with db.transaction() as conn:
        if conn.execute("SELECT 1 FROM case_votes WHERE device = ? AND seq = ?", (device, seq)).fetchone():
            return "known"
        target = None
        for row in conn.execute("SELECT id, first_vote_at, last_vote_at FROM cases WHERE group_key = ? "
                                "AND status != 'closed' ORDER BY last_vote_at DESC", (group_key,)):
            if joins_case(_dt(row["first_vote_at"]), _dt(row["last_vote_at"]), time, settings["group_minutes"]):
                target = row
                break
        if target is not None:
            first = min(_dt(target["first_vote_at"]), time)
            last = max(_dt(target["last_vote_at"]), time)
            conn.execute("UPDATE cases SET first_vote_at = ?, last_vote_at = ?, vote_count = vote_count + 1 "
                         "WHERE id = ?", (_iso(first), _iso(last), target["id"]))
            case_id, outcome = target["id"], "joined"
        else:
            deadline = working_deadline(time, settings["deadline_days"], holidays, workdays)
            cur = conn.execute(
                "INSERT INTO cases(group_key, window_id, hall_id, township_code, county_code, device, status, "
                "opened_at, first_vote_at, last_vote_at, deadline, vote_count) VALUES (?,?,?,?,?,?,?,?,?,?,?,1)",
                (group_key, loc.window_id if loc else None, loc.hall_id if loc else None,
                 loc.township_code if loc else None, loc.county_code if loc else None, device, STATUS_OPEN,
                 _iso(now), _iso(time), _iso(time), deadline.isoformat()))
            case_id, outcome = cur.lastrowid, "opened"
        conn.execute("INSERT INTO case_votes(device, seq, case_id, time) VALUES (?, ?, ?, ?)",
                     (device, seq, case_id, _iso(time)))
    return outcome


def sync_cases(store, db, registry, now: datetime, limit: int = 500) -> SyncResult:
    """Read new votes from ``store.feed`` after the cursor kept in ``db``; open or join cases.

    On the very first run (no cursor yet) unsatisfied votes of the last ``backfill_days``
    are read with ``store.votes`` so that nothing before the center started is missed.
    Running it again with nothing new changes nothing.
    """
    ensure(db)
    settings = get_settings(db)
    cal = calendar(db)
    counts = {"opened": 0, "joined": 0, "known": 0}
    seen = 0
    cursor = _state(db, "feed_cursor")
    if not cursor:
        latest = store.feed(after=None, limit=1)
        start = now - timedelta(days=settings["backfill_days"])
        for vote in store.votes(start, now + timedelta(minutes=10), ratings=[UNSATISFIED]):
            if FLAG_TEST in vote.flags:
                continue
            seen += 1
            counts[attach_vote(db, registry, vote.device, vote.seq, vote.time, now, settings, cal)] += 1
        if not latest:
            # An empty store: no cursor yet, the next run backfills again (idempotently).
            return SyncResult(seen=seen, **counts)
        cursor = latest[-1].cursor
        with db.transaction() as conn:
            _set_state(conn, "feed_cursor", cursor)
    while True:
        items = store.feed(after=cursor, limit=limit)
        if not items:
            break
        for item in items:
            if item.rating != UNSATISFIED or FLAG_TEST in item.flags:
                continue
            seen += 1
            counts[attach_vote(db, registry, item.device, item.seq, item.time, now, settings, cal)] += 1
        cursor = items[-1].cursor
        with db.transaction() as conn:
            _set_state(conn, "feed_cursor", cursor)
        if len(items) < limit:
            break
    return SyncResult(seen=seen, **counts)


# --- reading and acting on cases ------------------------------------------------------

CASE_COLUMNS = ("id", "group_key", "window_id", "hall_id", "township_code", "county_code", "device", "status",
                "opened_at", "first_vote_at", "last_vote_at", "deadline", "vote_count", "assignee",
                "callback_result", "callback_note", "callback_at", "closed_at", "close_reason", "closed_by")


def _case_dict(row, now: datetime) -> dict:
    case = {key: row[key] for key in CASE_COLUMNS}
    case["overdue"] = is_overdue(case, now)
    case["status_label"] = STATUS_LABELS.get(case["status"], case["status"])
    return case


def list_cases(db, now: datetime, *, counties: Iterable[str] | None = None, county: str | None = None,
               status: str | None = None, overdue: bool | None = None, assignee: str | None = None,
               date_from: date | None = None, date_to: date | None = None, limit: int = 1000) -> list[dict]:
    """Cases newest first, filtered; ``counties`` (a set) restricts to what a user may see."""
    ensure(db)
    where, params = [], []
    if counties is not None:
        if not counties:
            return []
        clause, values = in_clause("county_code", counties)
        where.append(clause)
        params += values
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
    if date_from:
        where.append("first_vote_at >= ?")
        params.append(_iso(local_midnight(date_from).astimezone(timezone.utc)))
    if date_to:
        where.append("first_vote_at < ?")
        params.append(_iso(local_midnight(date_to + timedelta(days=1)).astimezone(timezone.utc)))
    sql = "SELECT * FROM cases" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
    rows = db.query(sql, (*params, int(limit)))
    cases = [_case_dict(r, now) for r in rows]
    if overdue is not None:
        cases = [c for c in cases if c["overdue"] == overdue]
    return cases


def get_case(db, case_id: int, now: datetime) -> dict | None:
    """One case with its votes and notes, or None."""
    ensure(db)
    rows = db.query("SELECT * FROM cases WHERE id = ?", (int(case_id),))
    if not rows:
        return None
    case = _case_dict(rows[0], now)
    case["votes"] = [dict(r) for r in db.query(
        "SELECT device, seq, time FROM case_votes WHERE case_id = ? ORDER BY time", (case["id"],))]
    case["notes"] = [dict(r) for r in db.query(
        "SELECT id, author, kind, text, created_at FROM case_notes WHERE case_id = ? ORDER BY id", (case["id"],))]
    return case


def _require_case(conn, case_id: int, *, open_only: bool = True):
    row = conn.execute("SELECT id, status FROM cases WHERE id = ?", (int(case_id),)).fetchone()
    if row is None:
        raise CaseError(f"督办件 {case_id} 不存在")
    if open_only and row["status"] == STATUS_CLOSED:
        raise CaseError(f"督办件 {case_id} 已办结，不能再修改")
    return row


def _note(conn, case_id: int, author: str, kind: str, text: str, now: datetime) -> None:
    conn.execute("INSERT INTO case_notes(case_id, author, kind, text, created_at) VALUES (?,?,?,?,?)",
                 (case_id, author, kind, text, _iso(now)))


def assign_case(db, case_id: int, assignee: str, by: str, now: datetime) -> None:
    """Give the case to ``assignee`` (a name, 1..50 characters)."""
    assignee = (assignee or "").strip()
    if not 1 <= len(assignee) <= 50:
        raise CaseError("承办人不能为空，且不超过 50 个字")
    ensure(db)
    with db.transaction() as conn:
        _require_case(conn, case_id)
        conn.execute("UPDATE cases SET assignee = ?, status = ? WHERE id = ?", (assignee, STATUS_ASSIGNED, case_id))
        _note(conn, case_id, by, "assign", f"指派给 {assignee}", now)


def add_note(db, case_id: int, text: str, by: str, now: datetime) -> None:
    """Add a free-text note (1..2000 characters)."""
    text = (text or "").strip()
    if not 1 <= len(text) <= 2000:
        raise CaseError("备注不能为空，且不超过 2000 个字")
    ensure(db)
    with db.transaction() as conn:
        _require_case(conn, case_id, open_only=False)
        _note(conn, case_id, by, "note", text, now)


def record_callback(db, case_id: int, result: str, note: str, by: str, now: datetime) -> None:
    """Record the 回访 (call-back) result: one of CALLBACK_RESULTS, with an optional note."""
    if result not in CALLBACK_RESULTS:
        raise CaseError(f"回访结果应为 {'、'.join(CALLBACK_RESULTS)} 之一")
    note = (note or "").strip()[:2000]
    ensure(db)
    with db.transaction() as conn:
        _require_case(conn, case_id)
        conn.execute("UPDATE cases SET callback_result = ?, callback_note = ?, callback_at = ? WHERE id = ?",
                     (result, note, _iso(now), case_id))
        _note(conn, case_id, by, "callback", f"回访结果：{result}" + (f"；{note}" if note else ""), now)


def close_case(db, case_id: int, reason: str, by: str, now: datetime) -> None:
    """Close the case with a reason (1..500 characters)."""
    reason = (reason or "").strip()
    if not 1 <= len(reason) <= 500:
        raise CaseError("办结原因不能为空，且不超过 500 个字")
    ensure(db)
    with db.transaction() as conn:
        _require_case(conn, case_id)
        conn.execute("UPDATE cases SET status = ?, closed_at = ?, close_reason = ?, closed_by = ? WHERE id = ?",
                     (STATUS_CLOSED, _iso(now), reason, by, case_id))
        _note(conn, case_id, by, "close", f"办结：{reason}", now)


def case_counts(db, now: datetime, counties: Iterable[str] | None = None) -> dict:
    """Totals for a dashboard: {"active": n, "overdue": n, "closed": n}."""
    cases = list_cases(db, now, counties=counties, limit=100000)
    return {"active": sum(c["status"] != STATUS_CLOSED for c in cases),
            "overdue": sum(c["overdue"] for c in cases),
            "closed": sum(c["status"] == STATUS_CLOSED for c in cases)}

