"""Alert rules and raised alerts in the control center's database (``alert_rules``,
``alerts`` unique per rule and key, ``alert_meta``). The rules themselves are in
analytics.alerts.rules."""

from __future__ import annotations

import json

from .db import county_filter


def rule_rows(db) -> list[dict]:
    """Every rule (id, name, kind, params as a dict, enabled), by id."""
    return [dict(r) | {"params": json.loads(r["params"]), "enabled": bool(r["enabled"])}
            for r in db.query("SELECT id, name, kind, params, enabled FROM alert_rules ORDER BY id")]


def insert_rule(db, name: str, kind: str, params: dict, enabled: bool, stamp: str, by: str) -> int:
    """Add a rule; return its id."""
    return db.execute("INSERT INTO alert_rules(name, kind, params, enabled, updated_at, updated_by) "
                      "VALUES (?,?,?,?,?,?)", (name, kind, json.dumps(params), int(enabled), stamp, by)).lastrowid


def update_rule(db, rule_id: int, name: str, kind: str, params: dict, enabled: bool, stamp: str, by: str) -> bool:
    """Change a rule; False when there is no such rule."""
    return db.execute("UPDATE alert_rules SET name=?, kind=?, params=?, enabled=?, updated_at=?, updated_by=? "
                      "WHERE id=?", (name, kind, json.dumps(params), int(enabled), stamp, by, int(rule_id))).rowcount > 0


def delete_rule(db, rule_id: int) -> bool:
    """Remove a rule (its past alerts stay); True when it existed."""
    return db.execute("DELETE FROM alert_rules WHERE id = ?", (int(rule_id),)).rowcount > 0


def last_ends(db, rule_id: int) -> dict[str, str]:
    """scope code -> the last vote time (ISO) of the rule's latest alert there."""
    return {row["scope_code"]: row["last"] for row in db.query(
        "SELECT scope_code, MAX(last_at) AS last FROM alerts WHERE rule_id = ? GROUP BY scope_code", (rule_id,))}


def insert_alert(db, *, rule_id: int, rule_name: str, kind: str, scope_level: str, scope_code: str, scope_name: str,
                 county_code: str | None, dedup_key: str, first_at: str, last_at: str, value: float, n: int,
                 message: str, created_at: str) -> int | None:
    """Store an alert unless the rule raised it already (same key); return the new id or None."""
    cur = db.execute(
        "INSERT OR IGNORE INTO alerts(rule_id, rule_name, kind, scope_level, scope_code, scope_name, county_code,"
        " dedup_key, first_at, last_at, value, n, message, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (rule_id, rule_name, kind, scope_level, scope_code, scope_name, county_code, dedup_key, first_at, last_at,
         value, n, message, created_at))
    return cur.lastrowid if cur.rowcount else None


def alert_rows(db, *, counties=None, after: int = 0, limit: int = 200, unacknowledged: bool = False) -> list[dict]:
    """Alerts newest first (id > after); ``counties`` restricts to those counties (empty: none)."""
    scope = county_filter(counties)
    if scope is None:
        return []
    where, params = ["id > ?", *scope[0]], [int(after), *scope[1]]
    if unacknowledged:
        where.append("ack_at IS NULL")
    return [dict(row) for row in db.query(f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                                          (*params, int(limit)))]


def acknowledge(db, alert_id: int, by: str, stamp: str) -> bool:
    """Mark an alert as seen; True when it existed and was not acknowledged yet."""
    return db.execute("UPDATE alerts SET ack_at = ?, ack_by = ? WHERE id = ? AND ack_at IS NULL",
                      (stamp, by, int(alert_id))).rowcount > 0


def alert_row(db, alert_id: int) -> dict | None:
    """One alert or None."""
    rows = db.query("SELECT * FROM alerts WHERE id = ?", (int(alert_id),))
    return dict(rows[0]) if rows else None
