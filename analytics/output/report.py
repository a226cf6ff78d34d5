"""The quarterly report of a :class:`~analytics.quarter.QuarterResult` as XLSX, HTML or CSV.

One table per concern, in this order and with these sheet names: 县区, 乡镇, 服务大厅,
窗口, 人员 (staff on the duty roster; only when the result has staff rows), 渠道对比
(terminal vs phone triangulation), 参数 (parameters, city means, input counts, notes).
Counties and townships are listed by rank (units flagged 样本不足 after the others, units
without a corrected score last).

- XLSX (openpyxl): bold header row, frozen header and name columns, column widths,
  number formats (counts ``0``, scores ``0.00``, coefficients ``0.0000``, rates ``0.0%``),
  autofilter, A4 landscape page setup.
- HTML: one self-contained page printable on A4 (print CSS, repeated table headers),
  Chinese headings, every name escaped.
- CSV: UTF-8 with BOM (Excel opens it correctly), the tables one after the other, each
  preceded by a ``# 表名`` row and separated by a blank row.

Every text cell of CSV and XLSX that starts with ``= + - @`` (or tab / carriage return)
is neutralised with a leading apostrophe so that a spreadsheet never runs it as a formula.

Times (计算时间, 发布时间) are shown in China time to the second: ``2026-11-22 11:09:29 (北京时间)``.

A result computed on sample data (``QuarterResult.sample``: the generated Heze registry,
simulated votes) is labelled 模拟数据 in every format: a banner at the top of the HTML
page; in XLSX a first sheet 说明 with the warning, the warning as the first row of 参数
and in the printed page header of every sheet (the tables themselves keep one header row,
so they stay machine-readable); in CSV a first ``# 模拟数据：…`` row and a blank row
before the tables.
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from manyi.exc import ConfigError
from manyi.periods import to_local

from ..imports import csv_bytes, neutralise_cell  # one definition for imports, reports and web tables

FORMATS = ("xlsx", "html", "csv", "pdf")
SAMPLE_WARNING = ("模拟数据：本报告基于生成的菏泽示例登记表和模拟评价，仅供演示和测试，"
                  "不代表真实满意度，不得用于考核。")
KIND_LABELS = {"district": "区", "county": "县", "zone": "开发区"}


# number formats: (excel format, text format for CSV/HTML)
_FMT = {
    "text": (None, None),
    "int": ("0", "{:.0f}"),
    "score": ("0.00", "{:.2f}"),
    "k": ("0.0000", "{:.4f}"),
    "pct": ("0.0%", None),
    "p": ("0.0000", "{:.4f}"),
    "stat": ("0.00", "{:.2f}"),
}


@dataclass
class Column:
    """One report column: header, number format kind, width (Excel characters) and values."""

    header: str
    kind: str
    width: float
    values: list


@dataclass
class Table:
    """One report table (an XLSX sheet, an HTML section, a CSV block)."""

    title: str
    columns: list[Column]
    freeze: str = "C2"

    @property
    def rows(self) -> int:
        """Number of data rows."""
        return len(self.columns[0].values) if self.columns else 0


def _v(value):
    """Plain Python value; None for NaN / NA."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        value = value.item()
    return value


def _col(frame: pd.DataFrame, key: str, header: str, kind: str, width: float, mapper=None) -> Column:
    values = [_v(v) for v in frame[key].tolist()] if key in frame else [None] * len(frame)
    if mapper:
        values = [mapper(v) for v in values]
    return Column(header, kind, width, values)


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    order = frame.assign(_r=frame["rank"].astype("Float64").fillna(math.inf))
    return order.sort_values(["_r", "code"], kind="stable").drop(columns="_r").reset_index(drop=True)


