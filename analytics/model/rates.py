"""The one satisfaction rate and the one score, over count dictionaries and over frames.

- rate = (满意 + 基本满意) / n;
- score = (w_S·S + w_B·B + w_U·U) / n with the model's weights (:class:`~.heze.Params`),
  the terminal channel score x of docs/model.md.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from .heze import Params
from .stats import satisfaction_rate

RATINGS = ("satisfied", "basic", "unsatisfied")

__all__ = ["RATINGS", "satisfaction_rate", "score", "tally"]


def score(counts: Mapping[str, int], params: Params = Params()) -> float | None:
    """The weighted score (0–100) of counts by rating, None without votes."""
    s, b, u = (counts.get(r, 0) for r in RATINGS)
    n = s + b + u
    return (params.w_S * s + params.w_B * b + params.w_U * u) / n if n else None


def tally(rows: pd.DataFrame, key: str, params: Params = Params()) -> pd.DataFrame:
    """Per ``key`` of count rows (``rating``, ``count``): satisfied, basic, unsatisfied, n, score and rate."""
    if rows.empty:
        return pd.DataFrame(columns=[key, *RATINGS, "n", "score", "rate"])
    table = rows.pivot_table(index=key, columns="rating", values="count", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=list(RATINGS), fill_value=0)
    table["n"] = table[list(RATINGS)].sum(axis=1)
    n = table["n"].where(table["n"] > 0)
    s, b, u = (table[r] for r in RATINGS)
    table["score"] = (params.w_S * s + params.w_B * b + params.w_U * u) / n
    table["rate"] = (s + b) / n
    table.columns.name = None
    return table.reset_index()
