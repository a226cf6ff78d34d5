"""不满意督办: every unsatisfied vote opens or joins a follow-up case.

The rules are in :mod:`.rules` (pure: working days, grouping, deadlines, what an action
accepts), the working-day calendar in :mod:`.calendar`; the tables in analytics.center.cases.
Here they meet: :func:`sync_cases` reads
new votes from the vote store's live feed (cursor kept in the center database) and is
idempotent (a vote is attached to at most one case, keyed by (device, seq)); a case is
placed where its terminal stood at the time of the vote (the one attribution); and the
case actions check their input, then write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterable

from collector.stores.base import FLAG_TEST
from manyi.periods import local_midnight

from ..center import accounts as stored_accounts
from ..center import cases as stored
from ..model.attribution import locate_all, locate_one, places
from .calendar import WorkCalendar, statutory_name, work_calendar
from .rules import (
    CALLBACK_RESULTS, CLOSE_CODES, DEFAULT_SETTINGS, HOLIDAY, NO_ANSWER, REACHED, SETTING_LABELS, STATUS_ASSIGNED,
    STATUS_CLOSED, STATUS_LABELS, STATUS_OPEN, STATUSES, UNSATISFIED, WORKDAY, CaseError, add_working_days,
    check_close, check_holiday, close_label, check_setting, check_text, is_overdue, is_working_day, joins_case,
    outcome, overdue_stages, stages, working_days_between, working_deadline,
)

__all__ = [
    "CALLBACK_RESULTS", "CLOSE_CODES", "DEFAULT_SETTINGS", "HOLIDAY", "NO_ANSWER", "REACHED", "SETTING_LABELS",
    "STATUSES", "STATUS_ASSIGNED", "STATUS_CLOSED", "STATUS_LABELS", "STATUS_OPEN", "WORKDAY", "CaseError",
    "SyncResult", "WorkCalendar", "add_note", "add_working_days", "assign_case", "assignees", "attach_vote",
    "calendar", "case_counts", "close_case", "delete_holiday", "get_case", "get_settings", "is_overdue",
    "is_working_day", "joins_case", "list_cases", "list_holidays", "outcome", "record_callback", "record_rectify",
    "record_revisit", "set_holiday", "set_settings", "stages", "statutory_name", "sync_cases", "work_calendar",
    "working_days_between", "working_deadline",
]


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def get_settings(db) -> dict:
    """The follow-up settings, defaults filled in."""
    return dict(DEFAULT_SETTINGS) | stored.settings(db)


def set_settings(db, **values) -> dict:
    """Change settings (bounds in rules.SETTING_BOUNDS); return all."""
    checked = {key: check_setting(key, value) for key, value in values.items()}
    for key, number in checked.items():
        stored.set_setting(db, key, number)
    return get_settings(db)


def list_holidays(db) -> list[dict]:
    """The admin's overrides of the statutory calendar (day, kind, name), by date."""
    return stored.holidays(db)


def calendar(db) -> WorkCalendar:
    """The working-day calendar: the statutory schedule with the admin's overrides."""
    return work_calendar(list_holidays(db))


def set_holiday(db, day: date | str, kind: str = HOLIDAY, name: str = "") -> None:
    """Override one day of the calendar: 'holiday' (a day off) or 'workday' (a working day, 调休)."""
    day = check_holiday(day, kind)
    stored.set_holiday(db, day.isoformat(), kind, (name or "").strip()[:50])


def delete_holiday(db, day: date | str) -> bool:
    """Remove one day from the holiday list; True when it was there."""
    text = day.isoformat() if isinstance(day, date) else str(day).strip()
    return stored.delete_holiday(db, text)


@dataclass(frozen=True)
class SyncResult:
    """What one :func:`sync_cases` run did."""

    seen: int = 0        # unsatisfied votes read
    opened: int = 0      # new cases
    joined: int = 0      # votes added to an existing case
    known: int = 0       # votes already attached to a case (idempotence)


def _places(registry, votes) -> list[dict | None]:
    """Where each vote's terminal stood at its time (one attribution for the whole batch)."""
    if registry is None:
        return [None] * len(votes)
    return locate_all(places(registry), [(v.device, v.time) for v in votes])


def _place(registry, device: str, at: datetime) -> dict | None:
    """Where the terminal stood at ``at`` (the one attribution), or None."""
    if registry is None:
        return None
    return locate_one(places(registry), device, at)


_UNKNOWN = object()


