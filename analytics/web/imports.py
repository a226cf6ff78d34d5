"""Imports and reports: upload the 12333 survey and the composite scores, download
templates and the quarterly report.

Uploads go through the importers (:func:`analytics.imports.survey.import_survey`,
:func:`analytics.imports.scores.import_scores`); their :class:`ImportReport` is shown on the
page (rows read, imported, duplicates, rejected rows with row/column/value/reason,
unmatched names with the closest candidates). Imports are all-or-nothing: when a row is
rejected nothing is imported (status 422) unless the form's 「仅导入有效行，跳过错误行」 box
(field ``partial``) is ticked. A file that cannot be read at all shows the reader's
message. Uploads are limited by the app's MAX_CONTENT_LENGTH (a clear 413 page), to .xlsx,
.csv and .txt files whose content is not a program, image or archive (415), and are only
ever read in memory: the client's file name is kept only as a sanitised display name
(:func:`display_name`) in the import log and the audit. Uploads are for the assessment
office and administrators; reports (:func:`analytics.output.report.render_report`) also for
city staff. Every upload and download is audited.
"""

from __future__ import annotations

import re
import unicodedata

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from manyi.exc import ManyiError
from manyi.periods import Quarter

from .auth import audit, current_user, roles_required
from .context import get_clock, get_db, get_registry, get_store
from .tables import cn_time, download, pct

bp = Blueprint("imports", __name__)
bp.add_app_template_filter(cn_time, "cn_time")
bp.add_app_template_filter(pct, "pct")

UPLOADERS = ("admin", "assessment")
REPORT_ROLES = ("admin", "city", "assessment")
KINDS = {"survey": "12333 电话回访", "scores": "综合考核得分"}
REPORT_FORMATS = ("xlsx", "html", "csv", "pdf")
UPLOAD_EXTENSIONS = (".xlsx", ".csv", ".txt")
MAX_NAME_CHARS = 120

# control characters, line/paragraph separators and bidirectional overrides (which can make
# "gpj.exe" display as "exe.jpg")
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def display_name(name: str | None) -> str:
    """A client-supplied file name made safe to show, store and log: control characters and
    bidi overrides removed, only the last path component (``../../etc/passwd`` → ``passwd``),
    no leading dots, at most MAX_NAME_CHARS characters (the extension kept); ``upload`` when
    nothing remains. Uploaded files are never written to disk under any name."""
    text = _UNSAFE_NAME_CHARS.sub("", unicodedata.normalize("NFC", name or ""))
    text = re.split(r"[\\/]", text)[-1].strip().lstrip(".").strip()
    if len(text) > MAX_NAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        ext = ext if dot and len(ext) <= 10 else ""
        text = (stem if ext else text)[: MAX_NAME_CHARS - len(ext) - 2] + "…" + (f".{ext}" if ext else "")
    return text or "upload"


def _limit_mb() -> str:
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    return f"{limit / 2**20:g} MB"


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc):
    """An upload over MAX_CONTENT_LENGTH: a clear message in Chinese, never a stack trace."""
    message = f"上传的文件过大：上限为 {_limit_mb()}。请删除多余的工作表或列、另存为 CSV，或分季度分批上传。"
    if request.path.startswith("/api/"):
        return jsonify(error="file_too_large", message=message), 413
    # The plain error page, not the import page: the request may not have passed the role
    # check yet (the CSRF check reading the form raises this), so show no import data.
    return render_template("error.html", code=413, title="文件过大", message=message), 413


def _quarter(text: str | None) -> Quarter:
    if not text:
        return Quarter.containing(get_clock().now())
    try:
        return Quarter.parse(text)
    except ValueError:
        abort(400, description=f"季度 {text!r} 格式应为 2026Q3")


def _page(status: int = 200, **extra):
    from analytics.center.imports import import_history
    from analytics.imports import REASON_LABELS
    from analytics.quarter import published
    db = get_db()
    context = dict(kinds=KINDS, history=import_history(db)[:30], published=published(db), reasons=REASON_LABELS,
                   quarter=str(_quarter(None)), previous=str(_quarter(None).previous()), report=None, error=None,
                   formats=REPORT_FORMATS)
    context.update(extra)
    return render_template("imports/index.html", **context), status


