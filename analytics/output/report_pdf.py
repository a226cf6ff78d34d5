"""The quarterly coefficient report as a PDF to sign and file: a cover page (quarter, mode,
publication, signature lines), then the printable HTML report (its parameters and every
table with flags and intervals), printed by Chromium on A4 landscape."""

from __future__ import annotations

import html

from .pdf import html_to_pdf
from .report import SAMPLE_WARNING, is_sample, local_time, render_html

PRINT_CSS = """
@page { size: A4 landscape; margin: 12mm 10mm 14mm; }
body { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif; }
.cover { height: 170mm; display: flex; flex-direction: column; justify-content: center; text-align: center;
         break-after: page; }
.cover h1 { font-size: 24pt; margin-bottom: 10mm; } .cover p { font-size: 13pt; margin: 2mm 0; }
.cover .signatures { margin-top: 18mm; font-size: 12pt; display: flex; justify-content: space-around; }
.cover .sample { font-size: 12pt; border: 2px solid #b7950b; background: #fcf3cf; padding: 3mm; margin: 6mm 30mm; }
table { break-inside: auto; } tr { break-inside: avoid; } thead { display: table-header-group; }
section { break-before: auto; } h2 { break-after: avoid; }
"""


def cover(result) -> str:
    """The cover page of the report of ``result``."""
    esc = html.escape
    q = result.quarter
    mode = "绝对模式" if result.params.mode == "absolute" else "相对模式"
    published = (f"发布编号 {result.result_id}" + (f"，发布时间 {esc(local_time(result.published_at))}"
                                                if getattr(result, "published_at", None) is not None else "")
                 if result.result_id is not None else "未发布（试算）")
    sample = f'<p class="sample">{esc(SAMPLE_WARNING)}</p>' if is_sample(result) else ""
    return (f'<div class="cover"><h1>菏泽市人社服务群众满意度<br>{q.year}年第{q.number}季度 满意度系数报告</h1>'
            f"<p>系数模式：{mode}（参数见“参数”表）</p><p>{published}</p>"
            f"<p>计算时间 {esc(local_time(result.computed_at))} · 软件版本 {esc(result.version)}</p>{sample}"
            '<div class="signatures"><span>编制：__________</span><span>审核：__________</span>'
            "<span>签发：__________</span></div></div>")


def printable_html(result) -> str:
    """The HTML report of ``result`` with the print CSS and the cover page (what the PDF prints)."""
    page = render_html(result).decode("utf-8")
    head, _, rest = page.partition("</style>")
    body_at = rest.index(">", rest.index("<body")) + 1
    return head + PRINT_CSS + "</style>" + rest[:body_at] + cover(result) + rest[body_at:]


def render_pdf(result) -> bytes:
    """The report of ``result`` as a PDF: cover page, then the HTML report."""
    return html_to_pdf(printable_html(result))
