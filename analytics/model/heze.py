"""The Heze satisfaction model (docs/model.md; spec: shared/design/heze-model.md).

Pure arithmetic: data frames of per-unit counts and a :class:`Params` in, data frames
out; no I/O, no clock. :mod:`analytics.quarter` gathers the inputs (store counts joined
to the registry, the 12333 survey, the base scores) and stores published results.

For unit u and channel c ∈ {T (terminals), P (12333 phone)}:

1. channel score   x = (w_S·S + w_B·B + w_U·U) / n,  n = S + B + U
2. city means      μ_c = channel score of all the city's answers of the period, pooled
3. shrinkage       x̃ = (n·x + m_c·μ_c) / (n + m_c);  n = 0 → μ_c  (m = 0: no shrinkage)
4. blend           y = (1 − λ)·x̃_T + λ·x̃_P;  no phone survey in the quarter → λ = 0
5. coefficient     absolute: k = y / 100
                   relative: k = clip(1 + β·(y − y_ref)/y_ref, k_min, k_max),
                             y_ref = (1 − λ)·μ_T + λ·μ_P
6. corrected score F = G·k; ranks by F among counties and among townships,
   units flagged 样本不足 after the others, units without G without F and rank.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from manyi.exc import ConfigError

from .stats import Z95, chi_square_test, satisfaction_rates, wilson_interval

FLAG_SMALL = "样本不足"      # n_T < min_n
FLAG_NO_VOTES = "无评价数据"  # n_T == 0
FLAG_NO_BASE = "无基础分"     # G missing
FLAG_DIFFERS = "差异显著"     # triangulation: the channels differ more than chance allows
FLAG_SEP = "、"

COUNT_COLUMNS = ("S_T", "B_T", "U_T", "excluded_T", "S_P", "B_P", "U_P")

# Output columns, in order (analytics/report.py and the web pages rely on these names).
UNIT_COLUMNS = [
    "code", "name", "S_T", "B_T", "U_T", "n_T", "excluded_T", "x_T", "xs_T",
    "S_P", "B_P", "U_P", "n_P", "x_P", "xs_P", "y", "k", "k_clipped", "G", "F", "rank", "flags",
    "rate_T", "ci_low", "ci_high",
]
REPORTED_COLUMNS = ["S_T", "B_T", "U_T", "n_T", "excluded_T", "x_T", "rate_T", "ci_low", "ci_high", "flags"]
# Evaluation rate 评价率 = votes ÷ transactions, where a business system supplies transaction
# counts (registry transactions.csv). ``tx_votes`` are the votes at windows that have such counts,
# so a hall with counts for only some windows is not diluted by the others.
EVALUATION_COLUMNS = ["transactions", "tx_votes", "eval_rate"]
TRIANGULATION_COLUMNS = [
    "code", "name", "S_T", "B_T", "U_T", "n_T", "rate_T", "x_T", "S_P", "B_P", "U_P", "n_P", "rate_P", "x_P",
    "diff", "chi2", "df", "p_value", "low_expected", "flag",
]


@dataclass(frozen=True)
class Params:
    """Every number of the model, with the spec's defaults; a published result records them."""

    w_S: float = 100.0     # weight of 满意
    w_B: float = 60.0      # weight of 基本满意
    w_U: float = 0.0       # weight of 不满意
    m_T: float = 20.0      # shrinkage strength, terminals (pseudo-votes at the city mean)
    m_P: float = 10.0      # shrinkage strength, phone survey
    lam: float = 0.4       # weight λ of the phone channel in the blend
    mode: str = "absolute"  # "absolute" (k = y/100) or "relative"
    beta: float = 1.0      # relative mode: slope
    k_min: float = 0.90    # relative mode: lower clip
    k_max: float = 1.10    # relative mode: upper clip
    min_n: int = 30        # fewer terminal votes than this: 样本不足
    alpha: float = 0.05    # triangulation: flag when p < alpha

    def __post_init__(self):
        problems = []
        for name in ("w_S", "w_B", "w_U", "m_T", "m_P", "lam", "beta", "k_min", "k_max", "alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"{name}={value!r} is not a finite number")
        if problems:
            raise ConfigError("model parameters: " + "; ".join(problems))
        if self.m_T < 0 or self.m_P < 0:
            problems.append("m_T and m_P must be >= 0")
        if not 0.0 <= self.lam <= 1.0:
            problems.append(f"lam={self.lam} must be within [0, 1]")
        if self.mode not in ("absolute", "relative"):
            problems.append(f"mode={self.mode!r} must be 'absolute' or 'relative'")
        if self.beta < 0:
            problems.append(f"beta={self.beta} must be >= 0")
        if self.k_min > self.k_max:
            problems.append(f"k_min={self.k_min} is above k_max={self.k_max}")
        if isinstance(self.min_n, bool) or not isinstance(self.min_n, int) or self.min_n < 0:
            problems.append(f"min_n={self.min_n!r} must be a whole number >= 0")
        if not 0.0 < self.alpha < 1.0:
            problems.append(f"alpha={self.alpha} must be within (0, 1)")
        if problems:
            raise ConfigError("model parameters: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """The parameters as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Params":
        """Rebuild from :meth:`to_dict` output; unknown keys are a ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"model parameters: unknown {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)

    def with_overrides(self, pairs) -> "Params":
        """A copy with ``key=value`` strings applied (e.g. from ``--param lam=0.5``)."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        changes = {}
        for pair in pairs or ():
            key, sep, text = str(pair).partition("=")
            key, text = key.strip(), text.strip()
            if not sep or key not in types:
                raise ConfigError(f"--param {pair!r}: expected key=value with key one of {', '.join(types)}")
            kind = types[key]
            try:
                if kind in ("str", str):
                    changes[key] = text
                elif kind in ("int", int):
                    changes[key] = int(text)
                else:
                    changes[key] = float(text)
            except ValueError:
                raise ConfigError(f"--param {pair!r}: {text!r} is not a valid {kind}") from None
        return dataclasses.replace(self, **changes)


@dataclass
class ModelOutput:
    """What :func:`evaluate` returns: scored counties and townships and the city-level figures."""

    counties: pd.DataFrame
    townships: pd.DataFrame
    mu_T: float
    mu_P: float
    lam: float          # the λ actually used (0 when the quarter has no phone survey)
    y_ref: float
    notes: list[str]


def channel_score(S, B, U, params: Params):
    """x = (w_S·S + w_B·B + w_U·U) / n; NaN where n == 0 (scalars or arrays)."""
    S, B, U = (np.asarray(v, dtype=float) for v in (S, B, U))
    n = S + B + U
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(n > 0, (params.w_S * S + params.w_B * B + params.w_U * U) / n, np.nan)
    return float(x) if x.ndim == 0 else x


def shrink(S, B, U, m: float, mu: float, params: Params):
    """x̃ = (n·x + m·μ)/(n + m), and μ where n + m == 0 (so n = 0 always gives μ)."""
    S, B, U = (np.asarray(v, dtype=float) for v in (S, B, U))
    n = S + B + U
    total = params.w_S * S + params.w_B * B + params.w_U * U  # = n·x
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(n > 0, (total + m * mu) / (n + m), mu)
    return float(xs) if xs.ndim == 0 else xs


def coefficient(y, y_ref: float, params: Params):
    """k from y by ``params.mode``; returns (k, clipped) arrays."""
    y = np.asarray(y, dtype=float)
    if params.mode == "absolute":
        return y / 100.0, np.zeros(y.shape, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = 1.0 + params.beta * (y - y_ref) / y_ref
    k = np.clip(raw, params.k_min, params.k_max)
    clipped = np.isfinite(raw) & (raw != k)
    return k, clipped


def city_means(counties: pd.DataFrame, params: Params) -> tuple[float, float]:
    """(μ_T, μ_P): the channel scores of all the city's answers, pooled over county-level units.

    Every terminal vote and every phone answer belongs to exactly one county-level unit
    (township answers are added to their county), so the county rows hold the whole city.
    """
    sums = counties[["S_T", "B_T", "U_T", "S_P", "B_P", "U_P"]].sum()
    mu_T = channel_score(sums["S_T"], sums["B_T"], sums["U_T"], params)
    mu_P = channel_score(sums["S_P"], sums["B_P"], sums["U_P"], params)
    return mu_T, mu_P


def _prepare(units: pd.DataFrame, with_base: bool = True) -> pd.DataFrame:
    frame = units.copy()
    for column in COUNT_COLUMNS:
        if column not in frame:
            frame[column] = 0
        frame[column] = frame[column].fillna(0).astype("int64")
    if with_base:
        frame["G"] = pd.to_numeric(frame["G"], errors="coerce").astype(float) if "G" in frame else np.nan
    frame["n_T"] = frame["S_T"] + frame["B_T"] + frame["U_T"]
    frame["n_P"] = frame["S_P"] + frame["B_P"] + frame["U_P"]
    return frame


def _rate_columns(frame: pd.DataFrame) -> None:
    n = frame["n_T"].to_numpy(dtype=float)
    ok = frame["S_T"].to_numpy(dtype=float) + frame["B_T"].to_numpy(dtype=float)
    frame["rate_T"] = satisfaction_rates(frame["S_T"], frame["B_T"], frame["U_T"])
    low, high = wilson_interval(ok, n, Z95)
    frame["ci_low"] = low
    frame["ci_high"] = high


def _flags(frame: pd.DataFrame, params: Params, base: bool) -> pd.Series:
    small = frame["n_T"] < params.min_n
    none = frame["n_T"] == 0
    nobase = frame["G"].isna() if base else pd.Series(False, index=frame.index)
    labels = []
    for s, z, g in zip(small, none, nobase):
        parts = [label for on, label in ((s, FLAG_SMALL), (z, FLAG_NO_VOTES), (g, FLAG_NO_BASE)) if on]
        labels.append(FLAG_SEP.join(parts))
    return pd.Series(labels, index=frame.index, dtype="str")


def rank_units(F: pd.Series, small: pd.Series) -> pd.Series:
    """Ranks by F (1 = highest, ties share the better rank); 样本不足 units after the others; no F, no rank."""
    rank = pd.Series(pd.NA, index=F.index, dtype="Int64")
    has = F.notna()
    good = has & ~small
    bad = has & small
    rank[good] = F[good].rank(ascending=False, method="min").astype("int64")
    rank[bad] = F[bad].rank(ascending=False, method="min").astype("int64") + int(good.sum())
    return rank


def score_units(units: pd.DataFrame, params: Params, mu_T: float, mu_P: float, lam: float) -> pd.DataFrame:
    """Score assessed units (counties or townships): x, x̃, y, k, F, rank, flags, rate and interval.

    ``units`` has columns code, name, S_T, B_T, U_T, excluded_T, S_P, B_P, U_P, G (NaN = none)
    and optionally county_code; missing count columns are taken as 0.
    """
    frame = _prepare(units)
    frame["x_T"] = channel_score(frame["S_T"], frame["B_T"], frame["U_T"], params)
    frame["xs_T"] = shrink(frame["S_T"], frame["B_T"], frame["U_T"], params.m_T, mu_T, params)
    frame["x_P"] = channel_score(frame["S_P"], frame["B_P"], frame["U_P"], params)
    if lam > 0:
        frame["xs_P"] = shrink(frame["S_P"], frame["B_P"], frame["U_P"], params.m_P, mu_P, params)
        frame["y"] = (1.0 - lam) * frame["xs_T"] + lam * frame["xs_P"]
    else:
        frame["xs_P"] = (shrink(frame["S_P"], frame["B_P"], frame["U_P"], params.m_P, mu_P, params)
                         if math.isfinite(mu_P) else np.nan)
        frame["y"] = frame["xs_T"].astype(float)
    y_ref = _y_ref(mu_T, mu_P, lam)
    k, clipped = coefficient(frame["y"], y_ref, params)
    frame["k"] = k
    frame["k_clipped"] = clipped
    frame["F"] = frame["G"] * frame["k"]
    frame["rank"] = rank_units(frame["F"], frame["n_T"] < params.min_n)
    frame["flags"] = _flags(frame, params, base=True)
    _rate_columns(frame)
    columns = UNIT_COLUMNS[:2] + (["county_code"] if "county_code" in frame else []) + UNIT_COLUMNS[2:]
    return frame[columns].reset_index(drop=True)


def _y_ref(mu_T: float, mu_P: float, lam: float) -> float:
    return mu_T if lam <= 0 else (1.0 - lam) * mu_T + lam * mu_P


def score_reported(units: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Halls and windows (reported, no coefficient): counts, x_T, raw rate, Wilson interval, flags."""
    frame = _prepare(units, with_base=False)
    frame["x_T"] = channel_score(frame["S_T"], frame["B_T"], frame["U_T"], params)
    _rate_columns(frame)
    small = frame["n_T"] < params.min_n
    none = frame["n_T"] == 0
    frame["flags"] = pd.Series(
        [FLAG_SEP.join(p for on, p in ((s, FLAG_SMALL), (z, FLAG_NO_VOTES)) if on) for s, z in zip(small, none)],
        index=frame.index, dtype="str")
    evaluated = "transactions" in frame
    if evaluated:
        frame["eval_rate"] = evaluation_rate(frame["tx_votes"], frame["transactions"])
    ids = [c for c in frame.columns
           if c not in REPORTED_COLUMNS and c not in COUNT_COLUMNS and c not in EVALUATION_COLUMNS and c != "n_P"]
    return frame[ids + REPORTED_COLUMNS + (EVALUATION_COLUMNS if evaluated else [])].reset_index(drop=True)


def evaluation_rate(votes: pd.Series, transactions: pd.Series) -> pd.Series:
    """评价率 = votes ÷ transactions; NaN where there are no transaction counts (or zero)."""
    tx = pd.to_numeric(transactions, errors="coerce").astype(float)
    return (pd.to_numeric(votes).astype(float) / tx).where(tx > 0)


def evaluate(counties: pd.DataFrame, townships: pd.DataFrame, params: Params | None = None, *,
             mu_T: float | None = None, mu_P: float | None = None,
             phone_survey: bool | None = None) -> ModelOutput:
    """Run the model over county-level units and townships.

    ``mu_T``/``mu_P`` override the pooled city means (the spec's worked example gives
    them). ``phone_survey`` says whether the quarter has any 12333 answers; by default it
    is whether the county rows hold any phone answer. Without one λ is 0 and a note says so.
    """
    params = params or Params()
    notes: list[str] = []
    pooled_T, pooled_P = city_means(_prepare(counties), params)
    mu_T = pooled_T if mu_T is None else float(mu_T)
    mu_P = pooled_P if mu_P is None else float(mu_P)
    if phone_survey is None:
        phone_survey = math.isfinite(pooled_P)
    lam = params.lam
    if not phone_survey:
        if params.lam > 0:
            notes.append(f"本季度没有12333电话回访数据：λ 取 0（参数 λ = {params.lam:g} 未使用），系数仅依据终端评价。")
        lam = 0.0
    if not math.isfinite(mu_T):
        notes.append("本季度全市没有终端评价数据：无法计算终端得分与系数。")
    y_ref = _y_ref(mu_T, mu_P, lam)
    return ModelOutput(
        counties=score_units(counties, params, mu_T, mu_P, lam),
        townships=score_units(townships, params, mu_T, mu_P, lam),
        mu_T=mu_T, mu_P=mu_P, lam=lam, y_ref=y_ref, notes=notes,
    )


def triangulate(counties: pd.DataFrame, params: Params | None = None) -> pd.DataFrame:
    """Terminal vs phone per county: both channels' rates and scores, chi-square test, flag when p < alpha.

    The test is Pearson's chi-square on the 2×3 table (channel × 满意/基本满意/不满意),
    with categories empty in both channels dropped; no test when a channel has no answers.
    """
    params = params or Params()
    frame = _prepare(counties, with_base=False)
    frame["x_T"] = channel_score(frame["S_T"], frame["B_T"], frame["U_T"], params)
    frame["x_P"] = channel_score(frame["S_P"], frame["B_P"], frame["U_P"], params)
    frame["rate_T"] = satisfaction_rates(frame["S_T"], frame["B_T"], frame["U_T"])
    frame["rate_P"] = satisfaction_rates(frame["S_P"], frame["B_P"], frame["U_P"])
    frame["diff"] = frame["x_T"] - frame["x_P"]
    chi2, dfs, ps, lows, flags = [], [], [], [], []
    for row in frame.itertuples(index=False):
        test = chi_square_test((row.S_T, row.B_T, row.U_T), (row.S_P, row.B_P, row.U_P))
        if test is None:
            chi2.append(np.nan), dfs.append(pd.NA), ps.append(np.nan), lows.append(False), flags.append("")
            continue
        chi2.append(test.statistic), dfs.append(test.df), ps.append(test.p_value), lows.append(test.low_expected)
        flags.append(FLAG_DIFFERS if test.p_value < params.alpha else "")
    frame["chi2"] = pd.Series(chi2, index=frame.index, dtype=float)
    frame["df"] = pd.Series(dfs, index=frame.index, dtype="Int64")
    frame["p_value"] = pd.Series(ps, index=frame.index, dtype=float)
    frame["low_expected"] = pd.Series(lows, index=frame.index, dtype=bool)
    frame["flag"] = pd.Series(flags, index=frame.index, dtype="str")
    return frame[TRIANGULATION_COLUMNS].reset_index(drop=True)