def _refuse_type(name: str, data: bytes) -> str | None:
    """Why an upload is not a spreadsheet we read (None when it may be one)."""
    from analytics.imports import sniff_binary
    if not name.lower().endswith(UPLOAD_EXTENSIONS):
        return f"文件类型不支持：{name}。只接受 Excel 工作簿（.xlsx）或 CSV 文件（.csv，Excel“Unicode 文本”为 .txt）"
    what = sniff_binary(data)
    if what:
        return f"文件类型不支持：{name} 的内容不是表格（{what}）。请上传 .xlsx 或 .csv 文件"
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return f"文件类型不支持：{name} 是旧版 Excel 97-2003（.xls）文件，请另存为 .xlsx 或 CSV"
    if name.lower().endswith((".csv", ".txt")) and data[:4] == b"PK\x03\x04" and b"xl/workbook.xml" not in data:
        return f"文件类型不支持：{name} 是压缩包（zip），不是 CSV 文件"
    return None


def run_import(kind: str):
    """Run one upload from the request: (ImportReport | None, error message | None, quarter, status)."""
    from analytics.imports.scores import import_scores
    from analytics.imports.survey import import_survey
    quarter = _quarter(request.form.get("quarter"))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return None, "请选择要上传的文件", quarter, 400
    name = display_name(upload.filename)
    data = upload.read()
    if not data:
        return None, f"文件 {name} 是空的", quarter, 400
    refused = _refuse_type(name, data)
    if refused:
        audit(f"import.{kind}.refused", {"file": name, "quarter": str(quarter), "bytes": len(data), "error": refused})
        return None, refused, quarter, 415
    importer = import_survey if kind == "survey" else import_scores
    replace = bool(request.form.get("replace")) if kind == "survey" else True
    partial = request.form.get("partial") in ("1", "true", "on", "yes")
    try:
        report = importer(get_db(), get_registry(), data, quarter, filename=name, replace=replace, partial=partial)
    except ManyiError as exc:
        audit(f"import.{kind}.failed", {"file": name, "quarter": str(quarter), "error": str(exc)})
        return None, f"无法读取文件：{exc}", quarter, 400
    audit(f"import.{kind}" + (".rejected" if report.aborted else ""),
          {"file": name, "quarter": str(quarter), "rows_read": report.rows_read, "imported": report.imported,
           "rejected": len(report.rejected), "replace": replace, "partial": partial})
    return report, None, quarter, 422 if report.aborted else 200


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
    report, error, quarter, status = run_import(kind)
    if error:
        return _page(status, error=error, kind=kind)
    return _page(status, report=report, kind=kind)


@bp.route("/imports/template/<kind>.<fmt>")
@roles_required(*UPLOADERS)
def template(kind: str, fmt: str):
    """The blank survey or score sheet (xlsx or csv)."""
    from analytics.imports.scores import scores_template
    from analytics.imports.survey import survey_template
    if kind not in KINDS or fmt not in ("xlsx", "csv"):
        abort(404)
    data = survey_template(fmt) if kind == "survey" else scores_template(fmt, get_registry())
    return download(data, f"{'12333回访' if kind == 'survey' else '综合考核得分'}模板.{fmt}", fmt)


@bp.route("/reports")
@roles_required(*REPORT_ROLES)
def report():
    """The quarterly report: ?quarter=2026Q3&format=xlsx|html|csv|pdf[&result=<published id>]."""
    from analytics import quarter as q
    from analytics.output.report import render_report
    if not request.args:
        # /reports alone (a bookmark, a typed address): the page that asks which report, not a download
        uploader = current_user().role in UPLOADERS
        return redirect(url_for("imports.index") + "#form-report" if uploader else url_for("documents.bulletins")
                        + "#form-quarterly")
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
        return Response(data, content_type="text/html; charset=utf-8")
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
    from analytics.center.imports import import_history
    return jsonify(imports=import_history(get_db()))


@bp.route("/api/v1/imports/<kind>", methods=["POST"])
@roles_required(*UPLOADERS)
def api_upload(kind: str):
    """Upload a survey or score file (multipart: file, quarter[, replace][, partial]); returns the
    ImportReport (422 with ``aborted`` true when rows were rejected and nothing was imported)."""
    if kind not in KINDS:
        abort(404)
    report, error, quarter, status = run_import(kind)
    if error:
        return jsonify(error="unsupported_type" if status == 415 else "import_failed", message=error,
                       quarter=str(quarter)), status
    return jsonify(report.to_dict()), status


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
                           "replace": {"type": "boolean"},
                           "partial": {"type": "boolean", "description": "仅导入有效行，跳过错误行"}}}}}},
        "responses": {"200": {"description": "ImportReport"}, "400": {"description": "文件无法读取"},
                      "403": {"description": "角色无权"}, "413": {"description": "文件过大"},
                      "415": {"description": "文件类型不支持"},
                      "422": {"description": "有错误行，未导入任何数据（ImportReport, aborted=true）"}}}},
}
