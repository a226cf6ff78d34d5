"""The 好差评 indicators against a hand-computed November in the tiny registry (docs/indicators.md)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import pytest

from analytics import cases
from analytics.indicators import unit_indicators
from analytics.imports.survey import import_survey
from manyi.periods import CHINA_TZ, Month
from manyi.registry import Transaction
from test_quarter import many

NOV = Month(2026, 11)
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=CHINA_TZ)
MUDAN, CAO = "371702", "371721"
A, B = "hz-371702001-w01", "hz-371721101-w01"          # 牡丹区 东城街道 window 1; 曹县 庄寨镇 window 1


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=CHINA_TZ)


@pytest.fixture
def november(vote_store, center_db, tiny_registry):
    """A: 6 满意, 3 基本满意, 1 不满意 and 2 presses of a burst; B: 1 满意, 3 不满意 (one case each day);
    12333: 东城街道 2 满意 + 1 不满意, 曹县 1 基本满意; A's window served 20 citizens; October is left out."""
    vote_store.write(many(A, at(3), {"satisfied": 6, "basic": 3, "unsatisfied": 1})
                     + many(A, at(4), {"satisfied": 2}, flags={"burst"})
                     + many(B, at(5), {"satisfied": 1}) + many(B, at(6), {"unsatisfied": 1})
                     + many(B, at(10), {"unsatisfied": 1}) + many(B, at(24), {"unsatisfied": 1})
                     + many(A, datetime(2026, 10, 31, 23, 30, tzinfo=CHINA_TZ), {"unsatisfied": 5}))  # October
    tiny_registry.transactions = [Transaction("win-371702001-01", date(2026, 11, d), 2) for d in range(1, 11)]
    survey = ("日期,县区,乡镇(街道),评价\n2026-11-02,牡丹区,东城街道,满意\n2026-11-03,牡丹区,东城街道,非常满意\n"
              "2026-11-04,牡丹区,东城街道,不满意\n2026-11-05,曹县,,基本满意\n2026-10-30,曹县,,不满意\n").encode()
    assert import_survey(center_db, tiny_registry, survey, "2026Q4", filename="s.csv").imported == 5
    for vote in vote_store.votes(NOV.start, NOV.end, ratings=["unsatisfied"]):
        cases.attach_vote(center_db, tiny_registry, vote.device, vote.seq, vote.time, vote.time)
    b_cases = sorted(cases.list_cases(center_db, NOW, county=CAO), key=lambda c: c["first_vote_at"])
    # 6 Nov: 回访 and closed on time; 10 Nov: closed late, no 回访; 24 Nov: open, due 27 Nov: overdue on 2 Dec
    cases.record_callback(center_db, b_cases[0]["id"], "满意", "", "admin", at(6, 15))
    cases.close_case(center_db, b_cases[0]["id"], "已整改", "admin", at(7))
    cases.close_case(center_db, b_cases[1]["id"], "已整改，群众未留电话", "admin", at(20), code="other")
    return vote_store, center_db, tiny_registry


def row(table, code, channel="terminal"):
    found = table[(table["code"] == code) & (table["channel"] == channel)]
    assert len(found) == 1, (code, channel)
    return found.iloc[0]


def test_terminal_indicators_of_a_county_by_hand(november):
    store, db, registry = november
    t = unit_indicators(store, registry, db, "county", NOV.start, NOV.end, now=NOW)
    a = row(t, MUDAN)
    assert (a["n"], a["S"], a["B"], a["U"], a["excluded"]) == (10, 6, 3, 1, 2)
    assert a["rate"] == pytest.approx(0.9) and a["rate_S"] == pytest.approx(0.6)
    assert a["rate_B"] == pytest.approx(0.3) and a["rate_U"] == pytest.approx(0.1) == a["bad_rate"]
    assert a["score"] == pytest.approx((100 * 6 + 60 * 3 + 0 * 1) / 10)          # 78.0
    assert (a["transactions"], a["tx_votes"], a["eval_rate"]) == (20, 10, pytest.approx(0.5))
    # its one case (3 Nov, due at the end of 6 Nov) is still open on 2 Dec: overdue, not rectified
    assert (a["cases"], a["overdue"], a["due"], a["rectify_rate"]) == (1, 1, 1, 0.0)
    assert a["called_back"] == 0 and a["callback_rate"] == 0.0


