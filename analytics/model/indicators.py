"""The 好差评 indicators of a unit and period, pure: frames in, one frame out.

Every page, API and document takes its indicators from :func:`indicators` (definitions in
docs/indicators.md). Inputs, already attributed to units:

- ``votes``: per unit (``code``) and channel: ``S``, ``B``, ``U`` (scored ratings),
  ``excluded`` (kept but not scored: misuse such as bursts and test presses, and votes 不予采纳
  by an accepted appeal) and, for terminals, ``appealed`` (those 不予采纳);
- ``transactions``: per unit, ``transactions`` served at windows that report them and
  ``tx_votes``, the scored votes at those windows (so a unit where only some windows report
  is not diluted);
- ``availability``: per unit, ``open_hours`` (terminal-hours in opening hours) and
  ``heard_hours`` (those in which the terminal was heard); None when it was not measured;
- ``cases``: one row per follow-up case opened in the period with its unit ``code`` and
  its :func:`analytics.cases.rules.outcome`: ``closed``, ``called_back`` (a 回访 reached the
  citizen), ``on_time`` (fixed by the fix deadline), ``due`` (fixed, or past the fix
  deadline) and ``overdue`` (open past one of its deadlines at the time of the report).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .heze import Params, channel_score
from .stats import satisfaction_rates

CHANNELS = {"terminal": "评价器", "phone": "12333电话回访"}
COLUMNS = ["code", "channel", "n", "excluded", "appealed", "S", "B", "U", "rate", "rate_S", "rate_B", "rate_U", "score",
           "bad_rate", "transactions", "tx_votes", "eval_rate", "cases", "called_back", "callback_rate",
           "rectified_on_time", "due", "rectify_rate", "overdue", "open_hours", "heard_hours", "availability"]
LABELS = {
    "n": "评价数", "excluded": "排除（误按、测试、申诉采纳等，不计分）", "appealed": "其中申诉采纳（不予采纳）", "S": "满意", "B": "基本满意", "U": "不满意",
    "rate": "满意度", "rate_S": "满意率", "rate_B": "基本满意率", "rate_U": "不满意率", "score": "综合得分",
    "bad_rate": "差评率", "transactions": "办件量", "tx_votes": "有办件量窗口的评价数", "eval_rate": "评价率",
    "cases": "督办件", "called_back": "已回访", "callback_rate": "回访率", "rectified_on_time": "按期整改",
    "due": "应整改", "rectify_rate": "整改率", "overdue": "逾期未办结",
    "open_hours": "开放时段终端小时", "heard_hours": "其中在线", "availability": "终端在线率（开放时间内）",
}


def _ratio(numerator, denominator) -> np.ndarray:
    numerator, denominator = (np.asarray(v, dtype=float) for v in (numerator, denominator))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def indicators(votes: pd.DataFrame, cases: pd.DataFrame | None = None, transactions: pd.DataFrame | None = None,
               params: Params = Params(), availability: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per unit and channel with every indicator (NaN where it is not defined: no votes,
    no transaction counts, no cases)."""
    frame = votes.copy()
    for column in ("S", "B", "U", "excluded"):
        frame[column] = frame[column].fillna(0).astype("int64") if column in frame else 0
    frame["n"] = frame["S"] + frame["B"] + frame["U"]
    frame["appealed"] = (frame["appealed"] if "appealed" in frame else pd.Series(np.nan, index=frame.index))
    frame["appealed"] = frame["appealed"].where(frame["channel"] != "terminal", frame["appealed"].fillna(0))
    frame["rate"] = satisfaction_rates(frame["S"], frame["B"], frame["U"])
    for key in ("S", "B", "U"):
        frame[f"rate_{key}"] = _ratio(frame[key], frame["n"])
    frame["score"] = channel_score(frame["S"], frame["B"], frame["U"], params)
    frame["bad_rate"] = frame["rate_U"]      # three keys: 不满意 is the 差评 (docs/indicators.md)

    terminal = frame["channel"] == "terminal"
    tx = transactions if transactions is not None and len(transactions) else pd.DataFrame(
        columns=["code", "transactions", "tx_votes"])
    frame = frame.merge(tx.assign(channel="terminal"), on=["code", "channel"], how="left")
    frame["eval_rate"] = _ratio(frame["tx_votes"], frame["transactions"])

    per_unit = _case_counts(cases)
    frame = frame.merge(per_unit.assign(channel="terminal"), on=["code", "channel"], how="left")
    for column in ("cases", "called_back", "rectified_on_time", "due", "overdue"):
        frame[column] = frame[column].where(terminal, np.nan)
        frame.loc[terminal, column] = frame.loc[terminal, column].fillna(0)
    hours = availability if availability is not None and len(availability) else pd.DataFrame(
        columns=["code", "open_hours", "heard_hours"])
    frame = frame.merge(hours.assign(channel="terminal"), on=["code", "channel"], how="left")
    if availability is not None:          # measured (None: not): a unit without opening hours has 0 of them
        for column in ("open_hours", "heard_hours"):
            frame.loc[terminal, column] = frame.loc[terminal, column].fillna(0)
    frame["availability"] = _ratio(frame["heard_hours"], frame["open_hours"])
    frame["callback_rate"] = _ratio(frame["called_back"], frame["cases"])
    frame["rectify_rate"] = _ratio(frame["rectified_on_time"], frame["due"])
    return frame[COLUMNS].sort_values(["code", "channel"], ignore_index=True)


def _case_counts(cases: pd.DataFrame | None) -> pd.DataFrame:
    """Per unit: cases, called back, rectified on time, due (fixed, or past the fix deadline), overdue."""
    columns = ["code", "cases", "called_back", "rectified_on_time", "due", "overdue"]
    if cases is None or not len(cases):
        return pd.DataFrame(columns=columns)
    out = cases.groupby("code").agg(cases=("closed", "size"), called_back=("called_back", "sum"),
                                rectified_on_time=("on_time", "sum"), due=("due", "sum"), overdue=("overdue", "sum"))
    return out.astype("int64").reset_index()[columns]
