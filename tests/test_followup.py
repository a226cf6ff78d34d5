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
    fu.close_case(db, case_id, "群众不愿回访", "admin", now, code="refused")
    assert fu.attach_vote(db, None, "hz-t1", 2, cn(2026, 11, 23, 10, 5), now) == "opened"


def test_deadlines_follow_the_statutory_calendar_and_the_overrides(db):
    fu.set_settings(db, contact_days=1, deadline_days=4)
    # Tuesday 29 September 2026; 国庆 1-7 October are off and Saturday 10 October is a 调休 working
    # day by the State Council's schedule (chinesecalendar), with nothing entered by hand:
    # contact by 30 Sep; fix by 30 Sep, 8 Oct, 9 Oct, 10 Oct.
    fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 9, 29, 15), cn(2026, 9, 29, 15))
    case = fu.list_cases(db, cn(2026, 9, 29, 16))[0]
    assert datetime.fromisoformat(case["contact_deadline"]) == cn(2026, 10, 1, 0)
    assert datetime.fromisoformat(case["deadline"]) == cn(2026, 10, 11, 0)
    assert not case["overdue"]
    late = fu.list_cases(db, cn(2026, 10, 1, 0, 1))[0]
    assert late["overdue_stages"] == ["联系"]
    assert fu.list_cases(db, cn(2026, 10, 11, 0, 1))[0]["overdue_stages"] == ["联系", "整改"]
    assert fu.list_cases(db, cn(2026, 10, 11, 0, 1), overdue=True)
    assert fu.list_cases(db, cn(2026, 9, 30, 23), overdue=True) == []
    # An admin override beats the schedule: 9 October declared a local holiday, 10 October not worked.
    fu.set_holiday(db, "2026-10-09", "holiday", "地方假日")
    fu.set_holiday(db, "2026-10-10", "holiday", "取消调休")
    fu.attach_vote(db, None, "hz-t2", 1, cn(2026, 9, 29, 15), cn(2026, 9, 29, 15))
    case = fu.list_cases(db, cn(2026, 9, 29, 16), county=None)[0]
    assert case["device"] == "hz-t2"
    assert datetime.fromisoformat(case["deadline"]) == cn(2026, 10, 14, 0)     # 30 Sep, 8, 12, 13 Oct
    assert fu.delete_holiday(db, "2026-10-09")
    assert [h["day"] for h in fu.list_holidays(db)] == ["2026-10-10"]
    with pytest.raises(fu.CaseError):
        fu.set_holiday(db, "2026/10/01")


def test_calendar_knows_which_years_it_covers():
    cal = fu.work_calendar([])
    assert cal.covers(2026) and date(2026, 10, 1) in cal.holidays and date(2026, 10, 10) in cal.workdays
    assert date(2026, 2, 16) in cal.holidays                      # 春节
    assert fu.statutory_name(date(2026, 10, 10)) == "国庆节（调休上班）"
    assert fu.statutory_name(date(2026, 11, 24)) == ""
    far = max(cal.covered) + 5
    assert not cal.covers(far)
    # A year without a schedule counts weekdays only.
    assert fu.add_working_days(date(far, 1, 1), 0, cal.holidays, cal.workdays) == date(far, 1, 1)


@pytest.fixture
def staff(db):
    """Accounts: a city officer, two county officers (牡丹区, 曹县), a disabled one and a system admin."""
    from analytics.center.accounts import create_user, set_disabled

    for name, role, county in (("city1", "city", None), ("mudan1", "county", "371702"),
                               ("caoxian1", "county", "371721"), ("gone1", "county", "371702"),
                               ("root", "admin", None)):
        create_user(db, name, "Passw0rd-long-enough", role, county, method="pbkdf2:sha256:1000")
    set_disabled(db, "gone1", True)
    return db


def _located(db, registry, device, seq, at, now):
    fu.attach_vote(db, registry, device, seq, at, now)
    return next(c["id"] for c in fu.list_cases(db, now) if c["device"] == device)


def test_assignee_is_an_active_account_of_the_cases_county(staff):
    from followup_fixtures import DEV_A1, small_registry

    db, now = staff, cn(2026, 11, 23, 12)
    cid = _located(db, small_registry(), DEV_A1, 1, cn(2026, 11, 23, 10), now)     # 牡丹区
    assert fu.assignees(db, "371702") == ["city1", "mudan1"]
    for wrong in ("caoxian1", "gone1", "root", "nobody", "  "):
        with pytest.raises(fu.CaseError):
            fu.assign_case(db, cid, wrong, "city1", now)
    fu.assign_case(db, cid, "mudan1", "city1", now)
    assert fu.get_case(db, cid, now)["assignee"] == "mudan1"
    # A case without a county (unregistered terminal) goes to city staff only.
    fu.attach_vote(db, None, "hz-stray", 1, cn(2026, 11, 23, 10), now)
    assert fu.assignees(db, None) == ["city1"]


