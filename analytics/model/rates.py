"""The one satisfaction rate and the one score, over count dictionaries and over frames.

- rate = (满意 + 基本满意) / n;
- score = (w_S·S + w_B·B + w_U·U) / n with the model's weights (:class:`~.heze.Params`),
  the terminal channel score x of docs/model.md.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from .heze import Params, channel_score
from .stats import satisfaction_rate, satisfaction_rates

RATINGS = ("satisfied", "basic", "unsatisfied")

__all__ = ["RATINGS", "counts_by", "satisfaction_rate", "satisfaction_rates", "score", "tally"]


def score(counts: Mapping[str, int], params: Params = Params()) -> float | None:
    """The weighted score (0–100) of counts by rating, None without votes."""
    x = channel_score(*(counts.get(r, 0) for r in RATINGS), params)
    return None if x != x else x


def counts_by(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """Count rows (``rating``, ``count``, ``excluded``) summed per ``key``: key, satisfied, basic,
    unsatisfied (the scored votes) and excluded, as integers."""
    wide = rows.pivot_table(index=key, columns="rating", values="count", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=list(RATINGS), fill_value=0)
    wide["excluded"] = rows.groupby(key)["excluded"].sum()
    wide = wide.fillna(0).astype("int64").reset_index()
    wide.columns.name = None
    return wide


def tally(rows: pd.DataFrame, key: str, params: Params = Params()) -> pd.DataFrame:
    """Per ``key`` of count rows (``rating``, ``count``): satisfied, basic, unsatisfied, n, score and rate."""
    if rows.empty:
        return pd.DataFrame(columns=[key, *RATINGS, "n", "score", "rate"])
    table = counts_by(rows, key).drop(columns=["excluded"])
    table["n"] = table[list(RATINGS)].sum(axis=1)
    s, b, u = (table[r] for r in RATINGS)
    table["score"] = channel_score(s, b, u, params)
    table["rate"] = satisfaction_rates(s, b, u)
    return table
