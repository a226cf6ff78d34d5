"""The assessment office's documents and the indicator APIs: the monthly bulletin page and its
downloads, the indicators of a level and month, and the upward aggregate for the province
(a provincial system pulls it with an API token). Only HTTP here: the figures come from
analytics.indicators and analytics.output."""

from __future__ import annotations

import math
from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, render_template, request, send_file

from analytics.indicators import LEVELS, unit_indicators
from analytics.model.indicators import LABELS
from analytics.output.bulletin import FORMATS, build_bulletin, render_bulletin
from analytics.output.upward import LEVEL_MAPPINGS, render_upward, upward_rows
from manyi.periods import Month

from .auth import audit, current_user, roles_required, visible_counties
from .context import get_clock, get_db, get_registry, get_store, start_worker
from .tables import download

bp = Blueprint("documents", __name__)
SCHEDULE_SECONDS = 60.0
DOCUMENT_ROLES = ("admin", "city", "assessment")          # city-wide documents
UPWARD_ROLES = ("admin", "assessment")


def _month(text: str | None, default: Month) -> Month:
    if not text:
        return default
    try:
        return Month.parse(text)
    except ValueError:
        abort(400, description="月份格式应为 2026-11")


def _last_month() -> Month:
    return Month.containing(get_clock().now()).previous()


@bp.route("/bulletins")
@roles_required(*DOCUMENT_ROLES)
def bulletins():
    """The page: pick a month and a format; the bulletin of last month is the default."""
    now = Month.containing(get_clock().now())
    months, m = [], now
    for _ in range(13):
        months.append(m)
        m = m.previous()
    from analytics.center.documents import bulletin_rows

    from manyi.periods import Quarter

    from .imports import REPORT_FORMATS

    return render_template("documents/bulletins.html", months=months, default=_last_month(), formats=FORMATS,
                           mappings=LEVEL_MAPPINGS, generated=bulletin_rows(get_db()), report_formats=REPORT_FORMATS,
                           quarter=Quarter.containing(get_clock().now()).previous(),
                           can_upward=current_user().role in UPWARD_ROLES)


@bp.route("/bulletins/files/<month>.<fmt>")
@roles_required(*DOCUMENT_ROLES)
def bulletin_file(month: str, fmt: str):
    """A bulletin the schedule generated, as it was generated (the notification links here)."""
    from analytics.center.documents import bulletin_row

    row = bulletin_row(get_db(), str(_month(month, _last_month())))
    if row is None or fmt not in row["files"] or not Path(row["files"][fmt]["path"]).is_file():
        abort(404, description=f"{month} 的月度通报尚未生成")
    audit("bulletin.download", {"month": month, "format": fmt})
    return send_file(row["files"][fmt]["path"], as_attachment=True, download_name=f"满意度月度通报_{month}.{fmt}")


def bulletin_directory(app) -> Path:
    """Where the scheduled bulletins are kept: BULLETIN_DIR, else ``bulletins/`` beside the center database."""
    return Path(app.config.get("BULLETIN_DIR") or Path(app.config["CENTER_DB"]).parent / "bulletins")


def init_app(app) -> None:
    """Start the monthly schedule (1st of the month, 08:00 China time) when BACKGROUND_WORKERS is on."""
    if not app.config.get("BACKGROUND_WORKERS"):
        return
    from analytics.output.monthly import run_schedule

    start_worker(app, "bulletins", SCHEDULE_SECONDS, lambda: run_schedule(
        get_store(app), get_registry(app), get_db(app), get_clock(app).now(), directory=bulletin_directory(app),
        link_base=app.config.get("PUBLIC_URL", ""), targets=app.config.get("NOTIFY_WEBHOOKS")))


@bp.route("/bulletins/download")
@roles_required(*DOCUMENT_ROLES)
def bulletin_form():
    """The page's form: ?month=2026-11&format=pdf."""
    return bulletin(request.args.get("month", ""), request.args.get("format", "pdf"))


@bp.route("/bulletins/<month>.<fmt>")
@roles_required(*DOCUMENT_ROLES)
def bulletin(month: str, fmt: str):
    """One month's bulletin as pdf, xlsx or html (html opens in the browser to read and print)."""
    if fmt not in FORMATS:
        abort(404, description=f"通报格式应为 {'/'.join(FORMATS)}")
    m = _month(month, _last_month())
    data = render_bulletin(build_bulletin(get_store(), get_registry(), get_db(), m, now=get_clock().now()), fmt)
    audit("bulletin.download", {"month": str(m), "format": fmt})
    if fmt == "html":
        return Response(data, content_type="text/html; charset=utf-8")
    return download(data, f"满意度月度通报_{m}.{fmt}", fmt)


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


@bp.route("/api/v1/indicators")
@roles_required("admin", "city", "county", "assessment")
def api_indicators():
    """The indicators of every unit of a level for a month (county users: their county's units)."""
    level = request.args.get("level", "county")
    if level not in LEVELS:
        abort(400, description=f"level 应为 {'/'.join(LEVELS)}")
    m = _month(request.args.get("month"), Month.containing(get_clock().now()))
    visible = visible_counties()
    if level == "city" and visible is not None:
        abort(403, description="县区账户只能查看本县区")
    table = unit_indicators(get_store(), get_registry(), get_db(), level, m.start, m.end, now=get_clock().now())
    if visible is not None:
        table = table[table["county_code"].isin(visible)]
    rows = [{k: _clean(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
    return jsonify(month=str(m), level=level, labels=LABELS, rows=rows)


@bp.route("/api/v1/upward")
@roles_required(*UPWARD_ROLES)
def api_upward():
    """The upward aggregate of a month (CSV or JSON), the same bytes as ``manyi export upward``."""
    m = _month(request.args.get("month"), _last_month())
    fmt = request.args.get("format", "json")
    levels = request.args.get("levels", "standard")
    if fmt not in ("json", "csv") or levels not in LEVEL_MAPPINGS:
        abort(400, description="format 应为 json/csv，levels 应为 " + "/".join(LEVEL_MAPPINGS))
    now = get_clock().now()
    rows = upward_rows(get_store(), get_registry(), get_db(), m, now=now, levels=levels)
    data = render_upward(rows, fmt, month=m, levels=levels, provisional=now < m.end)
    audit("upward.export", {"month": str(m), "format": fmt})
    return Response(data, content_type="application/json; charset=utf-8" if fmt == "json" else "text/csv; charset=utf-8")


OPENAPI_PATHS = {
    "/api/v1/indicators": {"get": {
        "summary": "好差评指标：某级全部单位某月的评价数、满意度、综合得分、差评率、评价率、回访率、整改率等（按渠道）",
        "tags": ["indicators"],
        "parameters": [{"name": "level", "in": "query", "schema": {"type": "string", "enum": list(LEVELS)}},
                       {"name": "month", "in": "query", "schema": {"type": "string", "example": "2026-11"}}],
        "responses": {"200": {"description": "month, level, labels, rows"}}}},
    "/api/v1/upward": {"get": {
        "summary": "数据归集：每个单位、每月、每个渠道一行（区划代码、五级评价数、综合得分、评价率）；已结束的月份每次字节相同",
        "tags": ["indicators"],
        "parameters": [{"name": "month", "in": "query", "schema": {"type": "string", "example": "2026-11"}},
                       {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}},
                       {"name": "levels", "in": "query", "schema": {"type": "string", "enum": list(LEVEL_MAPPINGS)}}],
        "responses": {"200": {"description": "the export document"}}}},
}
