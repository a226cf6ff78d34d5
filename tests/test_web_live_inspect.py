"""Pure parts of the live pages: terminal inspection (analytics.inspect) and the map builder (analytics.output.map_chart)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pandas as pd
import pytest

from analytics.output.map_chart import OSM_ATTRIBUTION, county_map
from analytics.inspect import (InspectParams, find_bursts, find_count_patterns, is_online, is_silent,
                               terminal_rows)
from collector.stores.base import CountRow, Gap, TerminalStatus
from manyi.periods import CHINA_TZ
from manyi.registry import COUNTIES_GEOJSON

MONDAY_11 = datetime(2026, 11, 23, 11, 0, tzinfo=CHINA_TZ)


def vote(device, rating, moment, flags=frozenset()):
    return SimpleNamespace(device=device, rating=rating, time=moment, flags=frozenset(flags))


def day_rows(device, days, per_day, start=datetime(2026, 11, 2, tzinfo=CHINA_TZ)):
    """CountRows for ``days`` days; per_day maps rating -> count (kept)."""
    return [CountRow(device, start + timedelta(days=d), rating, n) for d in range(days)
            for rating, n in per_day.items()]


# --- inspect -------------------------------------------------------------------------------

def test_the_collectors_burst_flags_are_shown_with_when_each_run_began():
    """The page judges no burst itself: it shows the votes the collector flagged (its one rule)."""
    t0 = MONDAY_11
    flagged = [vote("t1", "satisfied", t0 + timedelta(seconds=5 * i), {"burst"}) for i in range(6)]
    hammered_but_unflagged = [vote("t2", "satisfied", t0 + timedelta(seconds=i)) for i in range(8)]
    findings = find_bursts(flagged + hammered_but_unflagged)
    assert [(f.device, f.pattern) for f in findings] == [("t1", "burst")]
    assert "6 次" in findings[0].detail and "满意" in findings[0].detail and "11:00:00" in findings[0].detail


def test_the_terminals_page_and_the_collector_share_one_burst_rule():
    from collector.config import CollectorSettings
    from collector.validate import BurstRule

    rule = CollectorSettings()
    assert (rule.burst_max_votes, rule.burst_window_seconds) == (BurstRule().max_votes, BurstRule().window_seconds)
    assert not any("burst" in name for name in InspectParams.__dataclass_fields__)


def test_busy_terminal_without_a_single_negative_is_flagged():
    clean = day_rows("busy", 6, {"satisfied": 35, "basic": 5})
    honest = day_rows("honest", 6, {"satisfied": 35, "basic": 5, "unsatisfied": 1})
    quiet = day_rows("quiet", 6, {"satisfied": 10})
    patterns = {(f.device, f.pattern) for f in find_count_patterns(clean + honest + quiet)}
    assert ("busy", "no_negative") in patterns
    assert not any(d == "honest" and p == "no_negative" for d, p in patterns)
    assert not any(d == "quiet" and p == "no_negative" for d, p in patterns)


def test_key_never_pressed_needs_enough_votes():
    rows = day_rows("stuck", 5, {"satisfied": 20, "basic": 3})        # 115 votes, no 不满意 ever
    few = day_rows("new", 2, {"satisfied": 20})                        # 40 votes
    findings = [f for f in find_count_patterns(rows + few) if f.pattern == "key_never_pressed"]
    assert [f.device for f in findings] == ["stuck"]
    assert "不满意" in findings[0].detail and "基本满意" not in findings[0].detail


def test_votes_excluded_by_the_collector_are_reported_as_bursts():
    rows = [CountRow("t1", MONDAY_11, "satisfied", 3, excluded=7)]
    [finding] = find_count_patterns(rows)
    assert (finding.pattern, finding.label) == ("burst", "同一按键连续快速按压")
    assert "7" in finding.detail


def status(online=True, last_seen=MONDAY_11, last_vote_at=None):
    return TerminalStatus("t1", online=online, last_seen=last_seen, last_vote_at=last_vote_at)


def test_online_needs_a_recent_online_status():
    assert is_online(status(), MONDAY_11)
    assert not is_online(status(online=False), MONDAY_11)
    assert not is_online(status(online=None), MONDAY_11)
    assert not is_online(status(last_seen=MONDAY_11 - timedelta(minutes=11)), MONDAY_11)
    assert is_online(status(last_seen=MONDAY_11 - timedelta(minutes=11)), MONDAY_11, InspectParams(offline_minutes=20))


def test_silent_only_when_online_and_open_for_the_whole_quiet_time(heze):
    hall = next(iter(heze.halls.values()))                           # mon-fri 09:00-12:00, 13:30-17:30
    hour_ago = MONDAY_11 - timedelta(minutes=61)
    assert is_silent(status(last_vote_at=hour_ago), hall, MONDAY_11)
    assert is_silent(status(last_vote_at=None), hall, MONDAY_11)
    assert not is_silent(status(last_vote_at=MONDAY_11 - timedelta(minutes=5)), hall, MONDAY_11)
    assert not is_silent(status(online=False, last_vote_at=hour_ago), hall, MONDAY_11)
    opening = datetime(2026, 11, 23, 9, 30, tzinfo=CHINA_TZ)          # opened 30 min ago
    assert not is_silent(status(last_seen=opening, last_vote_at=hour_ago), hall, opening)
    sunday = datetime(2026, 11, 22, 11, 0, tzinfo=CHINA_TZ)
    assert not is_silent(status(last_seen=sunday, last_vote_at=hour_ago), hall, sunday)
    assert is_silent(status(last_vote_at=MONDAY_11 - timedelta(minutes=20)), hall, MONDAY_11,
                     InspectParams(silent_minutes=15))


def test_terminal_rows_join_registry_status_and_gaps(heze):
    device = "hz-371702001-w01"
    st = TerminalStatus(device, online=True, last_seen=MONDAY_11, firmware="1.0", outbox_depth=4,
                        reported_last_seq=12, max_seq=10, missing=3, vote_count=7, clock_ok=False,
                        last_vote_at=MONDAY_11.astimezone(timezone.utc))
    rows = terminal_rows([st], [Gap(device, 3, 4), Gap(device, 8, 8)], heze, MONDAY_11,
                         devices=[device, "hz-371721001-w01"])
    row = next(r for r in rows if r["device"] == device)
    assert row["gaps"] == ["3–4", "8"] and row["missing"] == 3
    assert row["county_name"] == "牡丹区" and row["hall_name"] and row["window_name"]
    assert row["last_vote_at"] == "2026-11-23T11:00:00+08:00"
    assert (row["outbox_depth"], row["reported_last_seq"], row["clock_ok"], row["firmware"]) == (4, 12, False, "1.0")
    other = next(r for r in rows if r["device"] == "hz-371721001-w01")
    assert not other["known"] and not other["online"] and other["county_code"] == "371721"


# --- charts ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def geojson():
    return json.loads(open(COUNTIES_GEOJSON, encoding="utf-8").read())


def test_county_map_colours_counties_with_votes_and_greys_the_rest(geojson):
    counties = pd.DataFrame({"code": ["371702", "371721", "371723", "371771"], "name": ["牡丹区", "曹县", "成武县", "经开区"],
                             "n": [10, 4, 0, 5], "score": [88.0, 45.0, float("nan"), 90.0],
                             "rate": [0.9, 0.5, float("nan"), 1.0]})
    fig = county_map(counties, geojson)
    traces = {t.get("name"): t for t in fig["data"]}
    assert traces["满意度"]["locations"] == ["371702", "371721"]        # the zone has no polygon
    assert traces["满意度"]["z"] == [88.0, 45.0]
    assert traces["无数据"]["locations"] == ["371723"]
    assert fig["layout"]["geo"]["fitbounds"] == "geojson" and fig["layout"]["geo"]["visible"] is False
    assert fig["layout"]["annotations"][0]["text"] == OSM_ATTRIBUTION
    assert "mapbox" not in json.dumps(fig)


def test_county_map_marks_halls_offline_and_escapes_names(geojson):
    counties = pd.DataFrame({"code": ["371702"], "name": ["<b>牡丹区</b>"], "n": [1], "score": [100.0], "rate": [1.0]})
    halls = pd.DataFrame({"id": ["h1", "h2", "h3", "h4"], "name": ["<img src=x onerror=alert(1)>", "乙", "丙", "丁"],
                          "lon": [115.4, 115.5, 115.6, None], "lat": [35.2, 35.3, 35.1, None],
                          "n": [5, 0, 3, 2], "score": [90.0, float("nan"), 70.0, 80.0],
                          "offline": [False, False, True, False], "approximate": [True, False, False, False]})
    fig = county_map(counties, geojson, halls)
    markers = {t["name"]: t for t in fig["data"] if t["type"] == "scattergeo"}
    assert markers["服务大厅"]["lon"] == [115.4] and markers["服务大厅"]["marker"]["color"] == [90.0]
    assert markers["暂无评价"]["lon"] == [115.5]
    assert markers["有终端离线"]["marker"]["symbol"] == "x" and markers["有终端离线"]["lon"] == [115.6]
    text = json.dumps(fig, ensure_ascii=False)
    assert "<img" not in text and "&lt;img src=x" in text and "&lt;b&gt;牡丹区" in text
    assert "位置为近似" in json.dumps(markers["服务大厅"]["customdata"], ensure_ascii=False)
