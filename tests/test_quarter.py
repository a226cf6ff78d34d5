"""The quarterly computation over a real SQLiteStore: attribution, boundaries, survey, publishing."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analytics.model import Params
from analytics.quarter import (
    ResultNotFound, compute_quarter, load_published, publish, published, recompute_published,
)
from collector.stores.base import FLAG_BURST, StoredVote
from manyi.periods import CHINA_TZ, Quarter
from manyi.registry import Assignment

Q3 = Quarter(2026, 3)
NOW = datetime(2026, 10, 8, 1, 0, tzinfo=timezone.utc)
_seq = itertools.count(1)


def vote(device: str, at: datetime, rating: str = "satisfied", flags=frozenset()) -> StoredVote:
    """One stored vote (seq unique across the test session)."""
    return StoredVote(device=device, seq=next(_seq), rating=rating, time=at, received_at=at,
                      pressed_at=at.isoformat(), clock_ok=True, flags=frozenset(flags))


def local(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA_TZ)


@pytest.fixture
def store(vote_store):
    return vote_store


def many(device: str, at: datetime, counts: dict[str, int], flags=frozenset()) -> list[StoredVote]:
    out = []
    for rating, n in counts.items():
        out += [vote(device, at + timedelta(minutes=i), rating, flags) for i in range(n)]
    return out


def by(frame: pd.DataFrame, key: str = "code") -> pd.DataFrame:
    return frame.set_index(key)


def test_votes_are_attributed_to_window_hall_township_and_county(store, tiny_registry):
    store.write(many("hz-371702001-w01", local(8, 3), {"satisfied": 30, "basic": 5, "unsatisfied": 5})
                + many("hz-371702001-w02", local(8, 4), {"satisfied": 10})
                + many("hz-371702000-w01", local(9, 1), {"basic": 4})          # county hall: county only
                + many("hz-371721101-w01", local(7, 1, 0, 0), {"unsatisfied": 2}))  # first instant of Q3
    r = compute_quarter(store, tiny_registry, None, Q3, now=NOW)
    w = by(r.windows, "window_id")
    assert w.loc["win-371702001-01", ["S_T", "B_T", "U_T", "n_T"]].tolist() == [30, 5, 5, 40]
    assert w.loc["win-371702001-02", "n_T"] == 10 and w.loc["win-371702100-01", "n_T"] == 0
    h = by(r.halls, "hall_id")
    assert h.loc["hall-371702001", "n_T"] == 50 and h.loc["hall-371702000", "B_T"] == 4
    t = by(r.townships)
    assert t.loc["371702001", ["S_T", "B_T", "U_T"]].tolist() == [40, 5, 5]
    assert t.loc["371702100", "flags"] == "样本不足、无评价数据、无基础分"
    c = by(r.counties)
    assert c.loc["371702", ["S_T", "B_T", "U_T"]].tolist() == [40, 9, 5]
    assert c.loc["371721", "U_T"] == 2
    assert r.input_counts["votes"] == 56 and r.input_counts["unregistered_votes"] == 0
    assert r.mu_T == pytest.approx((100 * 40 + 60 * 9) / 56)
    assert len(r.counties) == 2 and len(r.townships) == 3 and len(r.windows) == 8


def test_quarter_boundaries_are_china_time(store, tiny_registry):
    device = "hz-371702001-w01"
    store.write([vote(device, datetime(2026, 9, 30, 16, 30, tzinfo=timezone.utc), "unsatisfied"),   # 00:30 on 1 Oct
                 vote(device, datetime(2026, 9, 30, 15, 59, 59, tzinfo=timezone.utc), "satisfied"),  # 23:59:59 30 Sep
                 vote(device, datetime(2026, 6, 30, 15, 59, 59, tzinfo=timezone.utc), "basic")])     # still Q2
    q3 = by(compute_quarter(store, tiny_registry, None, Q3, now=NOW).windows, "window_id").loc["win-371702001-01"]
    q4 = by(compute_quarter(store, tiny_registry, None, "2026Q4", now=NOW).windows, "window_id").loc["win-371702001-01"]
    q2 = by(compute_quarter(store, tiny_registry, None, "2026Q2", now=NOW).windows, "window_id").loc["win-371702001-01"]
    assert (q3["S_T"], q3["B_T"], q3["U_T"]) == (1, 0, 0)
    assert (q4["S_T"], q4["B_T"], q4["U_T"]) == (0, 0, 1)
    assert (q2["S_T"], q2["B_T"], q2["U_T"]) == (0, 1, 0)


def test_a_terminal_moved_mid_hour_splits_its_votes_exactly(store, tiny_registry):
    reg = tiny_registry
    device = "hz-371702001-w01"
    move = local(8, 10, 10, 20)  # 10:20 China time, not on the hour
    old = next(a for a in reg.assignments if a.device == device)
    reg.assignments.remove(old)
    reg.assignments += [Assignment(device, old.window_id, old.valid_from, move),
                        Assignment(device, "win-371721101-02", move, None)]
    store.write(many(device, local(8, 10, 10, 0), {"satisfied": 20})      # 10:00-10:19 → old window
                + many(device, local(8, 10, 10, 20), {"unsatisfied": 7})  # 10:20-10:26 → new window
                + many(device, local(8, 3), {"basic": 3})                 # earlier → old window
                + many(device, local(9, 3), {"satisfied": 5}))            # later → new window
    r = compute_quarter(store, reg, None, Q3, now=NOW)
    w = by(r.windows, "window_id")
    assert w.loc["win-371702001-01", ["S_T", "B_T", "U_T"]].tolist() == [20, 3, 0]
    assert w.loc["win-371721101-02", ["S_T", "B_T", "U_T"]].tolist() == [5, 0, 7]
    c = by(r.counties)
    assert c.loc["371721", "n_T"] == 12 and c.loc["371702", "n_T"] == 23
    assert r.input_counts["moved_terminals"] == 1 and r.input_counts["raw_votes_read"] == 27


def test_misuse_votes_are_excluded_and_counted(store, tiny_registry):
    device = "hz-371702100-w02"
    store.write(many(device, local(8, 5), {"satisfied": 12}) + many(device, local(8, 6), {"unsatisfied": 9}, {FLAG_BURST}))
    r = compute_quarter(store, tiny_registry, None, Q3, now=NOW)
    t = by(r.townships).loc["371702100"]
    assert (t["n_T"], t["U_T"], t["excluded_T"]) == (12, 0, 9)
    assert by(r.counties).loc["371702", "excluded_T"] == 9
    assert r.input_counts["excluded"] == 9


def test_votes_of_unregistered_terminals_are_reported_not_scored(store, tiny_registry):
    store.write(many("hz-999999999-w01", local(8, 5), {"satisfied": 4}) + many("hz-371702100-w01", local(8, 5), {"basic": 1}))
    r = compute_quarter(store, tiny_registry, None, Q3, now=NOW)
    assert r.input_counts["unregistered_votes"] == 4
    assert any("hz-999999999-w01" in n and "未登记" in n for n in r.notes)
    assert r.counties["n_T"].sum() == 1


def survey_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["level", "code", "rating", "n"])


def test_township_answers_count_for_township_and_county_county_answers_for_county_only(store, tiny_registry):
    store.write(many("hz-371702001-w01", local(8, 5), {"satisfied": 40}))
    survey = survey_frame([("township", "371702001", "satisfied", 6), ("township", "371702001", "unsatisfied", 1),
                           ("county", "371702", "basic", 3), ("county", "371721", "satisfied", 2),
                           ("township", "379999999", "satisfied", 5)])
    r = compute_quarter(store, tiny_registry, None, Q3, survey=survey, now=NOW)
    t, c = by(r.townships), by(r.counties)
    assert t.loc["371702001", ["S_P", "B_P", "U_P"]].tolist() == [6, 0, 1]
    assert t.loc["371702100", "n_P"] == 0
    assert c.loc["371702", ["S_P", "B_P", "U_P"]].tolist() == [6, 3, 1]
    assert c.loc["371721", ["S_P", "B_P", "U_P"]].tolist() == [2, 0, 0]
    assert r.mu_P == pytest.approx((100 * 8 + 60 * 3) / 12)
    assert r.lam == 0.4
    assert r.input_counts["survey_answers"] == 17 and r.input_counts["survey_unmatched"] == 5
    assert any("379999999" in n for n in r.notes)
    tri = by(r.triangulation)
    assert tri.loc["371702", "n_P"] == 10 and tri.loc["371702", "n_T"] == 40


def test_quarter_without_survey_uses_lambda_zero_and_says_so(store, tiny_registry):
    store.write(many("hz-371702001-w01", local(8, 5), {"satisfied": 40, "basic": 10}))
    r = compute_quarter(store, tiny_registry, None, Q3, survey=survey_frame([]), now=NOW)
    assert r.lam == 0.0 and any("λ 取 0" in n for n in r.notes)
    c = by(r.counties)
    assert (c["y"] == c["xs_T"]).all()


def test_base_scores_give_corrected_scores_and_ranks(store, tiny_registry):
    store.write(many("hz-371702001-w01", local(8, 5), {"satisfied": 40})
                + many("hz-371721101-w01", local(8, 5), {"satisfied": 20, "unsatisfied": 20}))
    scores = pd.DataFrame([("county", "371702", 90.0), ("county", "371721", 95.0), ("township", "371702001", 80.0)],
                          columns=["level", "code", "score"])
    r = compute_quarter(store, tiny_registry, None, Q3, scores=scores, survey=survey_frame([]), now=NOW)
    c = by(r.counties)
    assert c.loc["371702", "F"] == pytest.approx(90.0 * c.loc["371702", "k"])
    assert c["rank"].tolist() == [1, 2]
    t = by(r.townships)
    assert t.loc["371702001", "rank"] == 1 and pd.isna(t.loc["371702100", "rank"])
    assert "无基础分" in t.loc["371721101", "flags"]


def seeded(store, registry):
    store.write(many("hz-371702001-w01", local(8, 5), {"satisfied": 37, "basic": 6, "unsatisfied": 2})
                + many("hz-371702100-w02", local(9, 9), {"satisfied": 11, "basic": 1})
                + many("hz-371721101-w01", local(7, 20), {"satisfied": 25, "unsatisfied": 9}))
    survey = survey_frame([("township", "371702001", "satisfied", 5), ("county", "371721", "basic", 4)])
    scores = pd.DataFrame([("county", "371702", 91.5), ("county", "371721", 88.25)], columns=["level", "code", "score"])
    return dict(survey=survey, scores=scores)


def assert_same_figures(a, b):
    for name in ("counties", "townships", "halls", "windows", "triangulation"):
        assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True, obj=name)
    assert (a.mu_T, a.mu_P, a.lam, a.y_ref) == (b.mu_T, b.mu_P, b.lam, b.y_ref)


def test_published_quarter_loads_and_recomputes_to_the_last_digit(store, tiny_registry, center_db):
    inputs = seeded(store, tiny_registry)
    first = compute_quarter(store, tiny_registry, center_db, Q3, Params(mode="relative"), now=NOW, **inputs)
    result_id = publish(center_db, first)
    loaded = load_published(center_db, result_id)
    assert_same_figures(first, loaded)
    assert loaded.params == first.params and loaded.computed_at == NOW and loaded.version == first.version
    assert loaded.input_counts == first.input_counts and loaded.notes == first.notes
    assert_same_figures(first, recompute_published(center_db, result_id))
    again = compute_quarter(store, tiny_registry, center_db, Q3, Params(mode="relative"), **inputs)
    assert again.fingerprint() == first.fingerprint()
    assert publish(center_db, again) == result_id  # same figures, same params: no second copy
    assert len(published(center_db, Q3)) == 1


def test_parameter_change_makes_a_new_result_and_the_old_one_stays(store, tiny_registry, center_db):
    inputs = seeded(store, tiny_registry)
    old = compute_quarter(store, tiny_registry, center_db, Q3, Params(), now=NOW, **inputs)
    old_id = publish(center_db, old)
    new = compute_quarter(store, tiny_registry, center_db, Q3, Params(lam=0.5), now=NOW, **inputs)
    new_id = publish(center_db, new)
    assert new_id != old_id
    listed = published(center_db, "2026Q3")
    assert [p["id"] for p in listed] == [new_id, old_id]
    assert listed[0]["params"]["lam"] == 0.5 and listed[1]["params"]["lam"] == 0.4
    assert_same_figures(old, load_published(center_db, old_id))
    assert not by(new.counties)["y"].equals(by(old.counties)["y"])
    assert published(center_db, "2026Q4") == []
    with pytest.raises(ResultNotFound):
        load_published(center_db, 999)


def test_survey_and_scores_imported_into_the_center_db_are_used(store, tiny_registry, center_db):
    from analytics.imports.scores import import_scores
    from analytics.imports.survey import import_survey

    store.write(many("hz-371702001-w01", local(8, 5), {"satisfied": 40}))
    survey = ("日期,手机号,县区,乡镇(街道),评价\n"
              "2026-09-20,13800001234,牡丹区,东城街道,非常满意\n"
              "2026-09-20,13800001235,牡丹区,东城街道,不满意\n"
              "2026-09-21,13800001236,曹县,,基本满意\n"
              "2026-09-21,13800001237,曹县,,说不清\n")
    report = import_survey(center_db, tiny_registry, survey.encode("utf-8"), Q3, filename="s.csv")
    assert report.imported == 4, report.summary()
    import_scores(center_db, tiny_registry, "县区,乡镇(街道),综合考核得分\n牡丹区,,92.5\n牡丹区,东城街道,88\n".encode(),
                  Q3, filename="g.csv")
    r = compute_quarter(store, tiny_registry, center_db, Q3, now=NOW)
    c, t = by(r.counties), by(r.townships)
    assert c.loc["371702", ["S_P", "B_P", "U_P"]].tolist() == [1, 0, 1]
    assert c.loc["371721", ["S_P", "B_P", "U_P"]].tolist() == [0, 1, 0]  # 说不清 is not an answer
    assert t.loc["371702001", ["S_P", "U_P"]].tolist() == [1, 1]
    assert c.loc["371702", "G"] == 92.5 and t.loc["371702001", "G"] == 88.0
    assert c.loc["371702", "F"] == pytest.approx(92.5 * c.loc["371702", "k"])
    assert r.input_counts["survey_answers"] == 3 and r.lam == 0.4
