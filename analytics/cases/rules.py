"""不满意督办 rules: working days, when an unsatisfied vote joins a case, deadlines, overdue,
and what a case action accepts. Pure: no database, no clock, no store.

Weekends and an editable holiday list are not working days, 调休 make-up days (a Saturday
or Sunday declared a working day) are. Deadlines are the end (24:00 China time) of the N-th
working day after the day the case was opened; a case opened on a Friday with N=3 is due at
the end of Wednesday. An unsatisfied vote at a window joins the open case of that window when
it falls within ``group_minutes`` of the case's votes.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Iterable

from manyi.exc import ManyiError
from manyi.periods import local_midnight, to_local

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
SETTING_BOUNDS = {"deadline_days": (0, 60), "group_minutes": (0, 1440), "backfill_days": (0, 366)}



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
    return case["status"] != STATUS_CLOSED and now >= datetime.fromisoformat(case["deadline"])


def check_setting(key: str, value) -> int:
    """The setting's value as an int within its bounds; CaseError otherwise."""
    if key not in SETTING_BOUNDS:
        raise CaseError(f"未知设置项 {key!r}")
    low, high = SETTING_BOUNDS[key]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CaseError(f"设置项 {key} 必须是整数，收到 {value!r}") from None
    if not low <= number <= high:
        raise CaseError(f"设置项 {key} 必须在 {low} 到 {high} 之间，收到 {number}")
    return number


def check_holiday(day: date | str, kind: str) -> date:
    """The day as a date, when ``kind`` is 'holiday' or 'workday'; CaseError otherwise."""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day.strip())
        except ValueError:
            raise CaseError(f"日期 {day!r} 格式应为 YYYY-MM-DD") from None
    if kind not in (HOLIDAY, WORKDAY):
        raise CaseError(f"类型 {kind!r} 应为 holiday 或 workday")
    return day


def check_text(text: str | None, what: str, limit: int) -> str:
    """``text`` trimmed, when it has 1..limit characters; CaseError otherwise."""
    text = (text or "").strip()
    if not 1 <= len(text) <= limit:
        raise CaseError(f"{what}不能为空，且不超过 {limit} 个字")
    return text
