"""Alerts: configurable rules (:mod:`.rules`, pure) evaluated over the vote store, alerts kept
in the center database (analytics.center.alerts).

:func:`evaluate` reads the store, attributes each vote where its terminal stood at the
time of the press (the one attribution), runs every enabled rule and stores new alerts once
(unique per rule and key), so that running it every few seconds raises each alert exactly once.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

import pandas as pd

from collector.stores.base import FLAG_TEST
from manyi.periods import day_bounds, to_local

from ..center import alerts as stored
from ..model.attribution import attribute, places
from ..votes import attributed_counts
from .rules import (
    DEFAULT_RULES, KINDS, LEVELS, Candidate, Rule, RuleError, burst_alerts, check_name, rate_alerts, validate_params,
)

__all__ = ["DEFAULT_RULES", "KINDS", "LEVELS", "Candidate", "Rule", "RuleError", "acknowledge", "aggregate_counts",
           "burst_alerts", "delete_rule", "evaluate", "get_alert", "list_alerts", "list_rules", "rate_alerts",
           "save_rule", "validate_params"]


def list_rules(db) -> list[Rule]:
    """Every rule, by id."""
    return [Rule(r["id"], r["name"], r["kind"], r["params"], r["enabled"]) for r in stored.rule_rows(db)]


def save_rule(db, *, name: str, kind: str, params: dict, enabled: bool = True, rule_id: int | None = None,
              by: str = "", now: datetime | None = None) -> int:
    """Create (rule_id None) or change a rule after validating it; return its id."""
    name = check_name(name)
    params = validate_params(kind, params)
    stamp = (now or datetime.now(timezone.utc)).isoformat()
    if rule_id is None:
        return stored.insert_rule(db, name, kind, params, enabled, stamp, by)
    if not stored.update_rule(db, rule_id, name, kind, params, enabled, stamp, by):
        raise RuleError(f"规则 {rule_id} 不存在")
    return int(rule_id)


def delete_rule(db, rule_id: int) -> bool:
    """Remove a rule (its past alerts stay); True when it existed."""
    return stored.delete_rule(db, rule_id)


def _county_of_hall(registry, hall) -> str | None:
    county = getattr(hall, "county_code", "") or None
    if county is None and hall.township_code in registry.townships:
        county = registry.townships[hall.township_code].county_code
    return county


def _scope_info(registry, level: str, code: str) -> tuple[str, str | None]:
    """(display name, county code) of a scope."""
    if registry is None:
        return code, None
    try:
        if level == "window":
            if code.startswith("device:"):
                return code[7:], None
            win = registry.windows[code]
            hall = registry.halls[win.hall_id]
            return f"{hall.name} {win.name}", _county_of_hall(registry, hall)
        if level == "hall":
            hall = registry.halls[code]
            return hall.name, _county_of_hall(registry, hall)
        if level == "township":
            town = registry.townships[code]
            return town.name, town.county_code
        if level == "county":
            return registry.counties[code].name, code
    except (KeyError, AttributeError):
        pass
    return code, None


def _store_candidates(db, registry, rule: Rule, found: list[Candidate], now: datetime) -> list[int]:
    new = []
    for cand in found:
        name, county = _scope_info(registry, cand.scope_level, cand.scope_code)
        alert_id = stored.insert_alert(
            db, rule_id=rule.id, rule_name=rule.name, kind=rule.kind, scope_level=cand.scope_level,
            scope_code=cand.scope_code, scope_name=name, county_code=county, dedup_key=cand.dedup_key,
            first_at=cand.first_at.isoformat(), last_at=cand.last_at.isoformat(), value=cand.value, n=cand.n,
            message=cand.message, created_at=now.isoformat())
        if alert_id is not None:
            new.append(alert_id)
    return new


def aggregate_counts(rows: pd.DataFrame, level: str) -> dict[str, dict[str, int]]:
    """Attributed count rows summed by hall, township or county: {code: {rating: n}}.
    A county-level hall has no township: its votes count for no township."""
    column = {"hall": "hall_id", "township": "township_code", "county": "county_code"}[level]
    rows = rows[rows[column] != ""]
    sums = rows.groupby([column, "rating"])["count"].sum()
    out: dict[str, dict[str, int]] = {}
    for (code, rating), n in sums.items():
        out.setdefault(code, {})[rating] = int(n)
    return out


def _window_of_votes(registry, votes) -> list[tuple[str, datetime]]:
    """(window id, or device:<id> for a terminal with no window then; time) of each vote."""
    votes = [v for v in votes if FLAG_TEST not in v.flags]
    if not votes:
        return []
    frame = pd.DataFrame({"device": [v.device for v in votes],
                          "at": pd.Series(pd.to_datetime([v.time for v in votes], utc=True), dtype="datetime64[us, UTC]"),
                          "rating": [v.rating for v in votes], "count": 1, "excluded": 0})
    located, _, _ = attribute(frame, places(registry)) if registry is not None else (frame.iloc[0:0], frame, [])
    window = dict(zip(located["rid"], located["window_id"]))
    return [(window.get(i, f"device:{v.device}"), v.time) for i, v in enumerate(votes)]


def evaluate(store, db, registry, now: datetime) -> list[int]:
    """Run every enabled rule over the store at ``now``; store and return the ids of new alerts."""
    rules = [r for r in list_rules(db) if r.enabled]
    new: list[int] = []
    bursts = [r for r in rules if r.kind == "burst"]
    if bursts:
        span = max(r.params["minutes"] for r in bursts)
        scoped = _window_of_votes(registry, store.votes(now - timedelta(minutes=span) * 2, now + timedelta(minutes=5),
                                                        ratings=["unsatisfied"]))
        for rule in bursts:
            last_end = {scope: datetime.fromisoformat(last) for scope, last in stored.last_ends(db, rule.id).items()}
            new += _store_candidates(db, registry, rule, burst_alerts(rule, scoped, last_end), now)
    rates = [r for r in rules if r.kind == "low_rate"]
    if rates and registry is not None:
        day = to_local(now).date()
        start, end = day_bounds(day)
        rows = attributed_counts(store, registry, start, end, grain="day").rows
        for rule in rates:
            counts = aggregate_counts(rows, rule.params["level"])
            new += _store_candidates(db, registry, rule, rate_alerts(rule, counts, day, now), now)
    return new


def list_alerts(db, *, counties: Iterable[str] | None = None, after: int = 0, limit: int = 200,
                unacknowledged: bool = False) -> list[dict]:
    """Alerts newest first (id > after); ``counties`` restricts to what a user may see."""
    rows = stored.alert_rows(db, counties=None if counties is None else set(counties), after=after, limit=limit,
                             unacknowledged=unacknowledged)
    return [row | {"kind_label": KINDS.get(row["kind"], row["kind"])} for row in rows]


def acknowledge(db, alert_id: int, by: str, now: datetime) -> bool:
    """Mark an alert as seen; True when it existed and was not acknowledged yet."""
    return stored.acknowledge(db, alert_id, by, now.isoformat())


def get_alert(db, alert_id: int) -> dict | None:
    """One alert or None."""
    return stored.alert_row(db, alert_id)
