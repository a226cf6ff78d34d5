"""申诉复核 pages and API: counties file appeals against unsatisfied votes (one vote, a case or a
burst alert) as 误评 or 恶意差评; the city accepts (the votes become 不予采纳) or rejects.

The rules are in analytics.appeals. County staff see and file only for their own county;
the city (admin, city roles) reviews, never its own appeal. Every action is audited.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for

from analytics import appeals as ap

from .auth import audit, check_county, current_user, login_required, visible_counties
from .context import get_clock, get_db, get_registry, get_store

bp = Blueprint("appeals", __name__)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        abort(400, description=f"评价时间 {text!r} 应为 ISO 8601 格式")
    if moment.tzinfo is None:
        abort(400, description="评价时间须带时区")
    return moment


def _appeal_or_abort(appeal_id: int) -> dict:
    appeal = ap.get_appeal(get_db(), appeal_id)
    if appeal is None:
        abort(404, description=f"申诉 {appeal_id} 不存在")
    check_county(appeal["county_code"])
    county = get_registry().counties.get(appeal["county_code"] or "")
    appeal["county_name"] = county.name if county else "未登记县区"
    return appeal


def _file(values: dict) -> tuple[int | None, str | None]:
    """File an appeal for the current user; (id, None) or (None, error message)."""
    user = current_user()
    if user.role not in ap.FILERS:
        abort(403, description="当前角色不能提出申诉")
    target_kind, target_ref = values.get("target_kind", ""), (values.get("target_ref") or "").strip()
    try:
        appeal_id = ap.file_appeal(
            get_store(), get_db(), get_registry(), target_kind=target_kind, target_ref=target_ref,
            kind=values.get("kind", ""), reason=values.get("reason", ""), evidence=values.get("evidence", ""),
            by=user.username, now=get_clock().now(), time=_parse_time(values.get("time")), county_check=check_county)
    except ap.AppealError as exc:
        return None, str(exc)
    audit("appeal.file", {"appeal": appeal_id, "target": f"{target_kind}:{target_ref}", "kind": values.get("kind"),
                          "reason": values.get("reason"), "evidence": values.get("evidence")})
    return appeal_id, None


def _decide(appeal_id: int, action: str, values: dict) -> str | None:
    """Review or withdraw; an error message or None."""
    user = current_user()
    if action == "review" and user.role not in ap.REVIEWERS:
        abort(403, description="只有市级人员可以复核申诉")
    if action == "withdraw" and user.role not in ap.FILERS:
        abort(403, description="当前角色不能撤回申诉")
    appeal = _appeal_or_abort(appeal_id)
    db, now = get_db(), get_clock().now()
    try:
        if action == "review":
            ap.review_appeal(db, appeal_id, values.get("decision", ""), values.get("note", ""), user.username, now)
        else:
            ap.withdraw_appeal(db, appeal_id, user.username, now)
    except ap.AppealError as exc:
        return str(exc)
    audit(f"appeal.{action}", {"appeal": appeal_id, "county": appeal["county_code"],
                               "decision": values.get("decision"), "note": values.get("note")})
    return None


def _list() -> list[dict]:
    status = request.args.get("status") or None
    if status and status not in ap.STATUS_LABELS:
        abort(400, description=f"状态 {status!r} 无效")
    return ap.list_appeals(get_db(), counties=visible_counties(), status=status)


# --- pages -------------------------------------------------------------------------------

@bp.route("/appeals")
@login_required
def index():
    """The appeal list and the form to file one."""
    return _index_page(None)


@bp.route("/appeals", methods=["POST"])
@login_required
def file():
    """File an appeal (form POST with CSRF token)."""
    appeal_id, error = _file(request.form.to_dict())
    if error is not None:
        return _index_page(error)
    flash("申诉已提交，等待市级复核")
    return redirect(url_for("appeals.detail", appeal_id=appeal_id), code=303)


def _index_page(error: str | None):
    return render_template("appeals/index.html", appeals=_list(), error=error, form=request.form,
                           statuses=ap.STATUS_LABELS, kinds=ap.KINDS, targets=ap.TARGETS,
                           may_file=current_user().role in ap.FILERS), (400 if error else 200)


@bp.route("/appeals/<int:appeal_id>")
@login_required
def detail(appeal_id: int):
    """One appeal with its votes and the review / withdraw forms."""
    return _detail_page(_appeal_or_abort(appeal_id), None)


def _detail_page(appeal: dict, error: str | None):
    user = current_user()
    pending = appeal["status"] == ap.PENDING
    return render_template("appeals/detail.html", appeal=appeal, error=error,
                           may_review=pending and user.role in ap.REVIEWERS and user.username != appeal["filed_by"],
                           may_withdraw=pending and user.role in ap.FILERS)


@bp.route("/appeals/<int:appeal_id>/<action>", methods=["POST"])
@login_required
def act(appeal_id: int, action: str):
    """review {decision: accepted|rejected, note} or withdraw (form POST with CSRF token)."""
    if action not in ("review", "withdraw"):
        abort(404)
    error = _decide(appeal_id, action, request.form.to_dict())
    if error:
        return _detail_page(_appeal_or_abort(appeal_id), error), 400
    flash("已撤回申诉" if action == "withdraw" else "复核结论已记录")
    return redirect(url_for("appeals.detail", appeal_id=appeal_id), code=303)


# --- JSON API ----------------------------------------------------------------------------

def _body() -> dict:
    values = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    if not isinstance(values, dict):
        abort(400, description="body must be a JSON object")
    return {k: str(v) for k, v in values.items()}


@bp.route("/api/v1/appeals")
@login_required
def api_appeals():
    """Appeals (county-scoped, ?status=)."""
    appeals = _list()
    return jsonify(appeals=appeals, count=len(appeals))


@bp.route("/api/v1/appeals", methods=["POST"])
@login_required
def api_file():
    """File an appeal: {target_kind, target_ref, time?, kind, reason, evidence?}."""
    appeal_id, error = _file(_body())
    if error:
        return jsonify(error="invalid", message=error), 400
    return jsonify(_appeal_or_abort(appeal_id))


@bp.route("/api/v1/appeals/<int:appeal_id>")
@login_required
def api_detail(appeal_id: int):
    """One appeal with its votes."""
    return jsonify(_appeal_or_abort(appeal_id))


@bp.route("/api/v1/appeals/<int:appeal_id>/<action>", methods=["POST"])
@login_required
def api_act(appeal_id: int, action: str):
    """review {decision, note} | withdraw."""
    if action not in ("review", "withdraw"):
        abort(404)
    error = _decide(appeal_id, action, _body())
    if error:
        return jsonify(error="invalid", message=error), 400
    return jsonify(_appeal_or_abort(appeal_id))


_ID = {"name": "appeal_id", "in": "path", "required": True, "schema": {"type": "integer"}}
OPENAPI_PATHS = {
    "/api/v1/appeals": {
        "get": {"summary": "申诉列表（按县区权限过滤）", "tags": ["appeals"],
                "parameters": [{"name": "status", "in": "query",
                                "schema": {"type": "string", "enum": list(ap.STATUS_LABELS)}}],
                "responses": {"200": {"description": "appeals, count"}}},
        "post": {"summary": "提出申诉：target_kind (vote|case|alert), target_ref (终端:序号 / 督办件号 / 告警号), "
                            "time（单条评价时）, kind (mistaken|malicious), reason, evidence",
                 "tags": ["appeals"], "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                 "responses": {"200": {"description": "the appeal"}, "400": {"description": "validation error"},
                               "403": {"description": "not allowed"}}}},
    "/api/v1/appeals/{appeal_id}": {"get": {"summary": "申诉详情（含所涉评价）", "tags": ["appeals"], "parameters": [_ID],
                                            "responses": {"200": {"description": "appeal"}}}},
    "/api/v1/appeals/{appeal_id}/{action}": {"post": {
        "summary": "复核 review {decision: accepted|rejected, note} / 撤回 withdraw", "tags": ["appeals"],
        "parameters": [_ID, {"name": "action", "in": "path", "required": True,
                             "schema": {"type": "string", "enum": ["review", "withdraw"]}}],
        "responses": {"200": {"description": "the updated appeal"}, "400": {"description": "validation error"},
                      "403": {"description": "not allowed"}}}},
}
