"""Rankings: counties and townships of a quarter by corrected score (Heze model).

The figures are :func:`analytics.quarter.compute_quarter` (live, from the store and
the imports) or a published result (:func:`analytics.quarter.load_published`). The table
shows rank, the coefficient k, n, the satisfaction rate with its Wilson 95% interval and
the flags; it sorts by any column and exports as CSV or XLSX. County staff see their
own county and its townships only.
"""

from __future__ import annotations

import math

from flask import Blueprint, abort, current_app, render_template, request

from manyi.exc import ManyiError
from manyi.periods import Quarter

from .auth import audit, login_required, visible_counties
from .context import get_clock, get_db, get_registry, get_store
from .shared import JsonBody, SharedResults, json_body, json_response, shared_results
from .tables import cn_time, pct, table_download

bp = Blueprint("rankings", __name__)
bp.add_app_template_filter(cn_time, "cn_time")
bp.add_app_template_filter(pct, "pct")

LEVELS = {"county": "县区", "township": "乡镇（街道）"}
COLUMNS = [  # key, header, kind (for display and sorting)
    ("rank", "名次", "int"), ("code", "代码", "text"), ("name", "名称", "text"), ("county_name", "所属县区", "text"),
    ("F", "修正后得分", "num2"), ("G", "基础得分", "num2"), ("k", "满意度系数", "num4"), ("y", "综合满意度", "num2"),
    ("n_T", "终端评价数", "int"), ("rate_T", "终端满意率", "pct"), ("ci_low", "满意率区间下限", "pct"),
    ("ci_high", "满意率区间上限", "pct"), ("x_T", "终端得分", "num2"), ("n_P", "电话回访数", "int"),
    ("x_P", "回访得分", "num2"), ("flags", "提示", "text"),
]
KEYS = [c[0] for c in COLUMNS]
# Units shown after a header on the page (exports keep the bare headers).
UNITS = {"F": "分", "G": "分", "y": "分", "x_T": "分", "x_P": "分", "n_T": "次", "n_P": "份"}
HEADER_OVERRIDES = {"ci_low": "满意率 95% 区间"}       # ci_low and ci_high are shown as one range column


def _clean(value):
    if value is None:
        return None
    try:
        if isinstance(value, float) and math.isnan(value):
            return None
    except TypeError:
        pass
    if hasattr(value, "item"):            # numpy scalars
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def _result(quarter: Quarter, result_id: str | None):
    """The published result ``result_id``, or the quarter computed live; shared by concurrent requests.

    A published result never changes. A live result is reused while its inputs are the
    same: the store's data version (when the store has one: SQLiteStore's newest vote id,
    asked at most every RANKINGS_VERSION_SECONDS), the registry, the survey answers and
    base scores (read again at most every RANKINGS_INPUTS_SECONDS); a store without a data version reuses it for
    RANKINGS_CACHE_SECONDS. RANKINGS_CACHE_SECONDS = 0 computes every request afresh.
    """
    from analytics import quarter as q
    db = get_db()
    ttl = float(current_app.config.get("RANKINGS_CACHE_SECONDS", 10.0))
    if result_id:
        try:
            rid = int(result_id)
        except ValueError:
            abort(404, description=f"已发布结果 {result_id} 不存在")

        def load():
            try:
                return q.load_published(db, rid)
            except q.ResultNotFound:
                abort(404, description=f"已发布结果 {result_id} 不存在")
        return shared_results("rankings").get(("published", rid), load, ttl=math.inf if ttl > 0 else 0)
    store, registry = get_store(), get_registry()
    # The imports are read again at most every RANKINGS_INPUTS_SECONDS (they change by hand, rarely).
    survey, scores, inputs_key = shared_results("rankings_inputs").get(
        str(quarter), lambda: _inputs(db, quarter), ttl=float(current_app.config.get("RANKINGS_INPUTS_SECONDS", 2.0)))
    data_version = getattr(store, "data_version", None)
    # The store's version is asked at most every RANKINGS_VERSION_SECONDS: one query per request
    # would make every request queue for the store's connection.
    stored = (shared_results("store_version").get(
        "votes", data_version, ttl=float(current_app.config.get("RANKINGS_VERSION_SECONDS", 1.0)))
        if callable(data_version) else None)
    version = (stored, id(registry), inputs_key)
    return shared_results("rankings").get(
        ("live", str(quarter)),
        lambda: q.compute_quarter(store, registry, db, quarter, survey=survey, scores=scores, now=get_clock().now()),
        ttl=math.inf if callable(data_version) and ttl > 0 else ttl, version=version)


def _inputs(db, quarter):
    """The quarter's survey counts and base scores, and a text that changes when they do."""
    from analytics.imports.scores import base_scores
    from analytics.imports.survey import survey_counts

    survey, scores = survey_counts(db, quarter), base_scores(db, quarter)
    return survey, scores, "\n".join("" if f is None else f.to_csv(index=False) for f in (survey, scores))