def _unit_columns(frame: pd.DataFrame, lead: list[Column]) -> list[Column]:
    return lead + [
        _col(frame, "n_T", "终端评价数 n", "int", 10),
        _col(frame, "S_T", "终端满意", "int", 9),
        _col(frame, "B_T", "终端基本满意", "int", 9),
        _col(frame, "U_T", "终端不满意", "int", 9),
        _col(frame, "excluded_T", "剔除票数", "int", 8),
        _col(frame, "rate_T", "满意率", "pct", 8),
        _col(frame, "ci_low", "95%下限", "pct", 8),
        _col(frame, "ci_high", "95%上限", "pct", 8),
        _col(frame, "x_T", "终端得分 x", "score", 9),
        _col(frame, "xs_T", "终端修正得分", "score", 10),
        _col(frame, "n_P", "电话回访数 n", "int", 10),
        _col(frame, "S_P", "电话满意", "int", 8),
        _col(frame, "B_P", "电话基本满意", "int", 9),
        _col(frame, "U_P", "电话不满意", "int", 8),
        _col(frame, "x_P", "电话得分", "score", 9),
        _col(frame, "xs_P", "电话修正得分", "score", 10),
        _col(frame, "y", "综合满意度 y", "score", 10),
        _col(frame, "k", "满意度系数 k", "k", 10),
        _col(frame, "k_clipped", "k 已截断", "text", 7, lambda v: "是" if v else ""),
        _col(frame, "G", "综合考核得分 G", "score", 11),
        _col(frame, "F", "修正后得分 F", "score", 11),
        _col(frame, "rank", "排名", "int", 6),
        _col(frame, "flags", "标记", "text", 24),
    ]


def _reported_columns(frame: pd.DataFrame, lead: list[Column]) -> list[Column]:
    return lead + [
        _col(frame, "n_T", "终端评价数 n", "int", 10),
        _col(frame, "S_T", "满意", "int", 8),
        _col(frame, "B_T", "基本满意", "int", 8),
        _col(frame, "U_T", "不满意", "int", 8),
        _col(frame, "excluded_T", "剔除票数", "int", 8),
        _col(frame, "rate_T", "满意率", "pct", 8),
        _col(frame, "ci_low", "95%下限", "pct", 8),
        _col(frame, "ci_high", "95%上限", "pct", 8),
        _col(frame, "x_T", "终端得分 x", "score", 9),
        _col(frame, "flags", "标记", "text", 20),
    ] + ([_col(frame, "transactions", "办件量", "int", 9),
          _col(frame, "eval_rate", "评价率", "pct", 8)] if "transactions" in frame else [])


def build_tables(result) -> list[Table]:
    """The report's tables, ready for any output format."""
    county_name = dict(zip(result.counties["code"], result.counties["name"]))
    town_name = dict(zip(result.townships["code"], result.townships["name"]))
    cname = lambda code: county_name.get(code, code or "")  # noqa: E731
    tname = lambda code: town_name.get(code, code or "")  # noqa: E731

    counties = _ranked(result.counties)
    townships = _ranked(result.townships)
    halls = result.halls.sort_values(["county_code", "township_code", "hall_id"], kind="stable", ignore_index=True)
    windows = result.windows.sort_values(["county_code", "township_code", "hall_id", "window_id"], kind="stable",
                                         ignore_index=True)
    tri = result.triangulation
    tables = [
        Table("县区", _unit_columns(counties, [
            _col(counties, "code", "代码", "text", 9), _col(counties, "name", "县区", "text", 14),
            _col(counties, "kind", "类型", "text", 7, lambda v: KIND_LABELS.get(v, v or ""))])),
        Table("乡镇", _unit_columns(townships, [
            _col(townships, "code", "代码", "text", 11), _col(townships, "name", "乡镇(街道)", "text", 14),
            _col(townships, "county_code", "所属县区", "text", 12, cname)])),
        Table("服务大厅", _reported_columns(halls, [
            _col(halls, "hall_id", "大厅编号", "text", 16), _col(halls, "name", "服务大厅", "text", 22),
            _col(halls, "county_code", "县区", "text", 12, cname),
            _col(halls, "township_code", "乡镇(街道)", "text", 14, tname)])),
        Table("窗口", _reported_columns(windows, [
            _col(windows, "window_id", "窗口编号", "text", 18), _col(windows, "name", "窗口", "text", 12),
            _col(windows, "hall_name", "服务大厅", "text", 22), _col(windows, "county_code", "县区", "text", 12, cname),
            _col(windows, "township_code", "乡镇(街道)", "text", 14, tname)]), freeze="C2"),
    ]
    staff = getattr(result, "staff", None)
    if staff is not None and len(staff):
        staff = staff.sort_values(["county_code", "township_code", "hall_id", "staff_id"], kind="stable",
                                  ignore_index=True)
        tables.append(Table("人员", _reported_columns(staff, [
            _col(staff, "staff_id", "人员编号", "text", 14), _col(staff, "name", "姓名", "text", 10),
            _col(staff, "windows", "窗口", "text", 20), _col(staff, "hall_name", "服务大厅", "text", 22),
            _col(staff, "county_code", "县区", "text", 12, cname),
            _col(staff, "township_code", "乡镇(街道)", "text", 14, tname)])))
    tables += [
        Table("渠道对比", [
            _col(tri, "code", "代码", "text", 9), _col(tri, "name", "县区", "text", 14),
            _col(tri, "n_T", "终端 n", "int", 8), _col(tri, "rate_T", "终端满意率", "pct", 10),
            _col(tri, "x_T", "终端得分", "score", 9),
            _col(tri, "n_P", "电话 n", "int", 8), _col(tri, "rate_P", "电话满意率", "pct", 10),
            _col(tri, "x_P", "电话得分", "score", 9), _col(tri, "diff", "得分差 (终端−电话)", "score", 12),
            _col(tri, "chi2", "χ²", "stat", 8), _col(tri, "df", "自由度", "int", 6),
            _col(tri, "p_value", "p 值", "p", 8),
            _col(tri, "low_expected", "期望频数<5", "text", 9, lambda v: "是" if v else ""),
            _col(tri, "flag", "标记", "text", 10)]),
        _parameter_table(result),
    ]
    return tables