def test_case_indicators_by_hand(november):
    store, db, registry = november
    b = row(unit_indicators(store, registry, db, "county", NOV.start, NOV.end, now=NOW), CAO)
    assert (b["n"], b["S"], b["U"], b["rate"]) == (4, 1, 3, pytest.approx(0.25))
    assert math.isnan(b["eval_rate"])                                  # 曹县 reports no transactions
    assert (b["cases"], b["called_back"], b["callback_rate"]) == (3, 1, pytest.approx(1 / 3))
    # due: the two closed ones and the overdue one; on time: only the first
    assert (b["due"], b["rectified_on_time"], b["rectify_rate"], b["overdue"]) == (3, 1, pytest.approx(1 / 3), 1)


def test_phone_channel_by_hand(november):
    store, db, registry = november
    county = unit_indicators(store, registry, db, "county", NOV.start, NOV.end, now=NOW)
    p = row(county, MUDAN, "phone")                                      # 满意 + 非常满意 + 不满意
    assert (p["n"], p["S"], p["U"], p["rate"]) == (3, 2, 1, pytest.approx(2 / 3))
    assert p["score"] == pytest.approx(200 / 3) and math.isnan(p["cases"])
    assert row(county, CAO, "phone")["B"] == 1                           # the October answer is left out
    town = row(unit_indicators(store, registry, db, "township", NOV.start, NOV.end, now=NOW), "371702001", "phone")
    assert town["n"] == 3


def test_every_unit_appears_and_the_city_sums_them(november):
    store, db, registry = november
    towns = unit_indicators(store, registry, db, "township", NOV.start, NOV.end, now=NOW)
    assert set(towns.loc[towns["channel"] == "terminal", "code"]) == set(registry.townships)
    assert row(towns, "371702100")["n"] == 0 and math.isnan(row(towns, "371702100")["rate"])
    city = row(unit_indicators(store, registry, db, "city", NOV.start, NOV.end, now=NOW), "city")
    assert (city["n"], city["excluded"], city["cases"], city["overdue"]) == (14, 2, 4, 2)
    assert city["score"] == pytest.approx((100 * 7 + 60 * 3) / 14)


def test_a_moved_terminal_counts_where_it_stood(november):
    store, db, registry = november
    registry.retire("hz-371721101-w02", at(4, 0))
    registry.reassign(A, "win-371721101-02", at(4, 0))          # from 4 Nov: A's burst presses belong to 曹县
    t = unit_indicators(store, registry, db, "county", NOV.start, NOV.end, now=NOW)
    assert row(t, MUDAN)["excluded"] == 0 and row(t, CAO)["excluded"] == 2


def test_terminal_availability_in_opening_hours_by_hand(vote_store, center_db, tiny_registry):
    """Monday 2 Nov: halls open 09:00-12:00 and 13:30-17:30, so 7 hours count (09, 10, 11, 13, 14, 15, 16:
    an hour is open when its middle is); 牡丹区 has 6 terminals, 曹县 2."""
    from collector.stores import TerminalStatus

    day, next_day = datetime(2026, 11, 2, tzinfo=CHINA_TZ), datetime(2026, 11, 3, tzinfo=CHINA_TZ)
    for hour, minute in ((9, 5), (10, 59), (13, 0), (18, 0)):          # 18:00 is after closing: not counted
        at = datetime(2026, 11, 2, hour, minute, tzinfo=CHINA_TZ)
        vote_store.write(statuses=[TerminalStatus(A, online=True, last_seen=at, status_at=at)])
    vote_store.write(many(B, datetime(2026, 11, 2, 14, 10, tzinfo=CHINA_TZ), {"satisfied": 1}))
    t = unit_indicators(vote_store, tiny_registry, center_db, "county", day, next_day, now=NOW)
    a, b = row(t, MUDAN), row(t, CAO)
    assert (a["open_hours"], a["heard_hours"], a["availability"]) == (42, 3, pytest.approx(3 / 42))
    assert (b["open_hours"], b["heard_hours"], b["availability"]) == (14, 1, pytest.approx(1 / 14))
    half = unit_indicators(vote_store, tiny_registry, center_db, "county", day, next_day,
                           now=datetime(2026, 11, 2, 12, 0, tzinfo=CHINA_TZ))       # only the morning has passed
    assert (row(half, MUDAN)["open_hours"], row(half, MUDAN)["heard_hours"]) == (18, 2)
    cases.set_holiday(center_db, "2026-11-02", "holiday", "测试")
    closed = row(unit_indicators(vote_store, tiny_registry, center_db, "county", day, next_day, now=NOW), MUDAN)
    assert closed["open_hours"] == 0 and math.isnan(closed["availability"])
    quiet = row(unit_indicators(vote_store, tiny_registry, center_db, "county", next_day, next_day + timedelta(days=1),
                                now=NOW), MUDAN)
    assert math.isnan(quiet["open_hours"]) and math.isnan(quiet["availability"])   # nothing heard: not measured
