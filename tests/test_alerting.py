"""Alert rules: pure evaluation at the thresholds, and evaluate() over a real SQLiteStore."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from analytics import alerts as al
from followup_fixtures import DEV_A1, DEV_A2, DEV_B1, small_registry, vote
from manyi.periods import CHINA_TZ
from manyi.registry import Assignment, Window

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA_TZ)
BURST = al.Rule(1, "burst", "burst", {"n": 3, "minutes": 30})


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def test_burst_fires_at_n_within_t():
    found = al.burst_alerts(BURST, [("w1", at(0)), ("w1", at(10)), ("w1", at(30))])
    assert len(found) == 1 and found[0].n == 3 and found[0].scope_code == "w1"


def test_burst_does_not_fire_below_n_or_beyond_t():
    assert al.burst_alerts(BURST, [("w1", at(0)), ("w1", at(10))]) == []
    assert al.burst_alerts(BURST, [("w1", at(0)), ("w1", at(10)), ("w1", at(31))]) == []
    # three votes, but at different windows
    assert al.burst_alerts(BURST, [("w1", at(0)), ("w2", at(1)), ("w1", at(2))]) == []


def test_burst_counts_votes_after_previous_alert_only():
    votes = [("w1", at(m)) for m in (0, 1, 2, 3)]
    assert len(al.burst_alerts(BURST, votes)) == 1
    assert al.burst_alerts(BURST, votes, {"w1": at(2)}) == []
    assert len(al.burst_alerts(BURST, votes + [("w1", at(4)), ("w1", at(5))], {"w1": at(2)})) == 1


def test_rate_rule_threshold_and_min_votes():
    rule = al.Rule(2, "rate", "low_rate", {"threshold": 0.85, "min_votes": 20, "level": "hall"})
    now = at(60)
    day = date(2026, 11, 23)
    # 17/20 = 85%: not below
    assert al.rate_alerts(rule, {"h": {"satisfied": 15, "basic": 2, "unsatisfied": 3}}, day, now) == []
    # 16/20 = 80%: fires
    (found,) = al.rate_alerts(rule, {"h": {"satisfied": 15, "basic": 1, "unsatisfied": 4}}, day, now)
    assert found.value == 0.8 and found.n == 20
    # 80% with 19 votes: too few
    assert al.rate_alerts(rule, {"h": {"satisfied": 14, "basic": 1, "unsatisfied": 4}}, day, now) == []


def test_validate_params():
    assert al.validate_params("low_rate", {"threshold": "85", "min_votes": "10", "level": "county"})["threshold"] == 0.85
    with pytest.raises(al.RuleError):
        al.validate_params("low_rate", {"threshold": 0.8, "min_votes": 10, "level": "planet"})
    with pytest.raises(al.RuleError):
        al.validate_params("burst", {"n": "x", "minutes": 5})
    with pytest.raises(al.RuleError):
        al.validate_params("nonsense", {})


@pytest.fixture
def env(vote_store, center_db):
    return vote_store, center_db, small_registry()


def only_rule(db, name: str, kind: str, params: dict) -> int:
    """Disable every rule (the seeded defaults too) and add this one."""
    for rule in al.list_rules(db):
        al.save_rule(db, rule_id=rule.id, name=rule.name, kind=rule.kind, params=rule.params, enabled=False)
    return al.save_rule(db, name=name, kind=kind, params=params)


def test_evaluate_raises_each_burst_alert_once(env):
    store, db, reg = env
    store.write([vote(DEV_A1, i, "unsatisfied", at(i)) for i in (1, 2)] + [vote(DEV_A2, 1, "unsatisfied", at(3))])
    assert al.evaluate(store, db, reg, at(5)) == []
    store.write([vote(DEV_A1, 3, "unsatisfied", at(6))])
    new = al.evaluate(store, db, reg, at(7))
    assert len(new) == 1
    alert = al.get_alert(db, new[0])
    assert alert["scope_code"] == "w-371702001-01" and alert["county_code"] == "371702"
    assert "1号窗口" in alert["scope_name"]
    assert al.evaluate(store, db, reg, at(8)) == []
    assert al.evaluate(store, db, reg, at(20)) == []
    assert [a["id"] for a in al.list_alerts(db, counties={"371702"})] == new
    assert al.list_alerts(db, counties={"371721"}) == []
    assert al.acknowledge(db, new[0], "admin", at(9))
    assert not al.acknowledge(db, new[0], "admin", at(9))


def test_evaluate_low_rate_at_county_level(env):
    store, db, reg = env
    only_rule(db, "曹县低于85%", "low_rate", {"threshold": 85, "min_votes": 10, "level": "county"})
    # 8 satisfied + 2 unsatisfied (80%) in 曹县, spread so no burst rule matters
    store.write([vote(DEV_B1, i, "satisfied", at(i)) for i in range(1, 9)]
                + [vote(DEV_B1, 9, "unsatisfied", at(20)), vote(DEV_B1, 10, "unsatisfied", at(200))])
    # 牡丹区: 9 votes, 0% but below min_votes
    store.write([vote(DEV_A1, i, "unsatisfied", at(i * 60)) for i in range(1, 10)])
    new = al.evaluate(store, db, reg, at(400))
    assert len(new) == 1
    alert = al.get_alert(db, new[0])
    assert (alert["scope_level"], alert["scope_code"], alert["scope_name"]) == ("county", "371721", "曹县")
    assert alert["value"] == 0.8
    assert al.evaluate(store, db, reg, at(401)) == []


def test_rule_editing(env):
    _, db, _ = env
    assert len(al.list_rules(db)) == 3
    rid = al.save_rule(db, name="x", kind="burst", params={"n": 5, "minutes": 10})
    assert al.list_rules(db)[-1].params == {"n": 5, "minutes": 10}
    with pytest.raises(al.RuleError):
        al.save_rule(db, name="", kind="burst", params={"n": 5, "minutes": 10})
    with pytest.raises(al.RuleError):
        al.save_rule(db, rule_id=999, name="y", kind="burst", params={"n": 5, "minutes": 10})
    assert al.delete_rule(db, rid) and not al.delete_rule(db, rid)


def test_low_rate_counts_a_terminal_installed_during_the_day(env):
    store, db, reg = env
    only_rule(db, "大厅低于85%", "low_rate", {"threshold": 85, "min_votes": 10, "level": "hall"})
    new_device = "hz-371721001-w09"
    reg.windows["w-371721001-09"] = Window("w-371721001-09", "h-371721001", "9号窗口")
    installed = datetime(2026, 11, 23, 9, 0, tzinfo=CHINA_TZ)       # this morning
    reg.assignments.append(Assignment(new_device, "w-371721001-09", installed, None))
    store.write([vote(new_device, i, "unsatisfied", installed + timedelta(minutes=60 + 7 * i)) for i in range(1, 11)])
    new = al.evaluate(store, db, reg, installed + timedelta(hours=4))
    assert [al.get_alert(db, a)["scope_code"] for a in new] == ["h-371721001"]