_PARAM_LABELS = {
    "w_S": "满意 权重 w_S", "w_B": "基本满意 权重 w_B", "w_U": "不满意 权重 w_U",
    "m_T": "终端收缩强度 m_T", "m_P": "电话收缩强度 m_P", "lam": "电话权重 λ（参数）",
    "mode": "系数模式", "beta": "相对模式斜率 β", "k_min": "系数下限 k_min", "k_max": "系数上限 k_max",
    "min_n": "最小样本量 min_n", "alpha": "渠道对比显著性水平 α",
}
_INPUT_LABELS = {
    "votes": "本季度终端评价数（不含剔除）", "excluded": "剔除的疑似滥用票数", "unregistered_votes": "未登记终端的票数",
    "count_rows": "读取的计数行数", "moved_terminals": "季度内移动过的终端数", "raw_votes_read": "逐票读取的票数",
    "buckets": "计数粒度", "survey_answers": "电话回访答复数", "survey_unmatched": "未匹配单位的回访答复数",
    "base_scores": "综合考核得分条数", "terminals": "登记终端数",
    "shift_terminals": "有日内换班窗口、按小时读取的终端数", "unstaffed_votes": "未排班票数（投票时窗口无人排班）",
}


def local_time(moment) -> str:
    """``moment`` in China time to the second: ``2026-11-22 11:09:29 (北京时间)``; "" for None."""
    if moment is None:
        return ""
    return to_local(moment).strftime("%Y-%m-%d %H:%M:%S") + " (北京时间)"


def is_sample(result) -> bool:
    """True when ``result`` was computed on sample data (the report must say 模拟数据)."""
    return bool(getattr(result, "sample", False))


def _parameter_table(result) -> Table:
    rows: list[tuple[str, object, str]] = []
    if is_sample(result):
        rows.append(("数据性质", SAMPLE_WARNING, "sample"))
    rows.append(("季度", str(result.quarter), ""))
    for key, value in result.params.to_dict().items():
        rows.append((_PARAM_LABELS.get(key, key), value, key))
    rows += [
        ("实际使用的 λ", result.lam, "lam (used)"),
        ("全市终端得分 μ_T", _v(result.mu_T), "mu_T"),
        ("全市电话得分 μ_P", _v(result.mu_P), "mu_P"),
        ("参照值 y_ref", _v(result.y_ref), "y_ref"),
        ("计算时间", local_time(result.computed_at), "computed_at"),
        ("软件版本", result.version, "version"),
        ("发布编号", result.result_id if result.result_id is not None else "未发布", "result_id"),
    ]
    if getattr(result, "published_at", None) is not None:
        rows.append(("发布时间", local_time(result.published_at), "published_at"))
    for key, value in result.input_counts.items():
        rows.append((_INPUT_LABELS.get(key, key), value, key))
    for i, note in enumerate(result.notes, 1):
        rows.append((f"说明 {i}", note, "note"))
    return Table("参数", [
        Column("项目", "text", 26, [r[0] for r in rows]),
        Column("值", "value", 40, [_v(r[1]) for r in rows]),
        Column("键", "text", 16, [r[2] for r in rows]),
    ], freeze="A2")