def attach_vote(db, registry, device: str, seq: int, time: datetime, now: datetime,
                settings: dict | None = None, cal=None, place=_UNKNOWN) -> str:
    """Attach one unsatisfied vote to a case; return 'opened', 'joined' or 'known'.

    ``place`` is where the terminal stood at ``time`` when the caller attributed a batch
    already (None: nowhere known); by default it is looked up here."""
    settings = settings or get_settings(db)
    cal = cal or calendar(db)
    if place is _UNKNOWN:
        place = _place(registry, device, time)
    group_key = place["window_id"] if place else f"device:{device}"
    with db.transaction() as conn:
        if stored.vote_known(conn, device, seq):
            return "known"
        target = next((row for row in stored.open_cases(conn, group_key)
                       if joins_case(_dt(row["first_vote_at"]), _dt(row["last_vote_at"]), time,
                                     settings["group_minutes"])), None)
        if target is not None:
            stored.extend_case(conn, target["id"], min(_dt(target["first_vote_at"]), time),
                               max(_dt(target["last_vote_at"]), time))
            case_id, outcome = target["id"], "joined"
        else:
            case_id = stored.insert_case(
                conn, group_key=group_key, place=place or {}, device=device, status=STATUS_OPEN, opened=now, time=time,
                deadline=working_deadline(time, settings["deadline_days"], cal.holidays, cal.workdays),
                contact_deadline=working_deadline(time, settings["contact_days"], cal.holidays, cal.workdays))
            outcome = "opened"
        stored.add_case_vote(conn, case_id, device, seq, time)
    return outcome


def sync_cases(store, db, registry, now: datetime, limit: int = 500) -> SyncResult:
    """Read new votes from ``store.feed`` after the cursor kept in ``db``; open or join cases.

    On the very first run (no cursor yet) unsatisfied votes of the last ``backfill_days``
    are read with ``store.votes`` so that nothing before the center started is missed.
    Running it again with nothing new changes nothing.
    """
    settings = get_settings(db)
    cal = calendar(db)
    counts = {"opened": 0, "joined": 0, "known": 0}
    seen = 0
    cursor = stored.state(db, "feed_cursor")
    if not cursor:
        latest = store.feed(after=None, limit=1)
        start = now - timedelta(days=settings["backfill_days"])
        votes = [v for v in store.votes(start, now + timedelta(minutes=10), ratings=[UNSATISFIED])
                 if FLAG_TEST not in v.flags]
        for vote, place in zip(votes, _places(registry, votes)):
            seen += 1
            counts[attach_vote(db, registry, vote.device, vote.seq, vote.time, now, settings, cal, place)] += 1
        if not latest:
            # An empty store: no cursor yet, the next run backfills again (idempotently).
            return SyncResult(seen=seen, **counts)
        cursor = latest[-1].cursor
        with db.transaction() as conn:
            stored.set_state(conn, "feed_cursor", cursor)
    while True:
        items = store.feed(after=cursor, limit=limit)
        if not items:
            break
        wanted = [i for i in items if i.rating == UNSATISFIED and FLAG_TEST not in i.flags]
        for item, place in zip(wanted, _places(registry, wanted)):
            seen += 1
            counts[attach_vote(db, registry, item.device, item.seq, item.time, now, settings, cal, place)] += 1
        cursor = items[-1].cursor
        with db.transaction() as conn:
            stored.set_state(conn, "feed_cursor", cursor)
        if len(items) < limit:
            break
    return SyncResult(seen=seen, **counts)


# --- reading and acting on cases ------------------------------------------------------

def _with_flags(case: dict, now: datetime) -> dict:
    case["overdue_stages"] = overdue_stages(case, now)
    case["overdue"] = bool(case["overdue_stages"])
    case["status_label"] = STATUS_LABELS.get(case["status"], case["status"])
    case["close_label"] = close_label(case["close_code"], case["close_reason"]) if case["closed_at"] else ""
    case["stages"] = [{"stage": st["stage"], "label": st["label"], "deadline": st["deadline"].isoformat(),
                       "done_at": st["done_at"].isoformat() if st["done_at"] else None} for st in stages(case)]
    pending = next((st for st in case["stages"] if st["done_at"] is None), None)
    case["next_stage"] = pending["label"] if pending and case["status"] != STATUS_CLOSED else None
    case["next_deadline"] = pending["deadline"] if case["next_stage"] else None
    return case


def list_cases(db, now: datetime, *, counties: Iterable[str] | None = None, county: str | None = None,
               status: str | None = None, overdue: bool | None = None, assignee: str | None = None,
               date_from: date | None = None, date_to: date | None = None, limit: int = 1000) -> list[dict]:
    """Cases newest first, filtered; ``counties`` (a set) restricts to what a user may see."""
    rows = stored.case_rows(
        db, counties=None if counties is None else set(counties), county=county, status=status, assignee=assignee,
        first_from=local_midnight(date_from) if date_from else None,
        first_before=local_midnight(date_to + timedelta(days=1)) if date_to else None, limit=limit)
    cases = [_with_flags(r, now) for r in rows]
    if overdue is not None:
        cases = [c for c in cases if c["overdue"] == overdue]
    return cases


def get_case(db, case_id: int, now: datetime) -> dict | None:
    """One case with its votes and notes, or None."""
    case = stored.case_row(db, case_id)
    return None if case is None else _with_flags(case, now)


