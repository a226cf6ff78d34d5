"""One attribution on every page: a terminal moved mid-hour to another county's hall counts at
the hall where it stood at the time of each press (map, drill-down, rankings, feed, alerts,
cases and the quarterly computation alike)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from analytics import alerts, cases
from analytics.model.attribution import attribute, locate_all, places
from analytics.quarter import compute_quarter
from analytics.web.context import get_db, get_store
from manyi.periods import CHINA_TZ
from manyi.registry import Registry, Window
from plugin_web import DEVICE_A, write_votes

OLD_HALL, NEW_HALL = "hall-371702001", "hall-371721001"       # 牡丹区 东城街道 -> 曹县
NEW_WINDOW = "win-371721001-09"
MOVE = datetime(2026, 11, 23, 10, 20, tzinfo=CHINA_TZ)          # not on the hour
NOW = datetime(2026, 11, 23, 11, 30, tzinfo=CHINA_TZ)
BEFORE = [datetime(2026, 11, 23, 9, 10, tzinfo=CHINA_TZ), datetime(2026, 11, 23, 9, 50, tzinfo=CHINA_TZ),
          datetime(2026, 11, 23, 10, 5, tzinfo=CHINA_TZ)]       # satisfied, at the old hall
AFTER = [datetime(2026, 11, 23, 10, 25, tzinfo=CHINA_TZ), datetime(2026, 11, 23, 10, 40, tzinfo=CHINA_TZ),
         datetime(2026, 11, 23, 10, 50, tzinfo=CHINA_TZ)]       # unsatisfied, at the new hall


@pytest.fixture
def moved(heze):
    """The Heze sample with DEVICE_A moved to a new window of 曹县's hall at 10:20."""
    registry = Registry.from_files(heze.to_files())
    registry.windows[NEW_WINDOW] = Window(NEW_WINDOW, NEW_HALL, "9号窗口")
    return registry.reassign(DEVICE_A, NEW_WINDOW, MOVE)


@pytest.fixture
def moved_app(app, moved, clock):
    """The control center on the moved registry, with the six votes in its store, at 11:30."""
    from analytics.web.context import resources

    resources(app).registry = moved
    clock.set(NOW)
    write_votes(get_store(app), [(DEVICE_A, "satisfied", t) for t in BEFORE]
                + [(DEVICE_A, "unsatisfied", t) for t in AFTER])
    return app


def _by(rows, key, value):
    return next(r for r in rows if r[key] == value)


def test_the_model_places_each_vote_by_the_time_of_its_press(moved):
    found = locate_all(places(moved), [(DEVICE_A, t) for t in BEFORE + AFTER])
    assert [p["hall_id"] for p in found] == [OLD_HALL] * 3 + [NEW_HALL] * 3
    rows = pd.DataFrame({"device": [DEVICE_A], "at": pd.Series([pd.Timestamp(datetime(2024, 6, 1, tzinfo=CHINA_TZ))],
                                                                dtype="datetime64[us, UTC]"),
                         "rating": ["basic"], "count": [1], "excluded": [0]})
    attributed, orphans, _ = attribute(rows, places(moved))
    assert attributed.empty and len(orphans) == 1       # before any assignment: no place, reported, not guessed


def test_the_live_map_counts_each_vote_at_its_hall(moved_app, client, auth):
    auth.login("city")
    data = client.get("/api/v1/map?period=today&figure=0").get_json()
    old, new = _by(data["halls"], "id", OLD_HALL), _by(data["halls"], "id", NEW_HALL)
    assert (old["n"], old["satisfied"], new["n"], new["unsatisfied"]) == (3, 3, 3, 3)
    assert _by(data["counties"], "code", "371702")["n"] == 3 and _by(data["counties"], "code", "371721")["n"] == 3


def test_the_drill_down_counts_each_vote_at_its_hall(moved_app, client, auth):
    auth.login("city")
    for hall, want in ((OLD_HALL, {"satisfied": 3, "unsatisfied": 0}), (NEW_HALL, {"satisfied": 0, "unsatisfied": 3})):
        data = client.get(f"/api/v1/drill/hall/{hall}?from=2026-11-23&to=2026-11-23").get_json()
        assert {r: data["totals"][r] for r in want} == want and data["totals"]["n"] == 3, hall
        assert sum(c["satisfied"] + c["unsatisfied"] for c in data["heat"]) == 3
    county = client.get("/api/v1/drill/county/371702?from=2026-11-23&to=2026-11-23").get_json()
    assert county["totals"]["n"] == 3 and _by(county["peers"], "code", "371721")["n"] == 3
    terminal = client.get(f"/api/v1/drill/terminal/{DEVICE_A}?from=2026-11-23&to=2026-11-23").get_json()
    assert terminal["totals"]["n"] == 6                  # the terminal itself has all six


def test_rankings_and_the_quarter_count_each_vote_at_its_hall(moved_app, client, auth, moved):
    auth.login("city")
    rows = client.get("/api/v1/rankings?quarter=2026Q4&sort=n_T&order=desc").get_json()["rows"]
    assert (_by(rows, "code", "371702")["n_T"], _by(rows, "code", "371721")["n_T"]) == (3, 3)
    result = compute_quarter(get_store(moved_app), moved, None, "2026Q4", now=NOW)
    halls = result.halls.set_index("hall_id")
    assert (halls.loc[OLD_HALL, "S_T"], halls.loc[OLD_HALL, "U_T"]) == (3, 0)
    assert (halls.loc[NEW_HALL, "S_T"], halls.loc[NEW_HALL, "U_T"]) == (0, 3)


def test_the_feed_shows_and_scopes_each_vote_by_its_hall(moved_app, client, auth):
    auth.login("county")                                  # 牡丹区: the three votes before the move
    items = client.get("/api/v1/feed?limit=50").get_json()["items"]
    assert [i["rating"] for i in items] == ["satisfied"] * 3 and {i["county_code"] for i in items} == {"371702"}
    auth.logout()
    auth.login("county2")                                 # 曹县: the three after it
    items = client.get("/api/v1/feed?limit=50").get_json()["items"]
    assert [i["rating"] for i in items] == ["unsatisfied"] * 3 and {i["county_code"] for i in items} == {"371721"}


def test_alerts_and_cases_place_each_vote_at_its_hall(moved_app, moved):
    db, store = get_db(moved_app), get_store(moved_app)
    for rule in alerts.list_rules(db):
        alerts.delete_rule(db, rule.id)
    alerts.save_rule(db, name="hall", kind="low_rate", params={"threshold": 0.85, "min_votes": 3, "level": "hall"})
    alerts.save_rule(db, name="burst", kind="burst", params={"n": 3, "minutes": 30})
    alerts.evaluate(store, db, moved, AFTER[-1] + timedelta(minutes=5))   # the burst rule looks back 2 × 30 min
    raised = {(a["kind"], a["scope_code"]) for a in alerts.list_alerts(db)}
    assert raised == {("low_rate", NEW_HALL), ("burst", NEW_WINDOW)}
    cases.sync_cases(store, db, moved, NOW)
    case, = cases.list_cases(db, NOW)
    assert (case["hall_id"], case["county_code"], case["vote_count"]) == (NEW_HALL, "371721", 3)
