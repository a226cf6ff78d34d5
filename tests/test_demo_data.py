"""manyi.demo_data: reproducible simulated history that goes through the real store and imports."""

from datetime import datetime, timedelta

import pytest

from analytics.db import CenterDB
from collector.stores import FLAG_BURST, open_store
from manyi import demo_data
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
    from analytics.scores import base_scores
    from analytics.survey import survey_counts

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
