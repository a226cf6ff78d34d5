"""Alerts: configurable rules evaluated over the vote store, alerts kept in the CenterDB.

Two kinds of rule:

* ``burst``: at least ``n`` unsatisfied votes within ``minutes`` minutes at one window
  (or at one terminal that has no window in the registry);
* ``low_rate``: today's satisfaction rate (满意 + 基本满意) / n below ``threshold`` at a
  hall, township or county (``level``) with at least ``min_votes`` votes.

The evaluation functions (:func:`burst_alerts`, :func:`rate_alerts`,
:func:`aggregate_counts`) are pure; :func:`evaluate` reads the store, runs every enabled
rule and stores new alerts once (table ``alerts``, unique per rule and key), so that
running it every few seconds raises each alert exactly once.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

from collector.stores.base import FLAG_TEST
from manyi.exc import ManyiError
from manyi.periods import day_bounds, to_local

from .center import in_clause
from .stats import satisfaction_rate

KINDS = {"burst": "短时集中不满意", "low_rate": "日满意率偏低"}
LEVELS = {"hall": "大厅", "township": "乡镇（街道）", "county": "县区"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,          -- JSON
    enabled INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT, updated_by TEXT
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id INTEGER NOT NULL, rule_name TEXT NOT NULL, kind TEXT NOT NULL,
    scope_level TEXT NOT NULL, scope_code TEXT NOT NULL, scope_name TEXT NOT NULL DEFAULT '',
    county_code TEXT,
    dedup_key TEXT NOT NULL,
    first_at TEXT NOT NULL, last_at TEXT NOT NULL,
    value REAL, n INTEGER,
    message TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ack_at TEXT, ack_by TEXT,
    UNIQUE (rule_id, dedup_key)
);
CREATE INDEX IF NOT EXISTS alerts_county ON alerts(county_code, id);
CREATE TABLE IF NOT EXISTS alert_meta (key TEXT PRIMARY KEY, value TEXT);
"""

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
        total = c.get("satisfied", 0) + c.get("basic", 0) + c.get("unsatisfied", 0)
        rate = satisfaction_rate(c)
        if total >= min_votes and rate is not None and rate < threshold:
            found.append(Candidate(
                rule.id, rule.params["level"], scope, f"{scope}@{day.isoformat()}", start, now, round(rate, 4),
                total, f"{day.isoformat()} 满意率 {rate:.1%}（{total} 票），低于 {threshold:.0%}"))
    return found


