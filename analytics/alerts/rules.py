"""Alert rules, pure: what a rule may say, and which alerts the counts and votes of a moment raise.

Two kinds of rule:

* ``burst``: at least ``n`` unsatisfied votes within ``minutes`` minutes at one window
  (or at one terminal that has no window in the registry);
* ``low_rate``: today's satisfaction rate (满意 + 基本满意) / n below ``threshold`` at a
  hall, township or county (``level``) with at least ``min_votes`` votes.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

from manyi.exc import ManyiError
from manyi.periods import day_bounds

from ..model.rates import satisfaction_rate

KINDS = {"burst": "短时集中不满意", "low_rate": "日满意率偏低"}
LEVELS = {"hall": "大厅", "township": "乡镇（街道）", "county": "县区"}

# The rules a new database starts with (migration 0002 seeds them).
DEFAULT_RULES = [
    ("窗口30分钟内3次不满意", "burst", {"n": 3, "minutes": 30}),
    ("大厅日满意率低于85%", "low_rate", {"threshold": 0.85, "min_votes": 20, "level": "hall"}),
    ("县区日满意率低于85%", "low_rate", {"threshold": 0.85, "min_votes": 50, "level": "county"}),
]


class RuleError(ManyiError, ValueError):
    """An alert rule is malformed (the message says which parameter)."""


@dataclass(frozen=True)
class Rule:
    """One alert rule."""

    id: int
    name: str
    kind: str
    params: dict = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True)
class Candidate:
    """An alert an evaluation function found; storage decides whether it is new."""

    rule_id: int
    scope_level: str
    scope_code: str
    dedup_key: str
    first_at: datetime
    last_at: datetime
    value: float
    n: int
    message: str


def validate_params(kind: str, params: dict) -> dict:
    """Check and normalise a rule's parameters; raise RuleError naming the bad one."""
    def number(name, low, high, cast=float):
        try:
            value = cast(params.get(name))
        except (TypeError, ValueError):
            raise RuleError(f"参数 {name} 必须是数字，收到 {params.get(name)!r}") from None
        if not low <= value <= high:
            raise RuleError(f"参数 {name} 必须在 {low} 到 {high} 之间，收到 {value}")
        return value

    if kind == "burst":
        return {"n": number("n", 1, 1000, int), "minutes": number("minutes", 1, 1440, int)}
    if kind == "low_rate":
        threshold = number("threshold", 0, 100)
        if threshold > 1:            # given as a percentage
            threshold /= 100
        level = params.get("level")
        if level not in LEVELS:
            raise RuleError(f"参数 level 应为 {'/'.join(LEVELS)}，收到 {level!r}")
        return {"threshold": round(threshold, 4), "min_votes": number("min_votes", 1, 100000, int), "level": level}
    raise RuleError(f"规则类型 {kind!r} 未知，应为 {'/'.join(KINDS)}")


# --- pure evaluation --------------------------------------------------------------

def burst_alerts(rule: Rule, votes: Iterable[tuple[str, datetime]], last_end: dict[str, datetime] | None = None,
                 level: str = "window") -> list[Candidate]:
    """Clusters of >= n unsatisfied votes within ``minutes`` at one scope.

    ``votes`` are (scope code, time) of unsatisfied votes. Votes at or before
    ``last_end[scope]`` (the last vote of the scope's previous alert) are not counted
    again, so a long burst raises one alert per n votes, not one per evaluation.
    """
    n, span = rule.params["n"], timedelta(minutes=rule.params["minutes"])
    last_end = last_end or {}
    by_scope: dict[str, list[datetime]] = defaultdict(list)
    for scope, moment in votes:
        by_scope[scope].append(moment)
    found = []
    for scope, times in sorted(by_scope.items()):
        floor = last_end.get(scope)
        window: deque[datetime] = deque()
        for moment in sorted(times):
            if floor is not None and moment <= floor:
                continue
            while window and window[0] < moment - span:
                window.popleft()
            window.append(moment)
            if len(window) >= n:
                found.append(Candidate(
                    rule.id, level, scope, f"{scope}@{window[0].astimezone(timezone.utc).isoformat()}",
                    window[0], moment, float(len(window)), len(window),
                    f"{rule.params['minutes']} 分钟内 {len(window)} 次不满意评价"))
                window.clear()
    return found


def rate_alerts(rule: Rule, counts: dict[str, dict[str, int]], day: date, now: datetime) -> list[Candidate]:
    """Scopes whose satisfaction rate on ``day`` is below the threshold with enough votes.

    ``counts`` maps a scope code to {"satisfied": n, "basic": n, "unsatisfied": n}.
    """
    threshold, min_votes = rule.params["threshold"], rule.params["min_votes"]
    start, _ = day_bounds(day)
    found = []
    for scope, c in sorted(counts.items()):
        total = sum(c.get(r, 0) for r in ("satisfied", "basic", "unsatisfied"))
        rate = satisfaction_rate(c)
        if total >= min_votes and rate is not None and rate < threshold:
            found.append(Candidate(
                rule.id, rule.params["level"], scope, f"{scope}@{day.isoformat()}", start, now, round(rate, 4),
                total, f"{day.isoformat()} 满意率 {rate:.1%}（{total} 票），低于 {threshold:.0%}"))
    return found


def check_name(name: str | None) -> str:
    """A rule's name trimmed, when it has 1..100 characters; RuleError otherwise."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise RuleError("规则名称不能为空，且不超过 100 个字")
    return name
