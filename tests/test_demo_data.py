"""demo.history: reproducible simulated history that goes through the real store and imports."""

from datetime import datetime, timedelta

import pytest

from analytics.center import CenterDB
from collector.stores import FLAG_BURST, open_store
from demo import history as demo_data
from manyi.periods import CHINA_TZ, Quarter
from manyi.registry import heze_sample


@pytest.fixture(scope="module")
def registry():
    return heze_sample()


@pytest.fixture(scope="module")
def props(registry):
    return demo_data.propensities(registry)


def test_propensities_cover_every_terminal_reproducibly(registry, props):
    assert set(props) == set(registry.devices())
    assert demo_data.propensities(registry) == props
    assert demo_data.propensities(registry, seed=1) != props
    assert all(0.3 <= p <= 0.98 for p in props.values())
    # Counties differ, and a few weak windows give the follow-up and alert pages content.
    assert sum(p < 0.6 for p in props.values()) >= 3


def test_devices_file_is_what_the_simulator_reads(tmp_path, props):
    simulate = pytest.importorskip("device.simulate")
    path = demo_data.write_devices_file(tmp_path / "devices.txt", props)
    assert "模拟数据" in path.read_text().splitlines()[0]
    assert dict(simulate.read_devices(path)) == pytest.approx(props, abs=0.0005)


def test_seeded_votes_are_office_hour_votes_with_contiguous_seqs(tmp_path, props):
    few = dict(sorted(props.items())[:30])
    start = datetime(2026, 10, 5, tzinfo=CHINA_TZ)   # Monday
    end = start + timedelta(days=14)
    with open_store(f"sqlite:///{tmp_path / 'votes.db'}") as store:
        result = demo_data.seed_votes(store, few, start, end, votes_per_day=4.0, batch=100)
        votes = list(store.votes(start, end))
        stats = store.stats()
        assert store.gaps() == []
    assert result.votes == len(votes) == stats["votes"] and stats["duplicates"] == 0
    assert result.votes > 30 * 10 * 2
    for vote in votes:
        local = vote.time.astimezone(CHINA_TZ)
        assert local.weekday() < 5
        minutes = local.hour * 60 + local.minute
        assert 9 * 60 <= minutes < 12 * 60 or 13 * 60 + 30 <= minutes < 17 * 60 + 30, local
    by_device = {}
    for vote in votes:
        by_device.setdefault(vote.device, []).append(vote.seq)
    assert all(sorted(seqs) == list(range(1, len(seqs) + 1)) for seqs in by_device.values())
    assert result.last_seq == {d: max(s) for d, s in by_device.items()}
    assert sum(FLAG_BURST in v.flags for v in votes) == result.burst_votes == 24
    # Same seed, same votes.
    again = list(demo_data.simulated_votes(few, start, end, votes_per_day=4.0))
    assert [(v.device, v.seq, v.rating, v.time) for v in again] == \
           sorted(((v.device, v.seq, v.rating, v.time) for v in votes), key=lambda t: (t[3].date(), t[0], t[1]))


def test_simulated_survey_and_scores_import_cleanly(tmp_path, registry, props):
    from analytics.imports.scores import base_scores
    from analytics.imports.survey import survey_counts

    quarter = Quarter(2026, 3)
    db = CenterDB(tmp_path / "center.db")
    try:
        reports = demo_data.seed_center(db, registry, props, [quarter], now=datetime(2026, 11, 22, tzinfo=CHINA_TZ))
        survey, scores = reports
        # Heze phones 100 random citizens a quarter across the whole city (seed 003).
        assert survey.rejected == [] and survey.rows_read == survey.imported == 100
        assert survey.filename.startswith("模拟数据")
        assert scores.rejected == [] and scores.imported == len(registry.counties) + len(registry.townships)
        counts = survey_counts(db, quarter)
        assert set(counts["level"]) == {"county", "township"}
        assert set(base_scores(db, quarter)["code"]) == set(registry.counties) | set(registry.townships)
        notes = {row[0] for row in db.query("SELECT DISTINCT note FROM survey_answers")}
        assert len(notes) == 1 and notes.pop().startswith("模拟数据")
    finally:
        db.close()


def test_survey_of_the_current_quarter_stays_before_now(registry, props):
    quarter = Quarter(2026, 4)
    text = demo_data.survey_csv(registry, props, quarter, until=datetime(2026, 11, 22, 10, tzinfo=CHINA_TZ)).decode()
    dates = [line.split(",")[0][:10] for line in text.splitlines()[1:]]
    assert len(dates) == 100
    assert min(dates) >= "2026-11-02" and max(dates) <= "2026-11-22"   # the last three weeks before now


