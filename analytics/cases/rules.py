"""不满意督办 rules: working days, when an unsatisfied vote joins a case, the three deadlines,
overdue, what closing a case needs, and how a case counts in 回访率 and 按期整改率. Pure: no
database, no clock, no store.

Weekends and statutory holidays (analytics.cases.calendar) are not working days, 调休
make-up days are. Deadlines are the end (24:00 China time) of the N-th working day after the
day of the first vote; a case opened on a Friday with N=3 is due at the end of Wednesday.
A case has three: contact the citizen (``contact_days``), fix (``deadline_days``), and a
second 回访 after the fix (``revisit_days``, counted from the day the fix is recorded).
An unsatisfied vote at a window joins the open case of that window when it falls within
``group_minutes`` of the case's votes.
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
# What a 回访 call can give: the citizen's rating (of the service at first contact, of the fix
# at the second 回访: 追评), or no answer.
REACHED = ("满意", "基本满意", "不满意")
NO_ANSWER = "未接通"
CALLBACK_RESULTS = (*REACHED, NO_ANSWER)
# Why a case is closed (办结). "revisited" needs a 回访 that reached the citizen; "unreachable"
# needs at least one recorded call without answer; "other" needs the reason written out.
CLOSE_CODES = {"revisited": "已回访", "unreachable": "无法联系", "refused": "群众拒绝回访",
               "appeal": "申诉已采纳", "other": "其他"}
HOLIDAY, WORKDAY = "holiday", "workday"

DEFAULT_SETTINGS = {
    "contact_days": 1,         # working days to contact the citizen (first 回访)
    "deadline_days": 3,        # working days to fix (整改) and close the case
    "revisit_days": 2,         # working days after the fix for the second 回访 (追评)
    "group_minutes": 30,       # unsatisfied votes at one window this close together share a case
    "backfill_days": 30,       # first sync: look this far back for unsatisfied votes
    "appeal_days": 5,          # working days after a vote within which a county may appeal it (申诉)
}
SETTING_BOUNDS = {"contact_days": (0, 30), "deadline_days": (0, 60), "revisit_days": (0, 30),
                  "group_minutes": (0, 1440), "backfill_days": (0, 366), "appeal_days": (0, 60)}
SETTING_LABELS = {"contact_days": "联系期限", "deadline_days": "整改期限", "revisit_days": "二次回访期限",
                  "group_minutes": "合并时间", "backfill_days": "回溯天数", "appeal_days": "申诉期限"}



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


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


STAGE_LABELS = {"contact": "联系", "fix": "整改", "revisit": "二次回访"}


def stages(case: dict) -> list[dict]:
    """The case's deadlines in order: [{"stage", "label", "deadline", "done_at"}].

    contact is done by the first recorded 回访 call (answered or not); fix by the recorded 整改
    (or by closing); the second 回访 exists once the fix is recorded and is done by a 追评.
    Cases from before the three deadlines have only the fix deadline."""
    closed = _at(case.get("closed_at"))
    out = []
    if case.get("contact_deadline"):
        out.append({"stage": "contact", "deadline": _at(case["contact_deadline"]),
                    "done_at": _at(case.get("contacted_at")) or closed})
    out.append({"stage": "fix", "deadline": _at(case["deadline"]), "done_at": _at(case.get("rectified_at")) or closed})
    if case.get("revisit_deadline"):
        out.append({"stage": "revisit", "deadline": _at(case["revisit_deadline"]),
                    "done_at": _at(case.get("revisit_at")) or closed})
    for stage in out:
        stage["label"] = STAGE_LABELS[stage["stage"]]
    return out


def overdue_stages(case: dict, now: datetime) -> list[str]:
    """The labels of the stages past their deadline and not done (none for a closed case)."""
    if case["status"] == STATUS_CLOSED:
        return []
    return [s["label"] for s in stages(case) if s["done_at"] is None and now >= s["deadline"]]


def is_overdue(case: dict, now: datetime) -> bool:
    """True when the case is not closed and one of its deadlines has passed undone."""
    return bool(overdue_stages(case, now))


def reached(case: dict) -> bool:
    """True when a 回访 call reached the citizen (first contact or 追评)."""
    return case.get("callback_result") in REACHED or case.get("revisit_result") in REACHED


def fixed_on_time(case: dict) -> bool:
    """True when the fix (or the closing) was recorded by the fix deadline."""
    done = _at(case.get("rectified_at")) or _at(case.get("closed_at"))
    return done is not None and done <= _at(case["deadline"])


def outcome(case: dict, now: datetime) -> dict:
    """How the case counts in the unit's 回访率 and 按期整改率 (analytics.model.indicators)."""
    closed = case["status"] == STATUS_CLOSED
    done = bool(case.get("rectified_at")) or closed
    return {"closed": closed, "called_back": reached(case), "on_time": fixed_on_time(case),
            # due: the fix is recorded, or its deadline has passed; overdue: not done past a deadline
            "due": done or now >= _at(case["deadline"]), "overdue": is_overdue(case, now)}


def check_close(case: dict, code: str, reason: str | None, appeal_accepted: bool = False) -> str:
    """The stated reason (trimmed, may be empty) for closing with ``code``; CaseError when the case
    may not be closed that way."""
    if code not in CLOSE_CODES:
        raise CaseError(f"办结方式应为 {'、'.join(CLOSE_CODES.values())} 之一")
    reason = (reason or "").strip()
    if len(reason) > 500:
        raise CaseError("办结说明不超过 500 个字")
    if code == "revisited" and not reached(case):
        raise CaseError("尚无接通的回访结果：请先记录回访，或选择无法联系、群众拒绝回访等办结方式并说明")
    if code == "unreachable" and not case["no_answer_calls"]:
        raise CaseError("选择“无法联系”前，请先记录至少一次未接通的回访")
    if code == "appeal" and not appeal_accepted:
        raise CaseError("该督办件没有已采纳的申诉")
    if code in ("other", "refused") and not reason:
        raise CaseError(f"选择“{CLOSE_CODES[code]}”时必须写明办结说明")
    return reason


def close_label(code: str | None, reason: str | None) -> str:
    """How a closing reads: 方式：说明 (cases closed before the codes existed show their reason only)."""
    label = CLOSE_CODES.get(code or "", "")
    if label and code != "other":
        return f"{label}：{reason}" if reason else label
    return reason or label


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