def aggregate_counts(rows, registry, level: str) -> dict[str, dict[str, int]]:
    """Sum store CountRows by hall, township or county of the terminal (registry.locate at the bucket start)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        loc = registry.locate(row.device, row.bucket) if registry is not None else None
        if loc is None:
            continue
        code = {"hall": loc.hall_id, "township": loc.township_code, "county": loc.county_code}[level]
        if not code:           # a county-level hall has no township
            continue
        out[code][row.rating] += row.count
    return {k: dict(v) for k, v in out.items()}


# --- storage --------------------------------------------------------------------

def ensure(db) -> None:
    """Create the alert tables, and the default rules once (deleting them all later is respected)."""
    db.ensure(SCHEMA)
    if db.query("SELECT 1 FROM alert_meta WHERE key = 'seeded'"):
        return
    with db.transaction() as conn:
        if conn.execute("SELECT 1 FROM alert_meta WHERE key = 'seeded'").fetchone():
            return
        for name, kind, params in DEFAULT_RULES:
            conn.execute("INSERT INTO alert_rules(name, kind, params) VALUES (?, ?, ?)",
                         (name, kind, json.dumps(params)))
        conn.execute("INSERT INTO alert_meta(key, value) VALUES ('seeded', '1')")


def list_rules(db) -> list[Rule]:
    """Every rule, by id."""
    ensure(db)
    return [Rule(r["id"], r["name"], r["kind"], json.loads(r["params"]), bool(r["enabled"]))
            for r in db.query("SELECT * FROM alert_rules ORDER BY id")]


def save_rule(db, *, name: str, kind: str, params: dict, enabled: bool = True, rule_id: int | None = None,
              by: str = "", now: datetime | None = None) -> int:
    """Create (rule_id None) or change a rule after validating it; return its id."""
    ensure(db)
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise RuleError("规则名称不能为空，且不超过 100 个字")
    params = validate_params(kind, params)
    stamp = (now or datetime.now(timezone.utc)).isoformat()
    if rule_id is None:
        cur = db.execute("INSERT INTO alert_rules(name, kind, params, enabled, updated_at, updated_by) "
                         "VALUES (?,?,?,?,?,?)", (name, kind, json.dumps(params), int(enabled), stamp, by))
        return cur.lastrowid
    cur = db.execute("UPDATE alert_rules SET name=?, kind=?, params=?, enabled=?, updated_at=?, updated_by=? "
                     "WHERE id=?", (name, kind, json.dumps(params), int(enabled), stamp, by, int(rule_id)))
    if cur.rowcount == 0:
        raise RuleError(f"规则 {rule_id} 不存在")
    return int(rule_id)


def delete_rule(db, rule_id: int) -> bool:
    """Remove a rule (its past alerts stay); True when it existed."""
    ensure(db)
    return db.execute("DELETE FROM alert_rules WHERE id = ?", (int(rule_id),)).rowcount > 0


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
        cur = db.execute(
            "INSERT OR IGNORE INTO alerts(rule_id, rule_name, kind, scope_level, scope_code, scope_name, county_code,"
            " dedup_key, first_at, last_at, value, n, message, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (rule.id, rule.name, rule.kind, cand.scope_level, cand.scope_code, name, county, cand.dedup_key,
             cand.first_at.isoformat(), cand.last_at.isoformat(), cand.value, cand.n, cand.message, now.isoformat()))
        if cur.rowcount:
            new.append(cur.lastrowid)
    return new


def evaluate(store, db, registry, now: datetime) -> list[int]:
    """Run every enabled rule over the store at ``now``; store and return the ids of new alerts."""
    rules = [r for r in list_rules(db) if r.enabled]
    new: list[int] = []
    bursts = [r for r in rules if r.kind == "burst"]
    if bursts:
        span = max(r.params["minutes"] for r in bursts)
        scoped = []
        for vote in store.votes(now - timedelta(minutes=span) * 2, now + timedelta(minutes=5),
                                ratings=["unsatisfied"]):
            if FLAG_TEST in vote.flags:
                continue
            loc = registry.locate(vote.device, vote.time) if registry is not None else None
            scoped.append((loc.window_id if loc else f"device:{vote.device}", vote.time))
        for rule in bursts:
            last_end = {}
            for row in db.query("SELECT scope_code, MAX(last_at) AS last FROM alerts WHERE rule_id = ? "
                                "GROUP BY scope_code", (rule.id,)):
                last_end[row["scope_code"]] = datetime.fromisoformat(row["last"])
            new += _store_candidates(db, registry, rule, burst_alerts(rule, scoped, last_end), now)
    rates = [r for r in rules if r.kind == "low_rate"]
    if rates:
        day = to_local(now).date()
        start, end = day_bounds(day)
        # Hour buckets: each hour is attributed where its terminal was then (one installed
        # or moved during the day counts from that hour on, not from midnight).
        rows = store.counts(start, end, bucket="hour")
        for rule in rates:
            counts = aggregate_counts(rows, registry, rule.params["level"])
            new += _store_candidates(db, registry, rule, rate_alerts(rule, counts, day, now), now)
    return new


def list_alerts(db, *, counties: Iterable[str] | None = None, after: int = 0, limit: int = 200,
                unacknowledged: bool = False) -> list[dict]:
    """Alerts newest first (id > after); ``counties`` restricts to what a user may see."""
    ensure(db)
    where, params = ["id > ?"], [int(after)]
    if counties is not None:
        if not counties:
            return []
        clause, values = in_clause("county_code", counties)
        where.append(clause)
        params += values
    if unacknowledged:
        where.append("ack_at IS NULL")
    rows = db.query(f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                    (*params, int(limit)))
    out = []
    for row in rows:
        item = dict(row)
        item["kind_label"] = KINDS.get(item["kind"], item["kind"])
        out.append(item)
    return out


def acknowledge(db, alert_id: int, by: str, now: datetime) -> bool:
    """Mark an alert as seen; True when it existed and was not acknowledged yet."""
    ensure(db)
    return db.execute("UPDATE alerts SET ack_at = ?, ack_by = ? WHERE id = ? AND ack_at IS NULL",
                      (now.isoformat(), by, int(alert_id))).rowcount > 0


def get_alert(db, alert_id: int) -> dict | None:
    """One alert or None."""
    ensure(db)
    rows = db.query("SELECT * FROM alerts WHERE id = ?", (int(alert_id),))
    return dict(rows[0]) if rows else None
