"""The Heze model arithmetic (analytics/model.py): the spec's worked example, limits, flags, ranks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analytics.model import (
    FLAG_DIFFERS, FLAG_NO_BASE, FLAG_NO_VOTES, FLAG_SMALL, Params, channel_score, evaluate, rank_units,
    score_reported, shrink, triangulate,
)
from analytics.model.stats import chi_square_sf, chi_square_test, wilson_interval
from manyi.exc import ConfigError


def worked_example() -> pd.DataFrame:
    """Units A, B, C of shared/design/heze-model.md."""
    return pd.DataFrame({
        "code": ["A", "B", "C"], "name": ["甲", "乙", "丙"],
        "S_T": [480, 10, 150], "B_T": [15, 0, 30], "U_T": [5, 0, 20],
        "S_P": [3, 0, 0], "B_P": [0, 0, 1], "U_P": [0, 0, 1],
        "G": [88.0, 92.0, 90.0],
    })


def run(mode: str) -> pd.DataFrame:
    out = evaluate(worked_example(), worked_example().iloc[:0], Params(mode=mode), mu_T=94.0, mu_P=88.0)
    assert out.y_ref == pytest.approx(91.6)
    return out.counties.set_index("code")


def test_worked_example_absolute_mode_to_the_specs_digits():
    r = run("absolute")
    assert r["x_T"].round(2).tolist() == [97.80, 100.00, 84.00]
    assert r["xs_T"].round(3).tolist() == [97.654, 96.000, 84.909]
    assert r["xs_P"].round(3).tolist() == [90.769, 88.000, 78.333]
    assert r["y"].round(3).tolist() == [94.900, 92.800, 82.279]
    assert r["k"].round(4).tolist() == [0.9490, 0.9280, 0.8228]
    assert r["F"].round(2).tolist() == [83.51, 85.38, 74.05]
    assert not r["k_clipped"].any()


def test_worked_example_relative_mode_to_the_specs_digits_with_c_clipped():
    r = run("relative")
    assert r["k"].round(4).tolist() == [1.0360, 1.0131, 0.9000]
    assert r["F"].round(2).tolist() == [91.17, 93.21, 81.00]
    assert r["k_clipped"].tolist() == [False, False, True]


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_worked_example_b_is_flagged_and_ranked_after_the_others(mode):
    r = run(mode)
    assert r.loc["B", "flags"] == FLAG_SMALL
    assert r.loc["A", "flags"] == "" and r.loc["C", "flags"] == ""
    # B has the highest F in both modes, yet 样本不足 puts it after A and C.
    assert r.loc["B", "F"] == r["F"].max()
    assert r["rank"].tolist() == [1, 3, 2]


def test_shrinkage_with_no_votes_is_the_city_mean():
    assert shrink(0, 0, 0, 20.0, 93.5, Params()) == 93.5


def test_shrinkage_off_with_m_zero_is_the_raw_score_and_n_zero_does_not_divide_by_zero():
    p = Params(m_T=0.0, m_P=0.0)
    assert shrink(480, 15, 5, 0.0, 94.0, p) == pytest.approx(97.8)
    with np.errstate(all="raise"):
        assert shrink(0, 0, 0, 0.0, 94.0, p) == 94.0
    units = worked_example()
    units.loc[1, ["S_T", "S_P"]] = 0  # B: no votes, no phone answers
    r = evaluate(units, units.iloc[:0], p, mu_T=94.0, mu_P=88.0).counties.set_index("code")
    assert r.loc["A", "xs_T"] == pytest.approx(97.8)
    assert r.loc["B", "xs_T"] == 94.0 and r.loc["B", "xs_P"] == 88.0
    assert r.loc["B", "y"] == pytest.approx(0.6 * 94 + 0.4 * 88)


def test_large_m_pulls_everything_to_the_city_mean():
    assert shrink(10, 0, 0, 1e12, 80.0, Params()) == pytest.approx(80.0)


def test_channel_score_weights_are_parameters():
    assert channel_score(1, 1, 1, Params()) == pytest.approx(160 / 3)
    assert channel_score(1, 1, 1, Params(w_S=1, w_B=1, w_U=1)) == pytest.approx(1.0)
    assert math.isnan(channel_score(0, 0, 0, Params()))


def test_flags_no_votes_and_no_base_score_are_shown_not_hidden():
    units = worked_example()
    units.loc[2, ["S_T", "B_T", "U_T"]] = 0  # C switched its terminals off
    units.loc[0, "G"] = np.nan                # A has no base score
    out = evaluate(units, units.iloc[:0], Params(), mu_T=94.0, mu_P=88.0)
    r = out.counties.set_index("code")
    assert r.loc["C", "flags"] == f"{FLAG_SMALL}、{FLAG_NO_VOTES}"
    assert r.loc["C", "xs_T"] == 94.0  # its k comes from the city mean (and its phone answers) only
    assert r.loc["C", "k"] == pytest.approx((0.6 * 94 + 0.4 * (60 + 10 * 88) / 12) / 100)
    assert math.isnan(r.loc["C", "rate_T"]) and math.isnan(r.loc["C", "ci_low"])
    assert r.loc["A", "flags"] == FLAG_NO_BASE
    assert r.loc["A", "k"] == pytest.approx(0.949) and math.isnan(r.loc["A", "F"])
    assert pd.isna(r.loc["A", "rank"])
    assert r["rank"].tolist()[1:] == [1, 2]  # B and C, both 样本不足, ranked among themselves


def test_min_n_is_a_parameter():
    out = evaluate(worked_example(), worked_example().iloc[:0], Params(min_n=5), mu_T=94.0, mu_P=88.0)
    assert (out.counties["flags"] == "").all()
    assert out.counties["rank"].tolist() == [2, 1, 3]


def test_no_phone_survey_means_lambda_zero_and_a_note():
    units = worked_example()
    units[["S_P", "B_P", "U_P"]] = 0
    out = evaluate(units, units.iloc[:0], Params())
    assert out.lam == 0.0
    assert any("λ 取 0" in note for note in out.notes)
    r = out.counties.set_index("code")
    assert (r["y"] == r["xs_T"]).all()
    assert r["k"].tolist() == pytest.approx((r["xs_T"] / 100).tolist())
    assert out.y_ref == out.mu_T
    # with a survey there is no such note
    assert evaluate(worked_example(), worked_example().iloc[:0], Params()).notes == []


def test_city_means_are_pooled_over_all_answers():
    out = evaluate(worked_example(), worked_example().iloc[:0], Params())
    S, B, U = 640, 45, 25
    assert out.mu_T == pytest.approx((100 * S + 60 * B) / (S + B + U))
    assert out.mu_P == pytest.approx((100 * 3 + 60 * 1) / 5)
    assert out.lam == 0.4


def test_townships_are_scored_with_their_county_code():
    t = worked_example().assign(county_code=["X", "X", "Y"])
    out = evaluate(worked_example(), t, Params(), mu_T=94.0, mu_P=88.0)
    assert list(out.townships.columns[:3]) == ["code", "name", "county_code"]
    assert out.townships["F"].round(2).tolist() == [83.51, 85.38, 74.05]


def test_ranks_ties_share_the_better_rank_and_missing_f_has_none():
    F = pd.Series([90.0, 95.0, 90.0, np.nan, 99.0])
    small = pd.Series([False, False, False, False, True])
    assert rank_units(F, small).tolist() == [2, 1, 2, pd.NA, 4]


def test_raw_rate_and_wilson_interval():
    r = run("absolute")
    assert r.loc["A", "rate_T"] == pytest.approx(0.99)
    low, high = wilson_interval(495, 500)
    assert (low, high) == (r.loc["A", "ci_low"], r.loc["A", "ci_high"])
    # Known value: 8/10 → Wilson 95 % (0.4902, 0.9433)
    low, high = wilson_interval(8, 10)
    assert round(low, 4) == 0.4902 and round(high, 4) == 0.9433
    assert wilson_interval(10, 10)[1] == 1.0


def test_halls_and_windows_are_reported_without_coefficient():
    halls = pd.DataFrame({"hall_id": ["h1", "h2"], "name": ["一", "二"], "S_T": [40, 0], "B_T": [5, 0], "U_T": [5, 0],
                          "excluded_T": [2, 0]})
    r = score_reported(halls, Params())
    assert "k" not in r and "F" not in r
    assert r["n_T"].tolist() == [50, 0]
    assert r["x_T"][0] == pytest.approx((4000 + 300) / 50)
    assert r["flags"].tolist() == ["", "样本不足、无评价数据"]
    assert r["excluded_T"].tolist() == [2, 0]


def test_chi_square_tail_is_exact_for_one_and_two_degrees_of_freedom():
    assert chi_square_sf(3.841458820694124, 1) == pytest.approx(0.05, abs=1e-9)
    assert chi_square_sf(5.991464547107979, 2) == pytest.approx(0.05, abs=1e-9)
    # textbook 2×2: [[20, 30], [30, 20]] → chi2 = 4.0
    test = chi_square_test((20, 30, 0), (30, 20, 0))
    assert test.df == 1 and test.statistic == pytest.approx(4.0)
    assert chi_square_test((5, 0, 0), (0, 0, 0)) is None


def test_triangulation_flags_channels_that_differ():
    units = pd.DataFrame({"code": ["same", "differ", "nophone"], "name": ["a", "b", "c"],
                          "S_T": [300, 300, 50], "B_T": [60, 60, 0], "U_T": [40, 40, 0],
                          "S_P": [30, 10, 0], "B_P": [6, 10, 0], "U_P": [4, 20, 0]})
    r = triangulate(units, Params()).set_index("code")
    assert r.loc["same", "flag"] == "" and r.loc["same", "p_value"] == pytest.approx(1.0)
    assert r.loc["differ", "flag"] == FLAG_DIFFERS and r.loc["differ", "p_value"] < 1e-6
    assert r.loc["differ", "diff"] == pytest.approx(r.loc["differ", "x_T"] - r.loc["differ", "x_P"])
    assert r.loc["nophone", "flag"] == "" and math.isnan(r.loc["nophone", "p_value"])
    # alpha is a parameter
    assert triangulate(units, Params(alpha=1e-15)).set_index("code").loc["differ", "flag"] == ""


@pytest.mark.parametrize("bad", [dict(lam=1.5), dict(mode="linear"), dict(m_T=-1), dict(k_min=1.2),
                                 dict(min_n=2.5), dict(w_S=float("nan")), dict(alpha=0)])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ConfigError):
        Params(**bad)


def test_parameter_overrides_from_the_command_line():
    p = Params().with_overrides(["lam=0.5", "mode=relative", "min_n=10"])
    assert (p.lam, p.mode, p.min_n) == (0.5, "relative", 10)
    assert Params.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="lambda"):
        Params().with_overrides(["lambda=0.5"])
    with pytest.raises(ConfigError):
        Params().with_overrides(["min_n=lots"])