def _open_case(conn, case_id: int, *, open_only: bool = True) -> dict:
    case = stored.case_state(conn, case_id)
    if case is None:
        raise CaseError(f"督办件 {case_id} 不存在")
    if open_only and case["status"] == STATUS_CLOSED:
        raise CaseError(f"督办件 {case_id} 已办结，不能再修改")
    return case


def assignees(db, county_code: str | None) -> list[str]:
    """The user names a case of ``county_code`` may be given to: active accounts of the city staff,
    and of that county's staff (the system administrators of 三员 do no casework)."""
    return [u["username"] for u in stored_accounts.list_users(db)
            if not u["disabled"] and (u["role"] == "city"
                                      or (u["role"] == "county" and county_code and u["county_code"] == county_code))]


def assign_case(db, case_id: int, assignee: str, by: str, now: datetime) -> None:
    """Give the case to ``assignee``, an active account that may act on the case's county."""
    assignee = check_text(assignee, "承办人", 64)
    with db.transaction() as conn:
        case = _open_case(conn, case_id)
        if assignee not in assignees(db, case["county_code"]):
            raise CaseError(f"承办人 {assignee!r} 不是可处理该县区督办件的有效账号")
        stored.set_assignee(conn, case_id, assignee, STATUS_ASSIGNED)
        stored.add_note(conn, case_id, by, "assign", f"指派给 {assignee}", now)


def add_note(db, case_id: int, text: str, by: str, now: datetime) -> None:
    """Add a free-text note (1..2000 characters)."""
    text = check_text(text, "备注", 2000)
    with db.transaction() as conn:
        _open_case(conn, case_id, open_only=False)
        stored.add_note(conn, case_id, by, "note", text, now)


def _call_result(result: str) -> str:
    if result not in CALLBACK_RESULTS:
        raise CaseError(f"回访结果应为 {'、'.join(CALLBACK_RESULTS)} 之一")
    return result


def record_callback(db, case_id: int, result: str, note: str, by: str, now: datetime) -> None:
    """Record a 回访 call to the citizen: their rating, or 未接通; the first call meets the contact deadline."""
    result = _call_result(result)
    note = (note or "").strip()[:2000]
    with db.transaction() as conn:
        _open_case(conn, case_id)
        stored.set_callback(conn, case_id, result, note, now, result == NO_ANSWER)
        stored.add_note(conn, case_id, by, "callback", f"回访结果：{result}" + (f"；{note}" if note else ""), now)


def record_rectify(db, case_id: int, note: str, by: str, now: datetime) -> None:
    """Record the fix (整改措施, 1..2000 characters); the second 回访 is due ``revisit_days`` working days later."""
    note = check_text(note, "整改情况", 2000)
    settings, cal = get_settings(db), calendar(db)
    with db.transaction() as conn:
        case = _open_case(conn, case_id)
        if case["rectified_at"]:
            raise CaseError(f"督办件 {case_id} 已记录整改；补充情况请添加备注")
        stored.set_rectified(conn, case_id, note, now,
                             working_deadline(now, settings["revisit_days"], cal.holidays, cal.workdays))
        stored.add_note(conn, case_id, by, "rectify", f"整改：{note}", now)


def record_revisit(db, case_id: int, result: str, note: str, by: str, now: datetime) -> None:
    """Record the second 回访 after the fix: the citizen's rating of it (追评), or 未接通."""
    result = _call_result(result)
    note = (note or "").strip()[:2000]
    with db.transaction() as conn:
        case = _open_case(conn, case_id)
        if not case["rectified_at"]:
            raise CaseError("请先记录整改情况，再做二次回访")
        stored.set_revisit(conn, case_id, result, note, now, result == NO_ANSWER)
        stored.add_note(conn, case_id, by, "revisit", f"追评：{result}" + (f"；{note}" if note else ""), now)


def close_case(db, case_id: int, reason: str, by: str, now: datetime, code: str = "revisited",
               appeal_accepted: bool = False) -> None:
    """Close the case (办结) the way ``code`` says (rules.CLOSE_CODES); a case closes only with a 回访
    that reached the citizen, or with a stated reason why not."""
    with db.transaction() as conn:
        case = _open_case(conn, case_id)
        reason = check_close(case, code, reason, appeal_accepted)
        stored.set_closed(conn, case_id, STATUS_CLOSED, code, reason, by, now)
        stored.add_note(conn, case_id, by, "close", f"办结：{close_label(code, reason)}", now)


def case_counts(db, now: datetime, counties: Iterable[str] | None = None) -> dict:
    """Totals for a dashboard: {"active": n, "overdue": n, "closed": n}."""
    cases = list_cases(db, now, counties=counties, limit=100000)
    return {"active": sum(c["status"] != STATUS_CLOSED for c in cases),
            "overdue": sum(c["overdue"] for c in cases),
            "closed": sum(c["status"] == STATUS_CLOSED for c in cases)}

