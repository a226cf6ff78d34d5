"""申诉复核: filing, review, and 不予采纳 votes left out of every score, over a real SQLiteStore and
center database (analytics.appeals)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from analytics import alerts as al
from analytics import appeals as ap
from analytics import cases as fu
from analytics.center.accounts import create_user
from analytics.indicators import unit_indicators
from analytics.quarter import compute_quarter, load_published, publish
from followup_fixtures import DEV_A1, DEV_A2, DEV_B1, small_registry, vote
from manyi.periods import CHINA_TZ, Month

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA_TZ)       # Monday
NOW = T0 + timedelta(hours=2)
MUDAN, CAO = "371702", "371721"


def at(minutes):
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def city(vote_store, center_db):
    """Window A1 (牡丹区): 3 不满意 in 20 minutes (one case, one burst alert) and 2 满意; A2: 1 不满意
    flagged as a burst press; B1 (曹县): 1 不满意. Accounts: a city officer and a county officer."""
    registry = small_registry()
    vote_store.write([vote(DEV_A1, 1, "unsatisfied", at(0)), vote(DEV_A1, 2, "unsatisfied", at(10)),
                      vote(DEV_A1, 3, "unsatisfied", at(20)), vote(DEV_A1, 4, "satisfied", at(30)),
                      vote(DEV_A1, 5, "satisfied", at(40)),
                      vote(DEV_A2, 1, "unsatisfied", at(5), flags={"burst"}),
                      vote(DEV_B1, 1, "unsatisfied", at(15))])
    fu.sync_cases(vote_store, center_db, registry, NOW)
    al.evaluate(vote_store, center_db, registry, at(25))        # bursts are looked for in the last hour
    for name, role, county in (("shi", "city", None), ("mudan", "county", MUDAN)):
        create_user(center_db, name, "Passw0rd-long-enough", role, county, method="pbkdf2:sha256:1000")
    return vote_store, center_db, registry


def _case_of(db, device):
    return next(c["id"] for c in fu.list_cases(db, NOW) if c["device"] == device)


def _file(store, db, registry, target, ref, **extra):
    values = dict(target_kind=target, target_ref=str(ref), kind="malicious", reason="同一人连续恶意按键",
                  evidence="窗口录像 10:00-10:20", by="mudan", now=NOW) | extra
    return ap.file_appeal(store, db, registry, **values)


def test_an_accepted_appeal_takes_its_votes_out_of_every_score(city):
    store, db, registry = city
    case_id = _case_of(db, DEV_A1)
    appeal = _file(store, db, registry, "case", case_id)
    got = ap.get_appeal(db, appeal)
    assert (got["status"], got["county_code"], got["votes"]) == (ap.PENDING, MUDAN, 3)
    assert [(v["device"], v["seq"]) for v in got["vote_list"]] == [(DEV_A1, 1), (DEV_A1, 2), (DEV_A1, 3)]
    # pending: nothing is excluded yet
    assert ap.excluded_votes(db) == []
    before = unit_indicators(store, registry, db, "county", T0 - timedelta(hours=1), NOW, now=NOW,
                             availability=False)
    a = before[(before["code"] == MUDAN) & (before["channel"] == "terminal")].iloc[0]
    assert (a["U"], a["S"], a["excluded"], a["appealed"]) == (3, 2, 1, 0)
    # the filer cannot review their own appeal; a rejection needs a note
    with pytest.raises(ap.AppealError, match="自己"):
        ap.review_appeal(db, appeal, ap.ACCEPTED, "", "mudan", NOW)
    with pytest.raises(ap.AppealError, match="复核意见"):
        ap.review_appeal(db, appeal, ap.REJECTED, " ", "shi", NOW)
    ap.review_appeal(db, appeal, ap.ACCEPTED, "录像证实为恶意按键", "shi", NOW)
    with pytest.raises(ap.AppealError, match="不能再复核"):
        ap.review_appeal(db, appeal, ap.REJECTED, "改判", "shi", NOW)
    assert [(v["device"], v["seq"], v["rating"]) for v in ap.excluded_votes(db)] == \
        [(DEV_A1, 1, "unsatisfied"), (DEV_A1, 2, "unsatisfied"), (DEV_A1, 3, "unsatisfied")]
    # The votes are kept in the store untouched, and counted as excluded wherever votes score.
    assert len(list(store.votes(T0 - timedelta(hours=1), NOW, devices=[DEV_A1]))) == 5
    after = unit_indicators(store, registry, db, "county", T0 - timedelta(hours=1), NOW, now=NOW,
                            availability=False)
    a = after[(after["code"] == MUDAN) & (after["channel"] == "terminal")].iloc[0]
    assert (a["U"], a["S"], a["n"], a["excluded"], a["appealed"], a["rate"]) == (0, 2, 2, 4, 3, 1.0)
    b = after[(after["code"] == CAO) & (after["channel"] == "terminal")].iloc[0]
    assert (b["U"], b["appealed"]) == (1, 0)


def test_a_published_quarter_keeps_its_exclusions(city):
    store, db, registry = city
    first = _file(store, db, registry, "case", _case_of(db, DEV_A1))
    ap.review_appeal(db, first, ap.ACCEPTED, "", "shi", NOW)
    result = compute_quarter(store, registry, db, "2026Q4", now=NOW)
    county = result.counties.set_index("code")
    assert (county.loc[MUDAN, "U_T"], county.loc[MUDAN, "excluded_T"]) == (0, 4)
    assert any("申诉复核不予采纳" in note and "#1" in note for note in result.notes)
    result_id = publish(db, result, now=NOW)
    # A later appeal accepted after publication does not change what the published quarter used.
    later = _file(store, db, registry, "vote", f"{DEV_B1}:1", time=at(15), by="shi")
    create_user(db, "shi2", "Passw0rd-long-enough", "city", method="pbkdf2:sha256:1000")
    ap.review_appeal(db, later, ap.ACCEPTED, "", "shi2", NOW)
    stored = load_published(db, result_id)
    assert [(v["appeal_id"], v["device"], v["seq"]) for v in stored.exclusions] == \
        [(first, DEV_A1, 1), (first, DEV_A1, 2), (first, DEV_A1, 3)]
    assert stored.fingerprint() == result.fingerprint()
    # recomputing now uses both appeals
    again = compute_quarter(store, registry, db, "2026Q4", now=NOW)
    assert len(again.exclusions) == 4 and again.counties.set_index("code").loc[CAO, "U_T"] == 0


def test_a_vote_is_in_one_appeal_at_a_time_and_only_unsatisfied_unflagged_votes_count(city):
    store, db, registry = city
    appeal = _file(store, db, registry, "case", _case_of(db, DEV_A1))
    with pytest.raises(ap.AppealError, match="已在申诉中"):
        _file(store, db, registry, "vote", f"{DEV_A1}:2", time=at(10))
    with pytest.raises(ap.AppealError, match="没有可申诉"):
        _file(store, db, registry, "vote", f"{DEV_A1}:4", time=at(30))          # a 满意 vote
    with pytest.raises(ap.AppealError, match="没有可申诉"):
        _file(store, db, registry, "vote", f"{DEV_A2}:1", time=at(5))           # already excluded as misuse
    with pytest.raises(ap.AppealError, match="找不到"):
        _file(store, db, registry, "vote", f"{DEV_A1}:9", time=at(10))
    with pytest.raises(ap.AppealError, match="申诉理由"):
        _file(store, db, registry, "vote", f"{DEV_B1}:1", time=at(15), reason="  ")
    with pytest.raises(ap.AppealError, match="申诉类型"):
        _file(store, db, registry, "vote", f"{DEV_B1}:1", time=at(15), kind="whatever")
    # withdrawn: the votes are free again
    ap.withdraw_appeal(db, appeal, "mudan", NOW)
    with pytest.raises(ap.AppealError, match="不能撤回"):
        ap.withdraw_appeal(db, appeal, "mudan", NOW)
    again = _file(store, db, registry, "vote", f"{DEV_A1}:2", time=at(10))
    assert ap.get_appeal(db, again)["votes"] == 1
    assert [a["status"] for a in ap.list_appeals(db)] == [ap.PENDING, ap.WITHDRAWN]
    assert ap.list_appeals(db, counties={CAO}) == []


def test_appeals_are_filed_within_the_appeal_deadline(city):
    store, db, registry = city
    fu.set_settings(db, appeal_days=2)
    # Monday's votes: the deadline is the end of Wednesday.
    late = T0.replace(hour=0) + timedelta(days=3, minutes=1)
    with pytest.raises(ap.AppealError, match="超过申诉期限"):
        _file(store, db, registry, "case", _case_of(db, DEV_A1), now=late)
    assert _file(store, db, registry, "case", _case_of(db, DEV_A1), now=late - timedelta(minutes=2))


def test_a_burst_alert_appeal_covers_the_windows_unsatisfied_votes_in_its_span(city):
    store, db, registry = city
    burst = next(a for a in al.list_alerts(db) if a["kind"] == "burst" and a["scope_code"] == "w-371702001-01")
    appeal = _file(store, db, registry, "alert", burst["id"])
    assert [(v["device"], v["seq"]) for v in ap.get_appeal(db, appeal)["vote_list"]] == \
        [(DEV_A1, 1), (DEV_A1, 2), (DEV_A1, 3)]
    with pytest.raises(ap.AppealError, match="不存在"):
        _file(store, db, registry, "alert", 999)


def test_only_an_accepted_appeal_lets_a_case_close_as_appeal(city):
    store, db, registry = city
    case_id = _case_of(db, DEV_A1)
    with pytest.raises(fu.CaseError, match="没有已采纳的申诉"):
        fu.close_case(db, case_id, "", "mudan", NOW, code="appeal", appeal_accepted=ap.appeal_accepted_for_case(db, case_id))
    appeal = _file(store, db, registry, "case", case_id)
    assert not ap.appeal_accepted_for_case(db, case_id)
    ap.review_appeal(db, appeal, ap.ACCEPTED, "", "shi", NOW)
    fu.close_case(db, case_id, "", "mudan", NOW, code="appeal", appeal_accepted=ap.appeal_accepted_for_case(db, case_id))
    assert fu.get_case(db, case_id, NOW)["close_label"] == "申诉已采纳"


def test_month_bounds_leave_out_votes_of_other_periods(city):
    store, db, registry = city
    ap.review_appeal(db, _file(store, db, registry, "case", _case_of(db, DEV_A1)), ap.ACCEPTED, "", "shi", NOW)
    october = Month.parse("2026-10")
    assert ap.excluded_votes(db, october.start, october.end) == []
    assert len(ap.excluded_votes(db, T0, T0 + timedelta(minutes=11))) == 2
