"""Table downloads of the feature pages (cases, rankings): CSV for Excel and XLSX.

Cells that a spreadsheet would read as a formula (=, +, -, @ first) are prefixed with an
apostrophe, since names come from imported files and must never run as formulas.
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote

from flask import Response, abort

FORMATS = {"csv": "text/csv; charset=utf-8",   # content_type as is (mimetype= would add a second charset)
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def safe_cell(value):
    """The value as a spreadsheet should show it (no formula injection; None as empty)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def table_bytes(rows: list[dict], columns: list[tuple[str, str]], fmt: str, sheet: str = "Sheet1") -> bytes:
    """``rows`` as CSV (UTF-8 with BOM, so Excel reads Chinese) or XLSX; ``columns`` = [(key, header)]."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([label for _, label in columns])
        for row in rows:
            writer.writerow([safe_cell(row.get(key)) for key, _ in columns])
        return ("\ufeff" + out.getvalue()).encode("utf-8")
    if fmt == "xlsx":
        from openpyxl import Workbook
        book = Workbook()
        ws = book.active
        ws.title = sheet[:31]
        ws.append([label for _, label in columns])
        for row in rows:
            ws.append([safe_cell(row.get(key)) for key, _ in columns])
        buf = io.BytesIO()
        book.save(buf)
        return buf.getvalue()
    raise ValueError(f"format {fmt!r} is not csv or xlsx")


def safe_filename(filename: str) -> str:
    """``filename`` without folders, quotes or control characters (the name of a download, never a path)."""
    name = re.sub(r'[\x00-\x1f\x7f"\\/:*?<>|;]', "_", filename or "")
    name = name.lstrip(".") or "download"
    return name[:150]


def download(data: bytes, filename: str, fmt: str) -> Response:
    """A file download response with a UTF-8 file name (sanitised: no folders, quotes or line breaks)."""
    mimetype = FORMATS.get(fmt) or {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}.get(fmt, "application/octet-stream")
    filename = safe_filename(filename)
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return Response(data, content_type=mimetype, headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"})


def table_download(rows, columns, fmt: str, stem: str) -> Response:
    """Rows as a CSV/XLSX download; 404 for another format."""
    if fmt not in FORMATS:
        abort(404, description=f"不支持的导出格式：{fmt}")
    return download(table_bytes(rows, columns, fmt, stem), f"{stem}.{fmt}", fmt)


def link_args(args, *drop: str) -> dict:
    """Template helper: the query parameters to carry into a link, without ``drop`` and without the
    ``_external``/``_scheme``/``_anchor`` names that url_for would obey (``?_scheme=javascript``)."""
    return {k: v for k, v in args.items() if not k.startswith("_") and k not in drop}


def cn_time(value) -> str:
    """Template filter: an ISO time as ``YYYY-MM-DD HH:MM`` China time; a midnight deadline as ``… 24:00``."""
    if not value:
        return "—"
    from datetime import datetime, timedelta

    from manyi.periods import to_local
    try:
        moment = to_local(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value)
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return f"{(moment - timedelta(days=1)).date().isoformat()} 24:00"
    return moment.strftime("%Y-%m-%d %H:%M")


def pct(value, digits: int = 1) -> str:
    """Template filter: 0.853 -> 85.3%; None -> —."""
    if value is None or value != value:       # None or NaN
        return "—"
    return f"{value * 100:.{digits}f}%"


def due_text(deadline, now, closed: bool = False) -> str:
    """Template filter: how far a deadline is from ``now`` in China-time calendar days, e.g. 剩 2 天 / 今日到期 / 超期 5 天."""
    if not deadline or closed:
        return ""
    from datetime import datetime, timedelta

    from manyi.periods import to_local
    try:
        end = to_local(datetime.fromisoformat(str(deadline)))
    except ValueError:
        return ""
    current = to_local(now)
    if current >= end:
        # A deadline at midnight is the end of the day before: overdue since then.
        days = (current.date() - (end - timedelta(seconds=1)).date()).days
        return f"超期 {days} 天" if days >= 1 else "已到期"
    days = ((end - timedelta(seconds=1)).date() - current.date()).days
    return "今日到期" if days == 0 else f"剩 {days} 天"

