"""Quarterly reports (analytics/report.py) in xlsx, html and csv, and the ``manyi report`` command."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import openpyxl
import pandas as pd
import pytest
from test_quarter import Q3, local, many, survey_frame

from analytics.model import Params
from analytics.quarter import compute_quarter, load_published, published
from analytics.output.report import neutralise_cell, render_report, write_report
from collector.stores.base import FLAG_BURST
from collector.stores.sqlite import SQLiteStore
from manyi.cli import main
from manyi.exc import ConfigError
from manyi.registry import County, Hall, Township

NOW = datetime(2026, 10, 8, 1, 0, tzinfo=timezone.utc)
EVIL_COUNTY = '=HYPERLINK("http://evil.example","点我")'
EVIL_TOWN = "<script>alert('x')</script>镇"
EVIL_HALL = "@SUM(1+1)大厅"


@pytest.fixture
def evil_registry(tiny_registry):
    """The tiny registry with unit names that are formulas and markup."""
    reg = tiny_registry
    reg.counties["371721"] = County("371721", EVIL_COUNTY, "county")
    reg.townships["371702100"] = Township("371702100", EVIL_TOWN, "371702")
    old = reg.halls["hall-371702001"]
    reg.halls["hall-371702001"] = Hall(old.id, EVIL_HALL, old.township_code, old.lon, old.lat, old.approximate,
                                       old.opening_hours, old.county_code)
    return reg


@pytest.fixture
def result(vote_store, evil_registry):
    store = vote_store
    store.write(many("hz-371702001-w01", local(8, 3), {"satisfied": 40, "basic": 5, "unsatisfied": 3})
                + many("hz-371702100-w01", local(8, 4), {"satisfied": 9}, {FLAG_BURST})
                + many("hz-371721101-w02", local(9, 1), {"satisfied": 20, "basic": 20, "unsatisfied": 10}))
    scores = pd.DataFrame([("county", "371702", 92.0), ("county", "371721", 90.0)], columns=["level", "code", "score"])
    survey = survey_frame([("township", "371702001", "satisfied", 8), ("county", "371721", "unsatisfied", 6)])
    out = compute_quarter(store, evil_registry, None, Q3, Params(mode="relative"), survey=survey, scores=scores, now=NOW)
    return out


def test_neutralise_cell_prefixes_formula_starts_only():
    for text in ("=1+1", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralise_cell(text) == "'" + text
    assert neutralise_cell("曹县") == "曹县" and neutralise_cell(-2.5) == -2.5 and neutralise_cell(None) is None


def test_xlsx_has_one_sheet_per_table_headers_formats_and_frozen_header(result):
    book = openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx")))
    assert book.sheetnames == ["说明", "县区", "乡镇", "服务大厅", "窗口", "渠道对比", "参数"]  # sample registry
    sheet = book["县区"]
    headers = [c.value for c in sheet[1]]
    assert headers[:3] == ["代码", "县区", "类型"]
    for name in ("终端评价数 n", "满意率", "95%下限", "95%上限", "满意度系数 k", "综合考核得分 G", "修正后得分 F", "排名", "标记"):
        assert name in headers
    assert sheet.freeze_panes == "C2" and sheet[1][0].font.bold
    col = {h: i for i, h in enumerate(headers)}
    row = sheet[2]
    assert row[col["满意度系数 k"]].number_format == "0.0000"
    assert row[col["满意率"]].number_format == "0.0%"
    assert row[col["修正后得分 F"]].number_format == "0.00"
    assert row[col["终端评价数 n"]].number_format == "0"
    assert sheet.column_dimensions["B"].width == 14
    # Values are numbers, not text, and match the result exactly.
    c = result.counties.set_index("code")
    by_code = {r[0].value: r for r in sheet.iter_rows(min_row=2)}
    assert by_code["371702"][col["满意度系数 k"]].value == pytest.approx(c.loc["371702", "k"], rel=1e-14)  # 15 digits, as Excel
    assert by_code["371702"][col["终端评价数 n"]].value == 48
    assert book["参数"].freeze_panes == "A2"


def test_xlsx_neutralises_names_that_look_like_formulas(result):
    book = openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx")))
    names = [r[1].value for r in book["县区"].iter_rows(min_row=2)]
    assert "'" + EVIL_COUNTY in names and EVIL_COUNTY not in names
    cell = next(r[1] for r in book["县区"].iter_rows(min_row=2) if r[0].value == "371721")
    assert cell.data_type == "s"
    assert "'" + EVIL_HALL in [r[1].value for r in book["服务大厅"].iter_rows(min_row=2)]
    # a negative number stays a number
    diffs = [r[8].value for r in book["渠道对比"].iter_rows(min_row=2)]
    assert any(isinstance(v, float) and v < 0 for v in diffs)


def test_html_is_printable_a4_with_chinese_headings_and_escaped_names(result):
    page = render_report(result, "html").decode("utf-8")
    assert "@page { size: A4" in page and '<meta charset="utf-8">' in page
    for heading in ("县区", "乡镇", "服务大厅", "窗口", "渠道对比", "参数"):
        assert f"<h2>{heading}</h2>" in page
    assert "2026年第3季度" in page
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;镇" in page
    assert "=HYPERLINK(&quot;http://evil.example&quot;" in page
    assert "样本不足" in page and "<script" not in page.lower().replace("&lt;script", "")


def test_csv_has_bom_sections_numbers_and_neutralised_text(result):
    data = render_report(result, "csv")
    assert data.startswith("\ufeff".encode("utf-8"))
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    titles = [r[0] for r in rows if r and r[0].startswith("# ")]
    assert titles[1:] == ["# 县区", "# 乡镇", "# 服务大厅", "# 窗口", "# 渠道对比", "# 参数"]
    assert titles[0].startswith("# 模拟数据")  # the test registry is sample data
    flat = [cell for r in rows for cell in r]
    assert "'" + EVIL_COUNTY in flat and EVIL_COUNTY not in flat
    assert "'" + EVIL_HALL in flat
    assert not any(cell.startswith(("=", "+", "@")) for cell in flat)
    assert any(cell.startswith("-") and cell[1:].replace(".", "").isdigit() for cell in flat)  # negative diff
    header = rows[rows.index(["# 县区"]) + 1]
    county = next(r for r in rows if r and r[0] == "371702")
    assert county[header.index("满意度系数 k")] == f"{result.counties.set_index('code').loc['371702', 'k']:.4f}"
    assert county[header.index("剔除票数")] == "9"  # the burst in its township 371702100
    town = next(r for r in rows if r and r[0] == "371702100")
    assert town[header.index("剔除票数")] == "9"


def test_parameters_sheet_lists_params_means_and_notes(result):
    sheet = openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx")))["参数"]
    rows = {r[2].value: r[1].value for r in sheet.iter_rows(min_row=2)}
    assert rows["mode"] == "relative" and rows["lam"] == 0.4 and rows["min_n"] == 30
    assert rows["mu_T"] == result.mu_T and rows["version"] == result.version
    assert rows["excluded"] == 9


def test_unknown_format_is_refused(result, tmp_path):
    with pytest.raises(ConfigError):
        render_report(result, "docx")
    write_report(result, tmp_path / "out" / "r.html")
    assert (tmp_path / "out" / "r.html").read_bytes().startswith(b"<!DOCTYPE html>")


def test_manyi_report_command_computes_publishes_and_rerenders(tmp_path, tiny_registry, capsys):
    store_path = tmp_path / "votes.db"
    store = SQLiteStore(store_path)
    store.write(many("hz-371702001-w01", local(8, 3), {"satisfied": 35, "basic": 4}))
    store.close()
    tiny_registry.save(tmp_path / "registry")
    common = ["--quarter", "2026Q3", "--store", f"sqlite:///{store_path}", "--db", str(tmp_path / "center.db"),
              "--registry", str(tmp_path / "registry")]
    assert main(["report", *common, "--out", str(tmp_path / "r.xlsx"), "--publish",
                 "--mode", "relative", "--param", "m_T=5"]) == 0
    out = capsys.readouterr()
    assert "published as result 1" in out.out and "λ 取 0" in out.err  # no survey imported
    book = openpyxl.load_workbook(tmp_path / "r.xlsx")
    assert next(r for r in book["县区"].iter_rows(min_row=2) if r[0].value == "371702")[3].value == 39
    from analytics.center import CenterDB

    db = CenterDB(tmp_path / "center.db")
    try:
        [entry] = published(db, "2026Q3")
        assert entry["params"]["m_T"] == 5.0 and entry["params"]["mode"] == "relative"
        stored = load_published(db, 1)
    finally:
        db.close()
    assert main(["report", "--quarter", "2026Q3", "--db", str(tmp_path / "center.db"), "--result", "1",
                 "--out", str(tmp_path / "again.csv")]) == 0
    text = (tmp_path / "again.csv").read_text(encoding="utf-8-sig")
    assert f"{stored.counties.set_index('code').loc['371702', 'k']:.4f}" in text
    # errors: exit code 2 with a message
    assert main(["report", *common, "--out", str(tmp_path / "r.docx")]) == 2
    assert main(["report", *common, "--out", str(tmp_path / "r.csv"), "--param", "lam=2"]) == 2
    assert "lam" in capsys.readouterr().err


def test_a_quarter_without_any_votes_or_survey_still_reports(vote_store, tiny_registry):
    empty = compute_quarter(vote_store, tiny_registry, None, Q3, now=NOW)
    assert any("没有终端评价数据" in n for n in empty.notes) and any("λ 取 0" in n for n in empty.notes)
    assert (empty.counties["flags"] == "样本不足、无评价数据、无基础分").all()
    for fmt in ("xlsx", "html", "csv"):
        assert render_report(empty, fmt)
    assert "没有终端评价数据" in render_report(empty, "html").decode()


def test_html_keeps_codes_and_names_on_one_line_when_printed(result):
    page = render_report(result, "html").decode("utf-8")
    assert "td.code, td.name { white-space: nowrap; }" in page and "th.long { min-width:" in page
    assert '<td class="code">371702</td><td class="name">牡丹区</td><td class="name">区</td>' in page
    assert '<th class="long">服务大厅</th>' in page and '<th class="short">标记</th>' in page
    assert '<td class="code">win-371702001-01</td><td class="name">1号窗口</td>' in page
    assert '<td class="num">48</td>' in page  # numbers keep their own class