def test_history_quarters_end_with_the_current_one():
    now = datetime(2026, 11, 22, 10, tzinfo=CHINA_TZ)
    assert [str(q) for q in demo_data.history_quarters(now, 2)] == ["2026Q2", "2026Q3", "2026Q4"]


def test_finished_quarters_are_published(tmp_path, registry, props):
    from analytics.quarter import published

    few_quarters = [Quarter(2026, 3), Quarter(2026, 4)]
    now = datetime(2026, 11, 22, 10, tzinfo=CHINA_TZ)
    db = CenterDB(tmp_path / "center.db")
    try:
        with open_store(f"sqlite:///{tmp_path / 'votes.db'}") as store:
            demo_data.seed_votes(store, props, Quarter(2026, 3).start, Quarter(2026, 3).end, votes_per_day=0.5)
            demo_data.seed_center(db, registry, props, few_quarters, now=now)
            ids = demo_data.publish_past_quarters(store, registry, db, few_quarters, now=now)
        assert len(ids) == 1
        assert [r["quarter"] for r in published(db)] == ["2026Q3"]
    finally:
        db.close()


# --- simulated follow-up history -------------------------------------------------------------

FOLLOWUP_NOW = datetime(2026, 11, 20, 15, tzinfo=CHINA_TZ)   # a Friday afternoon


def _seeded_followup(tmp_path, registry, props, name="a"):
    """Votes of 30 terminals over six weeks up to today's midnight, then seed_followup; (result, db, cases)."""
    from analytics import cases as fu
    from manyi.periods import local_midnight

    few = dict(sorted(props.items())[:30])
    db = CenterDB(tmp_path / f"center-{name}.db")
    with open_store(f"sqlite:///{tmp_path / f'votes-{name}.db'}") as store:
        demo_data.seed_votes(store, few, FOLLOWUP_NOW - timedelta(days=42),
                             local_midnight(FOLLOWUP_NOW.date()), votes_per_day=4.0)
        result = demo_data.seed_followup(store, db, registry, FOLLOWUP_NOW)
        again = demo_data.seed_followup(store, db, registry, FOLLOWUP_NOW)
        synced = fu.sync_cases(store, db, registry, FOLLOWUP_NOW)
        if name == "appeals":
            result = (demo_data.seed_appeals(store, db, registry, FOLLOWUP_NOW),
                      demo_data.seed_appeals(store, db, registry, FOLLOWUP_NOW))
    cases = [fu.get_case(db, c["id"], FOLLOWUP_NOW) for c in fu.list_cases(db, FOLLOWUP_NOW, limit=100000)]
    return result, again, synced, db, cases


def _state(cases):
    return [(c["device"], c["first_vote_at"], c["status"], c["assignee"], c["callback_result"], c["closed_at"],
             c["close_reason"], [(n["kind"], n["text"], n["created_at"]) for n in c["notes"]]) for c in cases]


