"""sync_cases over a real SQLiteStore: cases open from the live feed, idempotently."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from analytics import cases as fu
from followup_fixtures import DEV_A1, DEV_A2, DEV_B1, small_registry, vote
from manyi.periods import CHINA_TZ

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA_TZ)


@pytest.fixture
def store(vote_store):
    return vote_store


@pytest.fixture
def db(center_db):
    return center_db


def test_sync_opens_and_joins_cases_by_window(store, db):
    reg = small_registry()
    store.write([vote(DEV_A1, 1, "unsatisfied", T0), vote(DEV_A1, 2, "satisfied", T0 + timedelta(minutes=1)),
                 vote(DEV_A1, 3, "unsatisfied", T0 + timedelta(minutes=10)),
                 vote(DEV_A2, 1, "unsatisfied", T0 + timedelta(minutes=2)),
                 vote(DEV_B1, 1, "unsatisfied", T0 + timedelta(minutes=3))])
    now = T0 + timedelta(hours=1)
    result = fu.sync_cases(store, db, reg, now)
    assert (result.seen, result.opened, result.joined) == (4, 3, 1)
    cases = {c["window_id"]: c for c in fu.list_cases(db, now)}
    assert cases["w-371702001-01"]["vote_count"] == 2
    assert cases["w-371702001-01"]["county_code"] == "371702"
    assert cases["w-371721001-01"]["county_code"] == "371721"
    assert [c["window_id"] for c in fu.list_cases(db, now, counties={"371721"})] == ["w-371721001-01"]


def test_sync_is_idempotent_and_reads_only_new_votes(store, db):
    reg = small_registry()
    store.write([vote(DEV_A1, 1, "unsatisfied", T0)])
    now = T0 + timedelta(minutes=5)
    assert fu.sync_cases(store, db, reg, now).opened == 1
    again = fu.sync_cases(store, db, reg, now)
    assert (again.seen, again.opened, again.joined) == (0, 0, 0)
    # a duplicate write of the same vote changes nothing in the store nor in the cases
    store.write([vote(DEV_A1, 1, "unsatisfied", T0)])
    store.write([vote(DEV_A1, 2, "unsatisfied", T0 + timedelta(minutes=40)),
                 vote(DEV_A1, 3, "basic", T0 + timedelta(minutes=41))])
    third = fu.sync_cases(store, db, reg, now + timedelta(hours=1))
    assert (third.seen, third.opened, third.joined) == (1, 1, 0)   # 40 min later: a new case
    assert len(fu.list_cases(db, now)) == 2
    # Forgetting the cursor re-reads everything: no vote is attached twice.
    db.execute("DELETE FROM followup_state")
    fourth = fu.sync_cases(store, db, reg, now + timedelta(hours=1))
    assert fourth.opened == 0 and fourth.known == 2
    assert sum(c["vote_count"] for c in fu.list_cases(db, now)) == 2


def test_sync_on_empty_store_then_votes(store, db):
    reg = small_registry()
    assert fu.sync_cases(store, db, reg, T0).seen == 0
    store.write([vote(DEV_B1, 1, "unsatisfied", T0)])
    assert fu.sync_cases(store, db, reg, T0 + timedelta(minutes=1)).opened == 1


def test_sync_pages_through_a_long_feed(store, db):
    reg = small_registry()
    store.write([vote(DEV_A1, 1, "satisfied", T0)])
    fu.sync_cases(store, db, reg, T0)
    # 30 unsatisfied votes two hours apart each -> 30 cases, read in pages of 7
    store.write([vote(DEV_B1, i, "unsatisfied", T0 + timedelta(hours=2 * i)) for i in range(1, 31)])
    result = fu.sync_cases(store, db, reg, T0 + timedelta(days=3), limit=7)
    assert result.opened == 30


def test_unknown_terminal_gets_a_case_without_county(store, db):
    store.write([vote("hz-999999999-w01", 1, "unsatisfied", T0)])
    fu.sync_cases(store, db, small_registry(), T0)
    (case,) = fu.list_cases(db, T0)
    assert case["group_key"] == "device:hz-999999999-w01" and case["county_code"] is None
