"""Alerts page and API: the live alert list (polled by static/alerts.js) and the rules editor.

Rules and alerts live in :mod:`analytics.alerting`. With BACKGROUND_WORKERS a thread
evaluates the rules every few seconds; otherwise each page or API request evaluates
them first. Everyone sees the alerts of the counties they may see; admin and city staff
edit the rules (audited as settings changes).
"""

from __future__ import annotations


from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from analytics import alerts as al

from .auth import audit, check_county, current_user, login_required, roles_required, visible_counties
from .context import get_clock, get_db, get_registry, get_store, start_worker
from .tables import cn_time, pct

bp = Blueprint("alerts", __name__)
bp.add_app_template_filter(cn_time, "cn_time")
bp.add_app_template_filter(pct, "pct")

EDITORS = ("admin", "city")
EVALUATE_SECONDS = 5.0


def refresh(app=None) -> list[int]:
    """Evaluate the rules now unless a background worker does it; return new alert ids."""
    app = app or current_app._get_current_object()
    if app.config.get("BACKGROUND_WORKERS"):
        return []
    return al.evaluate(get_store(app), get_db(app), get_registry(app), get_clock(app).now())


def init_app(app) -> None:
    """Start the evaluation worker when BACKGROUND_WORKERS is on."""
    if app.config.get("BACKGROUND_WORKERS"):
        start_worker(app, "alerts", EVALUATE_SECONDS, lambda: al.evaluate(
            get_store(app), get_db(app), get_registry(app), get_clock(app).now()))


def _rule_form(form) -> dict:
    kind = form.get("kind", "")
    if kind == "burst":
        params = {"n": form.get("n"), "minutes": form.get("minutes")}
    else:
        params = {"threshold": form.get("threshold"), "min_votes": form.get("min_votes"), "level": form.get("level")}
    return dict(name=form.get("name", ""), kind=kind, params=params, enabled=bool(form.get("enabled")))


def _rule_dict(rule: al.Rule) -> dict:
    return {"id": rule.id, "name": rule.name, "kind": rule.kind, "kind_label": al.KINDS.get(rule.kind, rule.kind),
            "params": rule.params, "enabled": rule.enabled}


@bp.route("/alerts")
@login_required
def index():
    """Live alert list and the rules."""
    refresh()
    alerts = al.list_alerts(get_db(), counties=visible_counties(), limit=200)
    user = current_user()
    return render_template("alerts/index.html", alerts=alerts, rules=[_rule_dict(r) for r in al.list_rules(get_db())],
                           may_edit=user.role in EDITORS, kinds=al.KINDS, levels=al.LEVELS, error=None,
                           last_id=max((a["id"] for a in alerts), default=0))


@bp.route("/alerts/rules", methods=["POST"])
@bp.route("/alerts/rules/<int:rule_id>", methods=["POST"])
@roles_required(*EDITORS)
def save_rule(rule_id: int | None = None):
    """Create or change a rule (form with CSRF token)."""
    values = _rule_form(request.form)
    try:
        saved = al.save_rule(get_db(), rule_id=rule_id, by=current_user().username, now=get_clock().now(), **values)
    except al.RuleError as exc:
        alerts = al.list_alerts(get_db(), counties=visible_counties(), limit=200)
        return render_template("alerts/index.html", alerts=alerts,
                               rules=[_rule_dict(r) for r in al.list_rules(get_db())], may_edit=True,
                               kinds=al.KINDS, levels=al.LEVELS, error=str(exc),
                               last_id=max((a["id"] for a in alerts), default=0)), 400
    audit("settings.alert_rule", {"rule": saved, **values})
    flash("规则已保存")
    return redirect(url_for("alerts.index"), code=303)


@bp.route("/alerts/rules/<int:rule_id>/delete", methods=["POST"])
@roles_required(*EDITORS)
def delete_rule(rule_id: int):
    """Remove a rule."""
    if not al.delete_rule(get_db(), rule_id):
        abort(404, description=f"规则 {rule_id} 不存在")
    audit("settings.alert_rule.delete", {"rule": rule_id})
    flash("规则已删除")
    return redirect(url_for("alerts.index"), code=303)


def _ack(alert_id: int) -> dict:
    refresh()
    alert = al.get_alert(get_db(), alert_id)
    if alert is None:
        abort(404, description=f"告警 {alert_id} 不存在")
    check_county(alert["county_code"])
    if al.acknowledge(get_db(), alert_id, current_user().username, get_clock().now()):
        audit("alert.ack", {"alert": alert_id})
    return al.get_alert(get_db(), alert_id)


@bp.route("/alerts/<int:alert_id>/ack", methods=["POST"])
@login_required
def ack(alert_id: int):
    """Mark an alert as seen."""
    _ack(alert_id)
    return redirect(url_for("alerts.index"), code=303)


@bp.route("/api/v1/alerts")
@login_required
def api_alerts():
    """Alerts newer than ``after`` (an alert id), newest first; the page polls this."""
    try:
        after = int(request.args.get("after", 0))
        limit = min(int(request.args.get("limit", 200)), 1000)
    except ValueError:
        return jsonify(error="bad_request", message="after and limit must be integers"), 400
    refresh()
    alerts = al.list_alerts(get_db(), counties=visible_counties(), after=after, limit=limit)
    return jsonify(alerts=alerts, last_id=max([a["id"] for a in alerts] + [after]))


@bp.route("/api/v1/alerts/<int:alert_id>/ack", methods=["POST"])
@login_required
def api_ack(alert_id: int):
    """Acknowledge an alert."""
    return jsonify(_ack(alert_id))


@bp.route("/api/v1/alert-rules")
@login_required
def api_rules():
    """The alert rules."""
    return jsonify(rules=[_rule_dict(r) for r in al.list_rules(get_db())])


OPENAPI_PATHS = {
    "/api/v1/alerts": {"get": {
        "summary": "告警列表（新→旧，按县区权限过滤）；after=上次收到的最大编号，用于轮询", "tags": ["alerts"],
        "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer"}},
                       {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}}],
        "responses": {"200": {"description": "alerts, last_id"}}}},
    "/api/v1/alerts/{alert_id}/ack": {"post": {
        "summary": "确认告警", "tags": ["alerts"],
        "parameters": [{"name": "alert_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {"200": {"description": "the alert"}, "403": {"description": "其他县区"}}}},
    "/api/v1/alert-rules": {"get": {"summary": "告警规则", "tags": ["alerts"],
                                    "responses": {"200": {"description": "rules"}}}},
}