def _text(value, kind: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if kind == "pct" and isinstance(value, (int, float)):
        return f"{value * 100:.1f}%"
    if kind == "p" and isinstance(value, float) and value < 0.0001:
        return "<0.0001"
    fmt = _FMT.get(kind, (None, None))[1]
    if fmt and isinstance(value, (int, float)):
        return fmt.format(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_text(value, kind: str) -> str:
    if kind == "pct" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4f}"
    return _text(value, kind)


def render_csv(result) -> bytes:
    """All tables in one CSV (UTF-8 with BOM), each after a ``# 表名`` row."""
    rows: list[list] = [[f"# {SAMPLE_WARNING}"], []] if is_sample(result) else []
    for i, table in enumerate(build_tables(result)):
        if i:
            rows.append([])
        rows.append([f"# {table.title}"])
        rows.append([neutralise_cell(c.header) for c in table.columns])
        for r in range(table.rows):
            # Numbers (a negative difference too) are written as numbers; only text is neutralised.
            rows.append([neutralise_cell(_csv_text(c.values[r], c.kind)) if isinstance(c.values[r], str)
                         else _csv_text(c.values[r], c.kind) for c in table.columns])
    return csv_bytes(rows)


def render_xlsx(result) -> bytes:
    """An Excel workbook, one sheet per table."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.remove(book.active)
    head_font = Font(bold=True)
    head_fill = PatternFill("solid", fgColor="DDE4EE")
    thin = Side(style="thin", color="999999")
    sample = is_sample(result)
    if sample:
        _sample_sheet(book, result)
    for table in build_tables(result):
        sheet = book.create_sheet(table.title)
        for j, column in enumerate(table.columns, 1):
            cell = sheet.cell(row=1, column=j, value=neutralise_cell(column.header))
            cell.font, cell.fill = head_font, head_fill
            cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
            cell.border = Border(bottom=thin)
            sheet.column_dimensions[get_column_letter(j)].width = column.width
            number_format = _FMT.get(column.kind, (None, None))[0]
            for i, value in enumerate(column.values, 2):
                if isinstance(value, str):
                    cell = sheet.cell(row=i, column=j, value=neutralise_cell(value))
                    cell.data_type = "s"
                else:
                    cell = sheet.cell(row=i, column=j, value=value)
                    if number_format and value is not None:
                        cell.number_format = number_format
        sheet.row_dimensions[1].height = 32
        sheet.freeze_panes = table.freeze
        if table.rows:
            sheet.auto_filter.ref = f"A1:{get_column_letter(len(table.columns))}{table.rows + 1}"
        sheet.page_setup.orientation = "landscape"
        sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
        sheet.page_setup.fitToWidth = 1
        sheet.page_setup.fitToHeight = 0
        sheet.sheet_properties.pageSetUpPr.fitToPage = True
        sheet.print_title_rows = "1:1"
        if sample:  # on every printed page, outside the table
            sheet.oddHeader.center.text = "模拟数据 · 仅供演示和测试，不得用于考核"
            sheet.oddHeader.center.color = "C00000"
            if table.title == "参数":  # its first data row is the warning: make it stand out
                for cell in sheet[2]:
                    cell.font = Font(bold=True, color="C00000")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _sample_sheet(book, result) -> None:
    """The first sheet 说明 of a report on sample data: the warning, in large red type."""
    from openpyxl.styles import Alignment, Font, PatternFill

    sheet = book.create_sheet("说明")
    sheet.column_dimensions["A"].width = 100
    cell = sheet.cell(row=1, column=1, value=SAMPLE_WARNING)
    cell.font = Font(bold=True, size=14, color="C00000")
    cell.fill = PatternFill("solid", fgColor="FCF3CF")
    cell.alignment = Alignment(wrap_text=True, vertical="center")
    sheet.row_dimensions[1].height = 48
    q = result.quarter
    sheet.cell(row=3, column=1, value=f"菏泽市人社服务群众满意度季度报告 {q.year}年第{q.number}季度")
    sheet.cell(row=4, column=1, value=f"计算时间 {local_time(result.computed_at)}")
    names = "、".join(table.title for table in build_tables(result))
    sheet.cell(row=5, column=1, value=f"各表见后续工作表：{names}。")
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4


_CSS = """
@page { size: A4 landscape; margin: 12mm 10mm; }
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif; font-size: 9pt; color: #111; }
h1 { font-size: 15pt; margin: 0 0 4pt; }
h2 { font-size: 12pt; margin: 14pt 0 4pt; }
p.meta { margin: 0 0 6pt; color: #444; }
table { border-collapse: collapse; width: 100%; margin-bottom: 8pt; }
th, td { border: 0.5pt solid #999; padding: 1.5pt 3pt; }
th { background: #dde4ee; font-weight: bold; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.flag { color: #a40000; }
td.code, td.name { white-space: nowrap; }
th.long { min-width: 11em; }
th.short { min-width: 4.5em; }
thead { display: table-header-group; }
tr { page-break-inside: avoid; break-inside: avoid; }
section { page-break-before: always; break-before: page; }
section:first-of-type { page-break-before: auto; break-before: auto; }
ul.notes li { margin-bottom: 2pt; }
p.sample { border: 1.5pt solid #b7950b; background: #fcf3cf; color: #7d6608; padding: 4pt 6pt; font-weight: bold;
  -webkit-print-color-adjust: exact; print-color-adjust: exact; }
@media screen { body { max-width: 297mm; margin: 8mm auto; } }
"""


# How the HTML lays out a text column, by header, so that a printed A4 page stays readable:
# codes, ids and unit names (county, township, window) never wrap ("code", "name"); hall
# names, the longest ("菏泽经济技术开发区政务服务中心人社窗口"), keep a minimum width and wrap
# only beyond it ("long"); the flags column keeps "样本不足" on one line ("short").
_HTML_LAYOUT = {
    "代码": "code", "大厅编号": "code", "窗口编号": "code", "键": "code", "人员编号": "code",
    "县区": "name", "乡镇(街道)": "name", "所属县区": "name", "类型": "name", "项目": "name", "姓名": "name",
    "窗口": "name", "服务大厅": "long", "标记": "short",
}


def render_html(result) -> bytes:
    """A printable A4 HTML page (self-contained, no scripts)."""
    esc = html.escape
    q = result.quarter
    title = f"菏泽市人社服务群众满意度季度报告 {q.year}年第{q.number}季度"
    mode = "绝对模式 k = y/100" if result.params.mode == "absolute" else "相对模式 k = clip(1 + β(y − y_ref)/y_ref)"
    published = ""
    if result.result_id is not None:
        published = f" · 发布编号 {result.result_id}"
        if getattr(result, "published_at", None) is not None:
            published += f"，发布时间 {esc(local_time(result.published_at))}"
    # A sample report's body has a class, so a caller that inserts its own banner after a bare
    # "<body>" (the web layer did, before results carried the flag) does not add a second one.
    body = '<body class="sample">' if is_sample(result) else "<body>"
    parts = [
        "<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>{body}",
    ]
    if is_sample(result):
        parts.append(f'<p class="sample">{esc(SAMPLE_WARNING)}</p>')
    parts += [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">季度 {esc(str(q))}（北京时间）· {esc(mode)} · 计算时间 {esc(local_time(result.computed_at))} · '
        f"软件版本 {esc(result.version)}" + (published or " · 未发布") + "</p>",
    ]
    if result.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")
    for table in build_tables(result):
        parts.append(f"<section><h2>{esc(table.title)}</h2><table><thead><tr>")
        layout = [_HTML_LAYOUT.get(c.header, "") if c.kind == "text" else "" for c in table.columns]
        parts.append("".join((f'<th class="{how}">' if how in ("long", "short") else "<th>") + f"{esc(c.header)}</th>"
                             for c, how in zip(table.columns, layout)))
        parts.append("</tr></thead><tbody>")
        for r in range(table.rows):
            cells = []
            for c, how in zip(table.columns, layout):
                value = c.values[r]
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                if numeric:
                    cls = ' class="num"'
                elif c.header == "标记" and value:
                    cls = ' class="flag"'
                elif how in ("code", "name"):
                    cls = f' class="{how}"'
                else:
                    cls = ""
                cells.append(f"<td{cls}>{esc(_text(value, c.kind))}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></section>")
    parts.append("</body></html>")
    return "\n".join(parts).encode("utf-8")


def render_report(result, fmt: str) -> bytes:
    """The report of ``result`` in ``fmt`` ("xlsx", "html" or "csv") as bytes."""
    fmt = (fmt or "").lower().lstrip(".")
    if fmt == "xlsx":
        return render_xlsx(result)
    if fmt in ("html", "htm"):
        return render_html(result)
    if fmt == "csv":
        return render_csv(result)
    if fmt == "pdf":
        from .report_pdf import render_pdf

        return render_pdf(result)
    raise ConfigError(f"report format {fmt!r}: choose one of {', '.join(FORMATS)}")


def write_report(result, path, fmt: str | None = None) -> None:
    """Write the report to ``path``; the format defaults to the file's suffix."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    data = render_report(result, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
