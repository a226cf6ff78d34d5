"""Terminal health and inspection flags: the terminals page and its API."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import (Blueprint, current_app, jsonify, render_template, request)

from manyi.periods import to_local

from .auth import check_county, login_required, visible_counties
from .context import get_clock, get_registry, get_store

log = logging.getLogger(__name__)
bp = Blueprint("terminals", __name__)

@bp.route("/terminals")
@login_required
def terminals():
    """Terminal health and inspection flags."""
    data = terminals_data()
    problem_only = request.args.get("problems") == "1"
    rows = [r for r in data["terminals"] if not problem_only or _has_problem(r)]
    return render_template("terminals.html", rows=rows, summary=data["summary"], problem_only=problem_only,
                           params=data["params"])


def _has_problem(row: dict) -> bool:
    return (not row["online"]) or row["silent"] or bool(row["gaps"]) or bool(row["findings"]) or row["clock_ok"] is False


def terminals_data() -> dict:
    """Rows of every terminal the user may see, with inspection findings, and a summary."""
    from analytics.inspect import find_bursts, find_count_patterns, terminal_rows
    store, registry, now = get_store(), get_registry(), get_clock().now()
    visible, params = visible_counties(), _params()
    statuses = store.terminals()
    rows = terminal_rows(statuses, store.gaps(), registry, now, params, devices=registry.devices())
    if visible is not None:
        rows = [r for r in rows if r["county_code"] in visible]
    devices = {r["device"] for r in rows}
    # The last day's burst runs (when, which key) before the 14 days' count of flagged votes: one burst
    # finding per terminal, the more telling one.
    findings = find_bursts(store.votes(now - timedelta(days=1), now, devices=devices))
    findings += find_count_patterns(store.counts(now - timedelta(days=14), now, bucket="day", devices=devices), params)
    by_device: dict[str, list] = {}
    for finding in findings:
        shown = by_device.setdefault(finding.device, [])
        if all(f["pattern"] != finding.pattern for f in shown):
            shown.append(finding.to_dict())
    for row in rows:
        row["findings"] = by_device.get(row["device"], [])
    summary = {
        "total": len(rows),
        "online": sum(r["online"] for r in rows),
        "offline": sum(r["known"] and not r["online"] for r in rows),
        "never_seen": sum(not r["known"] for r in rows),
        "silent": sum(r["silent"] for r in rows),
        "with_gaps": sum(bool(r["gaps"]) for r in rows),
        "flagged": sum(bool(r["findings"]) for r in rows),
    }
    return {"generated_at": to_local(now).isoformat(timespec="seconds"), "summary": summary, "terminals": rows,
            "params": {"silent_minutes": params.silent_minutes, "offline_minutes": params.offline_minutes}}


@bp.route("/api/v1/terminals")
@login_required
def api_terminals():
    """Terminal health and inspection flags as JSON."""
    county = request.args.get("county")
    data = terminals_data()
    if county:
        check_county(county)
        data["terminals"] = [r for r in data["terminals"] if r["county_code"] == county]
    return jsonify(data)


def _params():
    from analytics.inspect import InspectParams
    config = current_app.config
    return InspectParams(silent_minutes=float(config["SILENT_MINUTES"]), offline_minutes=float(config["OFFLINE_MINUTES"]))


def _offline_devices(store, now) -> set[str]:
    from analytics.inspect import is_online
    params = _params()
    # A terminal known only from its votes (no status yet) is not marked offline on the map.
    return {s.device for s in store.terminals() if s.online is not None and not is_online(s, now, params)}
