"""不满意督办 pages and API: list, filter, export, detail, assign, notes, 回访, 整改, 追评, close.

Cases come from :mod:`analytics.followup`. With BACKGROUND_WORKERS a thread syncs new
unsatisfied votes every two seconds; without it (tests, one-shot tools) every page and
API request syncs first, so what is shown is never behind the store. County staff see
and act only on cases of their county; every action is audited.
"""

from __future__ import annotations

from datetime import date, datetime

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from analytics import cases as fu
from analytics.appeals import KINDS, appeal_accepted_for_case, list_appeals

from .auth import audit, check_county, current_user, login_required, roles_required, visible_counties
from .context import get_clock, get_db, get_registry, get_store, start_worker
from .tables import cn_time, due_text, pct, table_download

bp = Blueprint("cases", __name__)
bp.add_app_template_filter(cn_time, "cn_time")
bp.add_app_template_filter(pct, "pct")
bp.add_app_template_filter(due_text, "due_text")

ACTORS = ("admin", "city", "county")          # who may act on cases
SETTINGS_ROLES = ("admin", "city")
SYNC_SECONDS = 2.0


# --- keeping cases in step with the store ------------------------------------------------

def refresh(app=None) -> fu.SyncResult | None:
    """Sync cases now unless a background worker does it."""
    app = app or current_app._get_current_object()
    if app.config.get("BACKGROUND_WORKERS"):
        return None
    return fu.sync_cases(get_store(app), get_db(app), get_registry(app), get_clock(app).now())


def init_app(app) -> None:
    """Start the case sync worker when BACKGROUND_WORKERS is on."""
    if app.config.get("BACKGROUND_WORKERS"):
        start_worker(app, "cases", SYNC_SECONDS, lambda: fu.sync_cases(
            get_store(app), get_db(app), get_registry(app), get_clock(app).now()))


# --- helpers ---------------------------------------------------------------------------

def _names(case: dict) -> dict:
    reg = get_registry()
    county = reg.counties.get(case.get("county_code") or "")
    town = reg.townships.get(case.get("township_code") or "")
    hall = reg.halls.get(case.get("hall_id") or "")
    window = reg.windows.get(case.get("window_id") or "")
    case["county_name"] = county.name if county else ""
    case["township_name"] = town.name if town else ""
    case["hall_name"] = hall.name if hall else ""
    case["window_name"] = window.name if window else ""
    return case