def test_seeded_cases_have_a_simulated_follow_up_history(tmp_path, registry, props):
    from analytics import cases as fu

    result, again, synced, db, cases = _seeded_followup(tmp_path, registry, props)
    try:
        assert result.cases == len(cases) > 40
        cal = fu.calendar(db)
        holidays, workdays = cal.holidays, cal.workdays
        today = FOLLOWUP_NOW.date()

        def age(case):
            return fu.working_days_between(datetime.fromisoformat(case["first_vote_at"]).astimezone(CHINA_TZ).date(),
                                           today, holidays, workdays)

        recent = [c for c in cases if age(c) <= 2]
        old = [c for c in cases if age(c) > 2]
        assert recent and old
        # Recent cases (this and the last two working days) are open, at most assigned and called back
        # once, and not overdue.
        assert all(c["status"] != fu.STATUS_CLOSED and not c["overdue"] and not c["rectified_at"] for c in recent)
        assert {n["kind"] for c in recent for n in c["notes"]} == {"assign", "note", "callback"}
        # Most old cases were called back, fixed, called back for the citizen's rating of the fix (追评)
        # and closed, mostly before their deadlines.
        closed = [c for c in old if c["status"] == fu.STATUS_CLOSED]
        assert len(closed) >= 0.8 * len(old)
        assert all(c["callback_result"] in fu.CALLBACK_RESULTS and c["rectified_at"] and c["closed_at"]
                   and c["revisit_result"] in fu.CALLBACK_RESULTS for c in closed)
        assert all((c["close_code"] == "revisited") == fu.outcome(c, FOLLOWUP_NOW)["called_back"] for c in closed)
        results = [c["revisit_result"] for c in closed]
        assert results.count("满意") + results.count("基本满意") > 0.7 * len(results)
        assert "不满意" in results
        late = [c for c in closed if not fu.outcome(c, FOLLOWUP_NOW)["on_time"]]
        assert 0 < len(late) < 0.25 * len(closed) and len(late) == result.closed_late
        # A handful are still open past their deadline.
        overdue = [c for c in cases if c["overdue"]]
        assert 0 < len(overdue) < 0.15 * len(cases) and len(overdue) == result.open_overdue
        assert result.closed == len([c for c in cases if c["status"] == fu.STATUS_CLOSED])
        for case in old:
            times = [n["created_at"] for n in case["notes"]]
            # Actions in order, after the votes, before now, in office hours.
            assert times == sorted(times)
            assert all(case["last_vote_at"] < t < FOLLOWUP_NOW.isoformat() for t in times)
            for t in times:
                local = datetime.fromisoformat(t).astimezone(CHINA_TZ)
                assert local.weekday() < 5 and demo_data.office_time(local) == local
            # Every simulated action is marked simulated.
            for note in case["notes"]:
                assert note["author"] == demo_data.SIMULATED_ACTOR and "模拟数据" in note["author"]
                assert note["kind"] == "assign" or "模拟数据" in note["text"]
            if case["assignee"]:
                assert case["assignee"] in demo_data.SIMULATED_STAFF and "模拟" in case["assignee"]
            if case["status"] == fu.STATUS_CLOSED:
                assert case["close_reason"].startswith(demo_data.SIMULATED_TEXT_PREFIX)
                assert case["closed_by"] == demo_data.SIMULATED_ACTOR
                for key in ("callback_note", "rectify_note", "revisit_note"):
                    assert case[key].startswith(demo_data.SIMULATED_TEXT_PREFIX)
        # Cases were opened when their votes arrived, not at seeding time.
        assert all(c["opened_at"] < FOLLOWUP_NOW.isoformat() and c["opened_at"] >= c["first_vote_at"] for c in old)
        # Seeding again changes nothing; the live sync afterwards finds nothing new.
        assert again.acted == 0 and (again.cases, again.closed, again.open_overdue) == \
               (result.cases, result.closed, result.open_overdue)
        assert synced.opened == synced.joined == 0
        # The audit log is left to real users.
        from analytics.center.accounts import audit_entries
        assert audit_entries(db) == []
    finally:
        db.close()


def test_same_seed_gives_the_same_case_states(tmp_path, registry, props):
    first, _, _, db_a, cases_a = _seeded_followup(tmp_path, registry, props, "a")
    second, _, _, db_b, cases_b = _seeded_followup(tmp_path, registry, props, "b")
    try:
        assert first == second
        assert _state(cases_a) == _state(cases_b)
    finally:
        db_a.close()
        db_b.close()


def test_office_time_moves_to_the_next_opening():
    friday_evening = datetime(2026, 11, 20, 18, tzinfo=CHINA_TZ)
    assert demo_data.office_time(friday_evening) == datetime(2026, 11, 23, 9, tzinfo=CHINA_TZ)
    lunch = datetime(2026, 11, 19, 12, 30, tzinfo=CHINA_TZ)
    assert demo_data.office_time(lunch) == datetime(2026, 11, 19, 13, 30, tzinfo=CHINA_TZ)
    inside = datetime(2026, 11, 19, 10, 15, tzinfo=CHINA_TZ)
    assert demo_data.office_time(inside) == inside


def test_seeded_appeals_are_in_every_state_and_marked_simulated(tmp_path, registry, props):
    from analytics import appeals as ap

    (made, again), _, _, db, _ = _seeded_followup(tmp_path, registry, props, "appeals")
    try:
        assert set(made) == {ap.PENDING, ap.ACCEPTED, ap.REJECTED, ap.WITHDRAWN} and again == {}
        appeals = ap.list_appeals(db)
        assert sorted(a["status"] for a in appeals) == sorted(made)
        assert len({a["target_ref"] for a in appeals}) == 4
        for appeal in appeals:
            assert appeal["reason"].startswith(demo_data.SIMULATED_TEXT_PREFIX)
            assert appeal["filed_by"] in demo_data.SIMULATED_STAFF
        accepted = ap.get_appeal(db, made[ap.ACCEPTED])
        assert accepted["votes"] >= 1 and len(ap.excluded_votes(db)) == accepted["votes"]
    finally:
        db.close()
