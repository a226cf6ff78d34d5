"""Follow-up cases: working-day deadlines, grouping, case actions (analytics.cases)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from analytics import cases as fu
from manyi.periods import CHINA_TZ

NATIONAL_DAY = [date(2026, 10, d) for d in range(1, 8)]


def cn(y, mo, d, h=10, mi=0):
    """An aware datetime in China time."""
    return datetime(y, mo, d, h, mi, tzinfo=CHINA_TZ)


@pytest.fixture
def db(center_db):
    return center_db


def test_weekday_deadline_counts_following_working_days():
    # Monday 2026-11-23 + 3 working days = Thursday; due at 24:00 Thursday.
    assert fu.add_working_days(date(2026, 11, 23), 3) == date(2026, 11, 26)
    assert fu.working_deadline(cn(2026, 11, 23, 9), 3) == cn(2026, 11, 27, 0)


def test_deadline_skips_weekend():
    # Friday 2026-11-27 + 3 = Wednesday 2026-12-02.
    assert fu.add_working_days(date(2026, 11, 27), 3) == date(2026, 12, 2)
    # A vote on Saturday: counting starts after Saturday: Mon, Tue.
    assert fu.add_working_days(date(2026, 11, 28), 2) == date(2026, 12, 1)


def test_deadline_skips_national_day_holidays():
    # Tuesday 2026-09-29 + 3 working days, 国庆 1..7 October off: 30 Sep, 8 Oct, 9 Oct.
    assert fu.add_working_days(date(2026, 9, 29), 3, NATIONAL_DAY) == date(2026, 10, 9)
    # Without the holidays it would be 2 October.
    assert fu.add_working_days(date(2026, 9, 29), 3) == date(2026, 10, 2)


def test_makeup_workday_on_weekend_counts():
    # 调休: Saturday 2026-10-10 declared a working day.
    assert fu.add_working_days(date(2026, 10, 9), 1, NATIONAL_DAY, [date(2026, 10, 10)]) == date(2026, 10, 10)
    assert fu.add_working_days(date(2026, 10, 9), 1, NATIONAL_DAY) == date(2026, 10, 12)
    assert fu.is_working_day(date(2026, 10, 10), NATIONAL_DAY, [date(2026, 10, 10)])
    assert not fu.is_working_day(date(2026, 10, 5), NATIONAL_DAY)


def test_deadline_uses_china_date_of_a_utc_instant():
    # 2026-11-27 17:00 UTC is Saturday 01:00 in China: counting starts after Saturday.
    opened = datetime(2026, 11, 27, 17, 0, tzinfo=timezone.utc)
    assert fu.working_deadline(opened, 1) == cn(2026, 12, 1, 0)


def test_working_days_between_and_negative_n():
    assert fu.working_days_between(date(2026, 9, 30), date(2026, 10, 9), NATIONAL_DAY) == 2
    assert fu.working_days_between(date(2026, 10, 9), date(2026, 9, 30), NATIONAL_DAY) == -2
    with pytest.raises(ValueError):
        fu.add_working_days(date(2026, 1, 1), -1)


def test_joins_case_within_group_minutes_only():
    first = last = cn(2026, 11, 23, 10)
    assert fu.joins_case(first, last, cn(2026, 11, 23, 10, 30), 30)
    assert not fu.joins_case(first, last, cn(2026, 11, 23, 10, 31), 30)
    assert fu.joins_case(first, last, cn(2026, 11, 23, 9, 30), 30)   # late arrival of an earlier vote


def test_attach_vote_groups_votes_at_one_terminal(db):
    now = cn(2026, 11, 23, 12)
    assert fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 11, 23, 10), now) == "opened"
    assert fu.attach_vote(db, None, "hz-t1", 2, cn(2026, 11, 23, 10, 20), now) == "joined"
    # 20 minutes after the last vote: still the same case (the window slides).
    assert fu.attach_vote(db, None, "hz-t1", 3, cn(2026, 11, 23, 10, 40), now) == "joined"
    assert fu.attach_vote(db, None, "hz-t1", 3, cn(2026, 11, 23, 10, 40), now) == "known"
    # 31 minutes after the last one: a new case.
    assert fu.attach_vote(db, None, "hz-t1", 4, cn(2026, 11, 23, 11, 11), now) == "opened"
    # another terminal never joins.
    assert fu.attach_vote(db, None, "hz-t2", 1, cn(2026, 11, 23, 10, 5), now) == "opened"
    cases = fu.list_cases(db, now)
    assert sorted(c["vote_count"] for c in cases) == [1, 1, 3]


def test_group_minutes_setting_changes_grouping(db):
    fu.set_settings(db, group_minutes=5)
    now = cn(2026, 11, 23, 12)
    assert fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 11, 23, 10), now) == "opened"
    assert fu.attach_vote(db, None, "hz-t1", 2, cn(2026, 11, 23, 10, 6), now) == "opened"
    with pytest.raises(fu.CaseError):
        fu.set_settings(db, group_minutes=-1)
    with pytest.raises(fu.CaseError):
        fu.set_settings(db, deadline_days="three")


def test_closed_case_is_not_joined(db):
    now = cn(2026, 11, 23, 12)
    fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 11, 23, 10), now)
    case_id = fu.list_cases(db, now)[0]["id"]
    fu.close_case(db, case_id, "已回访解释", "admin", now)
    assert fu.attach_vote(db, None, "hz-t1", 2, cn(2026, 11, 23, 10, 5), now) == "opened"


def test_case_deadline_uses_stored_holidays(db):
    fu.set_settings(db, deadline_days=3)
    for day in NATIONAL_DAY:
        fu.set_holiday(db, day, "holiday", "国庆节")
    fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 9, 29, 15), cn(2026, 9, 29, 15))
    case = fu.list_cases(db, cn(2026, 9, 29, 16))[0]
    assert datetime.fromisoformat(case["deadline"]) == cn(2026, 10, 10, 0)
    assert not case["overdue"]
    assert fu.list_cases(db, cn(2026, 10, 10, 0, 1))[0]["overdue"]
    assert fu.list_cases(db, cn(2026, 10, 10, 0, 1), overdue=True)
    assert fu.list_cases(db, cn(2026, 10, 9, 23), overdue=True) == []
    assert fu.delete_holiday(db, "2026-10-01")
    assert len(fu.list_holidays(db)) == 6
    with pytest.raises(fu.CaseError):
        fu.set_holiday(db, "2026/10/01")


def test_case_actions_and_validation(db):
    now = cn(2026, 11, 23, 12)
    fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 11, 23, 10), now)
    cid = fu.list_cases(db, now)[0]["id"]
    with pytest.raises(fu.CaseError):
        fu.assign_case(db, cid, "  ", "admin", now)
    fu.assign_case(db, cid, "张三", "admin", now)
    fu.add_note(db, cid, "已联系窗口负责人", "admin", now)
    with pytest.raises(fu.CaseError):
        fu.record_callback(db, cid, "很好", "", "admin", now)
    fu.record_callback(db, cid, "基本满意", "群众表示理解", "admin", now)
    with pytest.raises(fu.CaseError):
        fu.close_case(db, cid, "", "admin", now)
    fu.close_case(db, cid, "已整改", "admin", now + timedelta(hours=1))
    case = fu.get_case(db, cid, now)
    assert case["status"] == "closed" and case["assignee"] == "张三"
    assert case["callback_result"] == "基本满意" and case["close_reason"] == "已整改"
    assert [n["kind"] for n in case["notes"]] == ["assign", "note", "callback", "close"]
    assert case["votes"][0]["seq"] == 1
    with pytest.raises(fu.CaseError):
        fu.assign_case(db, cid, "李四", "admin", now)
    with pytest.raises(fu.CaseError):
        fu.close_case(db, 999, "x", "admin", now)
    assert fu.get_case(db, 999, now) is None
    assert fu.case_counts(db, now) == {"active": 0, "overdue": 0, "closed": 1}


def test_list_filters(db):
    now = cn(2026, 11, 25, 12)
    fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 11, 23, 10), now)
    fu.attach_vote(db, None, "hz-t2", 1, cn(2026, 11, 24, 10), now)
    second = fu.list_cases(db, now)[0]["id"]
    fu.assign_case(db, second, "王五", "admin", now)
    assert [c["device"] for c in fu.list_cases(db, now, assignee="王")] == ["hz-t2"]
    assert [c["device"] for c in fu.list_cases(db, now, status="open")] == ["hz-t1"]
    assert [c["device"] for c in fu.list_cases(db, now, date_from=date(2026, 11, 24))] == ["hz-t2"]
    assert [c["device"] for c in fu.list_cases(db, now, date_to=date(2026, 11, 23))] == ["hz-t1"]
    # Terminals without a registry location have no county: a county-scoped user sees none.
    assert fu.list_cases(db, now, counties={"371702"}) == []


def test_date_filters_hold_whatever_offset_the_vote_times_carry(db):
    # 23:30 China time on the 23rd is 15:30 UTC: it belongs to the 23rd, not the 24th.
    now = cn(2026, 11, 25, 12)
    fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 11, 23, 23, 30), now)
    fu.attach_vote(db, None, "hz-t2", 1, datetime(2026, 11, 23, 16, 30, tzinfo=timezone.utc), now)  # 00:30 on the 24th
    assert [c["device"] for c in fu.list_cases(db, now, date_from=date(2026, 11, 24))] == ["hz-t2"]
    assert [c["device"] for c in fu.list_cases(db, now, date_to=date(2026, 11, 23))] == ["hz-t1"]
    assert [c["device"] for c in fu.list_cases(db, now)] == ["hz-t2", "hz-t1"]