def _parse_date(text: str | None, field: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        abort(400, description=f"{field} 日期格式应为 YYYY-MM-DD，收到 {text!r}")


def _filters() -> dict:
    args = request.args
    overdue = {"1": True, "yes": True, "true": True, "0": False, "no": False, "false": False}.get(
        args.get("overdue", "").lower())
    status = args.get("status") or None
    if status and status not in (*fu.STATUSES, "active"):
        abort(400, description=f"状态 {status!r} 无效")
    county = args.get("county") or None
    if county:
        check_county(county)
    return dict(county=county, status=status, overdue=overdue, assignee=(args.get("assignee") or "").strip() or None,
                date_from=_parse_date(args.get("from"), "起始"), date_to=_parse_date(args.get("to"), "截止"))


PAGE_LIMIT = 1000


def _query_cases(limit: int = PAGE_LIMIT) -> list[dict]:
    refresh()
    now = get_clock().now()
    return [_names(c) for c in fu.list_cases(get_db(), now, counties=visible_counties(), limit=limit, **_filters())]


def _case_or_abort(case_id: int) -> dict:
    refresh()
    case = fu.get_case(get_db(), case_id, get_clock().now())
    if case is None:
        abort(404, description=f"督办件 {case_id} 不存在")
    check_county(case["county_code"])
    case = _names(case)
    staff = None
    if case["window_id"]:
        entry = get_registry().staff_at(case["window_id"], datetime.fromisoformat(case["first_vote_at"]))
        staff = entry.staff_name if entry else None
    case["staff_name"] = staff
    return case


def _may_act(case: dict) -> bool:
    user = current_user()
    return user is not None and user.role in ACTORS and case["status"] != fu.STATUS_CLOSED


def _act(case_id: int, action: str, values: dict) -> str | None:
    """Run one case action for the current user; return an error message or None."""
    case = _case_or_abort(case_id)
    user = current_user()
    if user.role not in ACTORS:
        abort(403, description="当前角色不能处理督办件")
    db, now = get_db(), get_clock().now()
    try:
        if action == "assign":
            fu.assign_case(db, case_id, values.get("assignee", ""), user.username, now)
        elif action == "note":
            fu.add_note(db, case_id, values.get("text", ""), user.username, now)
        elif action == "callback":
            fu.record_callback(db, case_id, values.get("result", ""), values.get("note", ""), user.username, now)
        elif action == "rectify":
            fu.record_rectify(db, case_id, values.get("note", ""), user.username, now)
        elif action == "revisit":
            fu.record_revisit(db, case_id, values.get("result", ""), values.get("note", ""), user.username, now)
        elif action == "close":
            fu.close_case(db, case_id, values.get("reason", ""), user.username, now,
                          code=values.get("code") or "revisited",
                          appeal_accepted=appeal_accepted_for_case(db, case_id))
        else:
            abort(404, description=f"未知操作 {action!r}")
    except fu.CaseError as exc:
        return str(exc)
    audit(f"case.{action}", {"case": case_id, "county": case["county_code"],
                             **{k: v for k, v in values.items() if k != "csrf_token"}})
    return None


CASE_EXPORT_COLUMNS = [
    ("id", "编号"), ("status_label", "状态"), ("overdue_label", "是否超期"), ("county_name", "县区"),
    ("township_name", "乡镇（街道）"), ("hall_name", "大厅"), ("window_name", "窗口"), ("device", "终端"),
    ("vote_count", "不满意票数"), ("first_vote_at", "首次评价"), ("last_vote_at", "最近评价"),
    ("contact_deadline", "联系期限"), ("contacted_at", "首次回访"), ("deadline", "整改期限"),
    ("rectified_at", "整改时间"), ("rectify_note", "整改情况"), ("revisit_deadline", "二次回访期限"),
    ("assignee", "承办人"), ("callback_result", "回访结果"), ("callback_note", "回访说明"),
    ("revisit_result", "追评"), ("revisit_note", "追评说明"), ("overdue_stages_label", "超期环节"),
    ("closed_at", "办结时间"), ("close_label", "办结方式与说明"),
]
ACTIONS = ("assign", "note", "callback", "rectify", "revisit", "close")
ACTION_DONE = {"assign": "已指派", "note": "已添加备注", "callback": "已记录回访结果", "rectify": "已记录整改情况",
               "revisit": "已记录追评", "close": "督办件已办结"}


# --- pages -------------------------------------------------------------------------------

@bp.route("/cases")
@login_required
def index():
    """The case list with filters; overdue cases stand out."""
    cases = _query_cases()
    reg = get_registry()
    visible = visible_counties()
    counties = [c for c in reg.counties.values() if visible is None or c.code in visible]
    return render_template("cases/list.html", cases=cases, counties=counties, args=request.args, limit=PAGE_LIMIT,
                           statuses=fu.STATUS_LABELS, now=get_clock().now(),
                           counts=fu.case_counts(get_db(), get_clock().now(), visible))


@bp.route("/cases/export.<fmt>")
@login_required
def export(fmt: str):
    """The filtered list as CSV or XLSX (every matching case)."""
    cases = _query_cases(limit=1_000_000)
    for c in cases:
        c["overdue_label"] = "超期" if c["overdue"] else ""
        c["overdue_stages_label"] = "、".join(c["overdue_stages"])
        for key in ("first_vote_at", "last_vote_at", "contact_deadline", "contacted_at", "deadline", "rectified_at",
                    "revisit_deadline", "closed_at"):
            c[key] = cn_time(c[key]) if c[key] else ""
    audit("case.export", {"format": fmt, "rows": len(cases)})
    return table_download(cases, CASE_EXPORT_COLUMNS, fmt, "不满意督办")


@bp.route("/cases/<int:case_id>")
@login_required
def detail(case_id: int):
    """One case with its votes, notes and the action forms."""
    return _detail_page(_case_or_abort(case_id), None)


def _detail_page(case: dict, error: str | None):
    db = get_db()
    case["appeals"] = list_appeals(db, target_kind="case", target_ref=str(case["id"]))
    case["appeal_accepted"] = any(a["status"] == "accepted" for a in case["appeals"])
    return render_template("cases/detail.html", case=case, may_act=_may_act(case), error=error,
                           callback_results=fu.CALLBACK_RESULTS, close_codes=fu.CLOSE_CODES, appeal_kinds=KINDS,
                           assignees=fu.assignees(get_db(), case["county_code"]), now=get_clock().now())


@bp.route("/cases/<int:case_id>/<action>", methods=["POST"])
@login_required
def act(case_id: int, action: str):
    """Assign, note, 回访, 整改, 追评 or close (form POST with CSRF token)."""
    if action not in ACTIONS:
        abort(404)
    error = _act(case_id, action, request.form.to_dict())
    if error:
        return _detail_page(_case_or_abort(case_id), error), 400
    flash(ACTION_DONE[action])
    return redirect(url_for("cases.detail", case_id=case_id), code=303)


@bp.route("/cases/settings", methods=["GET", "POST"])
@roles_required(*SETTINGS_ROLES)
def settings():
    """Deadline, grouping time and the holiday / 调休 list."""
    db = get_db()
    error = None
    if request.method == "POST":
        form = request.form
        try:
            what = form.get("what")
            if what == "settings":
                values = {k: form.get(k, "") for k in ("contact_days", "deadline_days", "revisit_days", "group_minutes")
                          if k in form}
                fu.set_settings(db, **values)
                audit("settings.followup", values)
                flash("设置已保存")
            elif what == "holiday":
                fu.set_holiday(db, form.get("day", ""), form.get("kind", fu.HOLIDAY), form.get("name", ""))
                audit("settings.holiday.add", {"day": form.get("day"), "kind": form.get("kind"),
                                               "name": form.get("name")})
                flash("已保存节假日")
            elif what == "holiday_delete":
                fu.delete_holiday(db, form.get("day", ""))
                audit("settings.holiday.delete", {"day": form.get("day")})
                flash("已删除")
            else:
                abort(400, description="未知的设置操作")
        except fu.CaseError as exc:
            error = str(exc)
        if error is None:
            return redirect(url_for("cases.settings"), code=303)
    cal, today = fu.calendar(db), get_clock().now().date()
    uncovered = [year for year in (today.year, today.year + 1) if not cal.covers(year)]
    overrides = [h | {"statutory": fu.statutory_name(date.fromisoformat(h["day"]))} for h in fu.list_holidays(db)]
    return render_template("cases/settings.html", settings=fu.get_settings(db), holidays=overrides,
                           calendar=cal, uncovered=uncovered,
                           error=error), (400 if error else 200)


# --- JSON API ----------------------------------------------------------------------------

def _json_case(case: dict) -> dict:
    return {k: v for k, v in case.items()}


@bp.route("/api/v1/cases")
@login_required
def api_list():
    """Cases as JSON, same filters and scoping as the page."""
    cases = _query_cases()
    return jsonify(cases=[_json_case(c) for c in cases], count=len(cases))


@bp.route("/api/v1/cases/<int:case_id>")
@login_required
def api_detail(case_id: int):
    """One case with votes and notes."""
    return jsonify(_json_case(_case_or_abort(case_id)))


@bp.route("/api/v1/cases/<int:case_id>/<action>", methods=["POST"])
@login_required
def api_act(case_id: int, action: str):
    """assign {assignee} | note {text} | callback {result, note} | rectify {note} | revisit {result, note} |
    close {code, reason}; JSON or form body."""
    if action not in ACTIONS:
        abort(404)
    values = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    if not isinstance(values, dict):
        return jsonify(error="bad_request", message="body must be a JSON object"), 400
    error = _act(case_id, action, {k: str(v) for k, v in values.items()})
    if error:
        return jsonify(error="invalid", message=error), 400
    return jsonify(_json_case(_case_or_abort(case_id)))


_CASE_PARAMS = [
    {"name": "county", "in": "query", "schema": {"type": "string"}},
    {"name": "status", "in": "query", "schema": {"type": "string", "enum": [*fu.STATUSES, "active"]}},
    {"name": "overdue", "in": "query", "schema": {"type": "boolean"}},
    {"name": "assignee", "in": "query", "schema": {"type": "string"}},
    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
]
_ID = {"name": "case_id", "in": "path", "required": True, "schema": {"type": "integer"}}
OPENAPI_PATHS = {
    "/api/v1/cases": {"get": {"summary": "不满意督办件列表（按县区权限过滤）", "tags": ["cases"],
                              "parameters": _CASE_PARAMS, "responses": {"200": {"description": "cases, count"}}}},
    "/api/v1/cases/{case_id}": {"get": {"summary": "督办件详情（含评价与备注）", "tags": ["cases"], "parameters": [_ID],
                                        "responses": {"200": {"description": "case"}, "403": {"description": "其他县区"},
                                                      "404": {"description": "不存在"}}}},
    "/api/v1/cases/{case_id}/{action}": {"post": {
        "summary": "处理督办件：assign {assignee 账号} / note {text} / callback {result, note} / rectify {note} / "
                   "revisit {result, note}（追评） / close {code, reason}",
        "tags": ["cases"],
        "parameters": [_ID, {"name": "action", "in": "path", "required": True,
                             "schema": {"type": "string", "enum": list(ACTIONS)}}],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": {"description": "the updated case"}, "400": {"description": "validation error"},
                      "403": {"description": "not allowed"}}}},
}
