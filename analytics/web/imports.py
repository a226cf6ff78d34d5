"""Imports and reports: upload the 12333 survey and the composite scores, download
templates and the quarterly report.

Uploads go through C1's importers (:func:`analytics.survey.import_survey`,
:func:`analytics.scores.import_scores`); their :class:`ImportReport` is shown on the
page (rows read, imported, duplicates, rejected rows with row/column/value/reason,
unmatched names with the closest candidates). A file that cannot be read at all shows
the reader's message. Uploads are for the assessment office and administrators;
reports (C2's :func:`analytics.report.render_report`) also for city staff. Every upload
and download is audited.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, render_template, request

from manyi.exc import ManyiError
from manyi.periods import Quarter

from .auth import audit, roles_required
from .context import get_clock, get_db, get_registry, get_store
from .tables import cn_time, download, pct

bp = Blueprint("imports", __name__)
bp.add_app_template_filter(cn_time, "cn_time")
bp.add_app_template_filter(pct, "pct")

UPLOADERS = ("admin", "assessment")
REPORT_ROLES = ("admin", "city", "assessment")
KINDS = {"survey": "12333 电话回访", "scores": "综合考核得分"}
REPORT_FORMATS = ("xlsx", "html", "csv")


def _quarter(text: str | None) -> Quarter:
    if not text:
        return Quarter.containing(get_clock().now())
    try:
        return Quarter.parse(text)
    except ValueError:
        abort(400, description=f"季度 {text!r} 格式应为 2026Q3")


def _page(status: int = 200, **extra):
    from analytics.importing import REASON_LABELS, import_history
    from analytics.quarter import published
    db = get_db()
    context = dict(kinds=KINDS, history=import_history(db)[:30], published=published(db), reasons=REASON_LABELS,
                   quarter=str(_quarter(None)), previous=str(_quarter(None).previous()), report=None, error=None,
                   formats=REPORT_FORMATS)
    context.update(extra)
    return render_template("imports/index.html", **context), status


def run_import(kind: str):
    """Run one upload from the request: (ImportReport | None, error message | None, quarter)."""
    from analytics.scores import import_scores
    from analytics.survey import import_survey
    quarter = _quarter(request.form.get("quarter"))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return None, "请选择要上传的文件", quarter
    data = upload.read()
    if not data:
        return None, f"文件 {upload.filename} 是空的", quarter
    importer = import_survey if kind == "survey" else import_scores
    replace = bool(request.form.get("replace")) if kind == "survey" else True
    try:
        report = importer(get_db(), get_registry(), data, quarter, filename=upload.filename, replace=replace)
    except ManyiError as exc:
        audit(f"import.{kind}.failed", {"file": upload.filename, "quarter": str(quarter), "error": str(exc)})
        return None, f"无法读取文件：{exc}", quarter
    audit(f"import.{kind}", {"file": upload.filename, "quarter": str(quarter), "rows_read": report.rows_read,
                             "imported": report.imported, "rejected": len(report.rejected), "replace": replace})
    return report, None, quarter


@bp.route("/imports")
@roles_required(*UPLOADERS)
def index():
    """Upload forms, templates, past imports and the report download."""
    return _page()


@bp.route("/imports/<kind>", methods=["POST"])
@roles_required(*UPLOADERS)
def upload(kind: str):
    """Import an uploaded file and show its validation report."""
    if kind not in KINDS:
        abort(404)
    report, error, quarter = run_import(kind)
    if error:
        return _page(400, error=error, kind=kind)
    return _page(200, report=report, kind=kind)


@bp.route("/imports/template/<kind>.<fmt>")
@roles_required(*UPLOADERS)
def template(kind: str, fmt: str):
    """The blank survey or score sheet (xlsx or csv)."""
    from analytics.scores import scores_template
    from analytics.survey import survey_template
    if kind not in KINDS or fmt not in ("xlsx", "csv"):
        abort(404)
    data = survey_template(fmt) if kind == "survey" else scores_template(fmt, get_registry())
    return download(data, f"{'12333回访' if kind == 'survey' else '综合考核得分'}模板.{fmt}", fmt)


@bp.route("/reports")
@roles_required(*REPORT_ROLES)
def report():
    """The quarterly report: ?quarter=2026Q3&format=xlsx|html|csv[&result=<published id>]."""
    from analytics import quarter as q
    from analytics.report import render_report
    fmt = request.args.get("format", "xlsx")
    if fmt not in REPORT_FORMATS:
        abort(400, description=f"报告格式应为 {'/'.join(REPORT_FORMATS)}")
    result_id = request.args.get("result")
    if result_id:
        try:
            result = q.load_published(get_db(), int(result_id))
        except (ValueError, q.ResultNotFound):
            abort(404, description=f"已发布结果 {result_id} 不存在")
    else:
        quarter = _quarter(request.args.get("quarter"))
        result = q.compute_quarter(get_store(), get_registry(), get_db(), quarter, now=get_clock().now())
    data = render_report(result, fmt)
    if fmt == "html" and getattr(get_registry(), "sample", False):
        data = data.replace(b"<body>", SAMPLE_REPORT_BANNER.encode("utf-8"), 1)
    audit("report.download", {"quarter": str(result.quarter), "format": fmt, "result": result.result_id})
    if fmt == "html" and request.args.get("inline") == "1":
        # Opened in the browser to read and print (Ctrl+P); the report's own CSS has the A4 print layout.
        return Response(data, mimetype="text/html; charset=utf-8")
    return download(data, f"满意度季度报告_{result.quarter}.{fmt}", fmt)


# Put at the top of an HTML report computed on the generated sample registry (also printed).
SAMPLE_REPORT_BANNER = (
    '<body><p style="border:1.5pt solid #b7950b;background:#fcf3cf;color:#7d6608;padding:4pt 6pt;'
    'font-weight:bold;-webkit-print-color-adjust:exact;print-color-adjust:exact">'
    "模拟数据：本报告基于生成的菏泽示例登记表和模拟评价，仅供演示和测试，不代表真实满意度，不得用于考核。</p>")


# --- JSON API -------------------------------------------------------------------------------

@bp.route("/api/v1/imports")
@roles_required(*UPLOADERS)
def api_history():
    """Past imports, newest first."""
    from analytics.importing import import_history
    return jsonify(imports=import_history(get_db()))


@bp.route("/api/v1/imports/<kind>", methods=["POST"])
@roles_required(*UPLOADERS)
def api_upload(kind: str):
    """Upload a survey or score file (multipart: file, quarter[, replace]); returns the ImportReport."""
    if kind not in KINDS:
        abort(404)
    report, error, quarter = run_import(kind)
    if error:
        return jsonify(error="import_failed", message=error, quarter=str(quarter)), 400
    return jsonify(report.to_dict())


OPENAPI_PATHS = {
    "/api/v1/imports": {"get": {"summary": "导入记录（考核办、管理员）", "tags": ["imports"],
                                "responses": {"200": {"description": "imports"}}}},
    "/api/v1/imports/{kind}": {"post": {
        "summary": "上传 12333 回访（survey）或综合考核得分（scores）文件，返回校验报告", "tags": ["imports"],
        "parameters": [{"name": "kind", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": list(KINDS)}}],
        "requestBody": {"content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}, "quarter": {"type": "string"},
                           "replace": {"type": "boolean"}}}}}},
        "responses": {"200": {"description": "ImportReport"}, "400": {"description": "文件无法读取"},
                      "403": {"description": "角色无权"}}}},
}
