"""Small statistics for the quarterly model, in pure math (scipy is not a dependency).

- :func:`satisfaction_rate`: (满意 + 基本满意) / n of one set of counts.
- :func:`wilson_interval`: the Wilson score interval of a proportion (vectorised).
- :func:`chi_square_sf`: the exact upper tail of the chi-square distribution for 1 and 2
  degrees of freedom (closed forms: ``erfc(sqrt(x/2))`` and ``exp(-x/2)``), which is all
  a 2×2 or 3×2 contingency table needs.
- :func:`chi_square_test`: Pearson's chi-square test of homogeneity for a 2-row table
  (terminal vs phone × 满意/基本满意/不满意), used for triangulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def satisfaction_rates(S, B, U):
    """The satisfaction rate (满意 + 基本满意) / n, n = S + B + U; NaN where n == 0 (scalars or arrays).

    The one definition of the rate: every page, report and alert uses it (or
    :func:`satisfaction_rate` on a dict of counts)."""
    S, B, U = (np.asarray(v, dtype=float) for v in (S, B, U))
    n = S + B + U
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(n > 0, (S + B) / n, np.nan)
    return float(rate) if rate.ndim == 0 else rate


def satisfaction_rate(counts: Mapping[str, int]) -> float | None:
    """(满意 + 基本满意) / n of counts by rating ({"satisfied": n, "basic": n, "unsatisfied": n}), None without votes."""
    rate = satisfaction_rates(counts.get("satisfied", 0), counts.get("basic", 0), counts.get("unsatisfied", 0))
    return None if math.isnan(rate) else rate


def wilson_interval(successes, n, z: float = Z95):
    """Wilson score interval (low, high) of successes/n; NaN where n == 0. Accepts scalars or arrays."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        z2 = z * z
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2.0 * n)) / denom
        half = (z / denom) * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
        # The bounds are exactly 0 (k = 0) and 1 (k = n); avoid rounding to 0.9999999999999999.
        low = np.where(n > 0, np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0)), np.nan)
        high = np.where(n > 0, np.where(k >= n, 1.0, np.clip(centre + half, 0.0, 1.0)), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def chi_square_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable with ``df`` in (1, 2) degrees of freedom (exact)."""
    if df == 1:
        return math.erfc(math.sqrt(max(x, 0.0) / 2.0))
    if df == 2:
        return math.exp(-max(x, 0.0) / 2.0)
    raise ValueError(f"chi_square_sf: only 1 or 2 degrees of freedom are supported, not {df}")


@dataclass(frozen=True)
class ChiSquare:
    """Result of :func:`chi_square_test`."""

    statistic: float
    df: int
    p_value: float
    low_expected: bool  # some expected count < 5: the approximation is rough


def chi_square_test(row_a: Sequence[float], row_b: Sequence[float]) -> ChiSquare | None:
    """Pearson chi-square test that two rows of category counts come from one distribution.

    Categories empty in both rows are dropped (so a 3×2 table without any 不满意 becomes
    2×2 with 1 degree of freedom). Returns None when either row is empty.
    """
    a = [float(v) for v in row_a]
    b = [float(v) for v in row_b]
    na, nb = sum(a), sum(b)
    if na <= 0 or nb <= 0:
        return None
    cols = [(x, y) for x, y in zip(a, b) if x + y > 0]
    df = len(cols) - 1
    if df <= 0:
        return ChiSquare(0.0, 0, 1.0, False)
    total = na + nb
    stat = 0.0
    low = False
    for x, y in cols:
        col = x + y
        for observed, row_total in ((x, na), (y, nb)):
            expected = row_total * col / total
            low = low or expected < 5
            stat += (observed - expected) ** 2 / expected
    return ChiSquare(stat, df, chi_square_sf(stat, df), low)