def test_a_case_runs_contact_fix_revisit_and_closes_with_the_citizens_rating(staff):
    db = staff
    opened = cn(2026, 11, 23, 10)        # Monday
    fu.attach_vote(db, None, "hz-t1", 1, opened, opened)
    cid = fu.list_cases(db, opened)[0]["id"]
    with pytest.raises(fu.CaseError):
        fu.record_callback(db, cid, "很好", "", "city1", opened)
    with pytest.raises(fu.CaseError):
        fu.record_revisit(db, cid, "满意", "", "city1", opened)               # no fix recorded yet
    # A case cannot be closed without a 回访 that reached the citizen, or a stated reason.
    for code, reason in (("revisited", "已办结"), ("unreachable", ""), ("other", "  "), ("refused", ""),
                         ("appeal", "误评"), ("bogus", "x")):
        with pytest.raises(fu.CaseError):
            fu.close_case(db, cid, reason, "city1", opened, code=code)
    fu.assign_case(db, cid, "city1", "city1", opened)
    fu.add_note(db, cid, "已联系窗口负责人", "city1", opened)
    fu.record_callback(db, cid, "未接通", "", "city1", cn(2026, 11, 23, 14))
    fu.record_callback(db, cid, "不满意", "群众反映等候太久", "city1", cn(2026, 11, 24, 9))
    case = fu.get_case(db, cid, cn(2026, 11, 24, 9))
    assert case["contacted_at"] == cn(2026, 11, 23, 14).astimezone(timezone.utc).isoformat()   # the first call
    assert case["no_answer_calls"] == 1 and case["callback_result"] == "不满意"
    with pytest.raises(fu.CaseError):
        fu.record_rectify(db, cid, " ", "city1", opened)
    fu.record_rectify(db, cid, "增开高峰窗口", "city1", cn(2026, 11, 26, 16))        # Thursday, before Friday's end
    with pytest.raises(fu.CaseError):
        fu.record_rectify(db, cid, "再次整改", "city1", cn(2026, 11, 26, 17))
    case = fu.get_case(db, cid, cn(2026, 11, 26, 17))
    assert [s["stage"] for s in case["stages"]] == ["contact", "fix", "revisit"]
    # The second 回访 is due 2 working days after the fix: end of Monday 30 November.
    assert datetime.fromisoformat(case["revisit_deadline"]) == cn(2026, 12, 1, 0)
    assert fu.get_case(db, cid, cn(2026, 12, 1, 0, 1))["overdue_stages"] == ["二次回访"]
    fu.record_revisit(db, cid, "满意", "群众认可整改", "city1", cn(2026, 11, 27, 10))
    fu.close_case(db, cid, "", "city1", cn(2026, 11, 27, 11))
    case = fu.get_case(db, cid, cn(2026, 11, 27, 12))
    assert case["status"] == "closed" and case["close_code"] == "revisited" and case["close_label"] == "已回访"
    assert case["revisit_result"] == "满意"
    assert [n["kind"] for n in case["notes"]] == ["assign", "note", "callback", "callback", "rectify", "revisit",
                                                  "close"]
    assert fu.outcome(case, cn(2026, 11, 27, 12)) == {"closed": True, "called_back": True, "on_time": True,
                                                      "due": True, "overdue": False}
    with pytest.raises(fu.CaseError):
        fu.assign_case(db, cid, "city1", "city1", opened)
    with pytest.raises(fu.CaseError):
        fu.close_case(db, 999, "x", "city1", opened, code="other")
    assert fu.get_case(db, 999, opened) is None
    assert fu.case_counts(db, opened) == {"active": 0, "overdue": 0, "closed": 1}


def test_unreachable_needs_a_recorded_call_and_counts_as_not_called_back(db):
    opened = cn(2026, 11, 23, 10)
    fu.attach_vote(db, None, "hz-t1", 1, opened, opened)
    cid = fu.list_cases(db, opened)[0]["id"]
    with pytest.raises(fu.CaseError):
        fu.close_case(db, cid, "", "city1", opened, code="unreachable")
    fu.record_callback(db, cid, "未接通", "", "city1", opened)
    fu.record_callback(db, cid, "未接通", "关机", "city1", opened + timedelta(hours=2))
    fu.close_case(db, cid, "三次未接通", "city1", cn(2026, 12, 3, 10), code="unreachable")
    case = fu.get_case(db, cid, cn(2026, 12, 3, 11))
    assert case["close_reason"] == "三次未接通" and case["close_label"] == "无法联系：三次未接通"
    assert case["no_answer_calls"] == 2
    # closed after the fix deadline (end of Thursday 26 November): not on time, not called back
    assert fu.outcome(case, cn(2026, 12, 3, 11)) == {"closed": True, "called_back": False, "on_time": False,
                                                     "due": True, "overdue": False}


def test_list_filters(db):
    now = cn(2026, 11, 25, 12)
    fu.attach_vote(db, None, "hz-t1", 1, cn(2026, 11, 23, 10), now)
    fu.attach_vote(db, None, "hz-t2", 1, cn(2026, 11, 24, 10), now)
    second = fu.list_cases(db, now)[0]["id"]
    from analytics.center.accounts import create_user

    create_user(db, "wangwu", "Passw0rd-long-enough", "city", method="pbkdf2:sha256:1000")
    fu.assign_case(db, second, "wangwu", "admin", now)
    assert [c["device"] for c in fu.list_cases(db, now, assignee="wang")] == ["hz-t2"]
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