def _params():
    args = request.args
    try:
        quarter = Quarter.parse(args["quarter"]) if args.get("quarter") else Quarter.containing(get_clock().now())
    except ValueError:
        abort(400, description=f"季度 {args.get('quarter')!r} 格式应为 2026Q3")
    level = args.get("level", "county")
    if level not in LEVELS:
        abort(400, description=f"层级应为 county 或 township，收到 {level!r}")
    sort = args.get("sort", "rank")
    if sort not in KEYS:
        abort(400, description=f"不能按 {sort!r} 排序")
    order = "desc" if args.get("order") == "desc" else "asc"
    return quarter, level, sort, order, args.get("result") or None


def ranking_rows(result, level: str, visible: set[str] | None, sort: str = "rank", order: str = "asc") -> list[dict]:
    """Rows of the ranking table (plain Python values), scoped and sorted."""
    frame = result.counties if level == "county" else result.townships
    reg = get_registry()
    rows = []
    for record in frame.to_dict("records"):
        row = {k: _clean(v) for k, v in record.items()}
        county = row.get("county_code") if level == "township" else row.get("code")
        if visible is not None and county not in visible:
            continue
        row["county_code"] = county
        c = reg.counties.get(county or "")
        row["county_name"] = c.name if c else ""
        row["flags"] = row.get("flags") or ""
        rows.append(row)

    def key(row):
        value = row.get(sort)
        missing = value is None or value == ""
        return (missing, value if not missing else 0)
    rows.sort(key=key, reverse=False)
    if order == "desc":
        present = [r for r in rows if r.get(sort) not in (None, "")]
        rows = present[::-1] + [r for r in rows if r.get(sort) in (None, "")]
    return rows


def _load_result():
    """The request's result (published or live) with its level, sort and order; 400 if it cannot be computed."""
    quarter, level, sort, order, result_id = _params()
    try:
        result = _result(quarter, result_id)
    except ManyiError as exc:
        abort(400, description=f"无法计算 {quarter}：{exc}")
    return result, level, sort, order


def _load():
    result, level, sort, order = _load_result()
    return result, level, sort, order, ranking_rows(result, level, visible_counties(), sort, order)


@bp.route("/rankings")
@login_required
def index():
    """The ranking table of a quarter."""
    from analytics import quarter as q
    result, level, sort, order, rows = _load()
    return render_template("rankings/index.html", rows=rows, result=result, level=level, levels=LEVELS,
                           columns=COLUMNS, sort=sort, order=order, args=request.args, units=UNITS,
                           header_overrides=HEADER_OVERRIDES, total=len(result.counties if level == "county"
                                                                         else result.townships),
                           published=q.published(get_db()), quarter=str(result.quarter))


@bp.route("/rankings/export.<fmt>")
@login_required
def export(fmt: str):
    """The ranking table as CSV or XLSX."""
    result, level, sort, order, rows = _load()
    audit("rankings.export", {"quarter": str(result.quarter), "level": level, "format": fmt})
    return table_download(rows, [(k, h) for k, h, _ in COLUMNS], fmt, f"排名_{result.quarter}_{LEVELS[level]}")


@bp.route("/api/v1/rankings")
@login_required
def api_rankings():
    """The ranking of a quarter as JSON (same parameters and scoping as the page)."""
    result, level, sort, order = _load_result()
    visible = visible_counties()

    def body() -> JsonBody:
        rows = ranking_rows(result, level, visible, sort, order)
        return json_body(dict(quarter=str(result.quarter), level=level, result_id=result.result_id,
                              computed_at=result.computed_at.isoformat(), notes=list(result.notes),
                              rows=[{k: r.get(k) for k in (*KEYS, "county_code")} for r in rows]))
    # The JSON text of a shared result is kept with it, per level, order and scope.
    texts = result.extra.setdefault("api_json", SharedResults())
    key = (level, sort, order, None if visible is None else tuple(sorted(visible)))
    return json_response(texts.get(key, body, ttl=math.inf))


OPENAPI_PATHS = {
    "/api/v1/rankings": {"get": {
        "summary": "季度排名：修正后得分、满意度系数、样本量、满意率区间与提示（按县区权限过滤）", "tags": ["rankings"],
        "parameters": [
            {"name": "quarter", "in": "query", "schema": {"type": "string", "example": "2026Q3"}},
            {"name": "level", "in": "query", "schema": {"type": "string", "enum": list(LEVELS)}},
            {"name": "result", "in": "query", "description": "已发布结果编号；省略则实时计算", "schema": {"type": "integer"}},
            {"name": "sort", "in": "query", "schema": {"type": "string", "enum": KEYS}},
            {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}}],
        "responses": {"200": {"description": "quarter, level, rows"}, "400": {"description": "参数无效"}}}},
}
