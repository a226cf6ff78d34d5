"""The monthly bulletin, the upward export and the quarterly report PDF, rendered and read back."""

from __future__ import annotations

import io
import json
import shutil
from datetime import datetime

import pytest

from analytics.output.bulletin import build_bulletin, render_bulletin
from analytics.output.upward import LEVEL_MAPPINGS, render_upward, upward_rows
from manyi.periods import CHINA_TZ, Month
from test_indicators import CAO, MUDAN, NOV, NOW, november  # noqa: F401 - the fixture
from test_quarter import many

OCT = Month(2026, 10)


def pdf_text(data: bytes) -> tuple[int, str, list]:
    pypdf = pytest.importorskip("pypdf", reason="pypdf reads the PDFs back (pip install .[test])")
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages), reader.pages


needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="PDFs are printed by Chromium "
                                    "(Debian package chromium)")


@pytest.fixture
def two_months(november):
    """November's figures plus an October in which 曹县 was last too (the bottom two months running)."""
    store, db, registry = november
    store.write(many("hz-371702001-w02", datetime(2026, 10, 12, 10, tzinfo=CHINA_TZ), {"satisfied": 40})
                + many("hz-371721101-w02", datetime(2026, 10, 13, 10, tzinfo=CHINA_TZ), {"unsatisfied": 35})
                + many("hz-371721101-w02", datetime(2026, 11, 13, 10, tzinfo=CHINA_TZ), {"unsatisfied": 30})
                + many("hz-371702001-w02", datetime(2026, 11, 12, 10, tzinfo=CHINA_TZ), {"satisfied": 30}))
    return store, db, registry


def test_the_bulletin_ranks_compares_with_last_month_and_names_the_bottom(two_months):
    store, db, registry = two_months
    b = build_bulletin(store, registry, db, NOV, now=NOW, min_votes=30)
    first, last = b.counties.iloc[0], b.counties.iloc[1]
    assert (first["code"], first["rank"], first["prev_rank"]) == (MUDAN, 1, 1)
    assert (last["code"], last["rank"], last["n"]) == (CAO, 2, 34)
    assert last["score_change"] == pytest.approx((100 * 1) / 34 - 0.0)      # October: 35 不满意, score 0
    assert [(u["level"], u["code"]) for u in b.bottom] == [("county", CAO), ("township", "371721101")]
    assert [c["state"] for c in b.cases] == ["逾期未办结", "逾期办结", "逾期未办结"]
    assert any("约谈" in line and "曹县" in line for line in b.summary)
    assert b.summary[0].startswith("2026年11月，全市评价器共收到评价 74 条")    # 14 + 60 on the second windows


def test_a_unit_with_too_few_votes_is_listed_but_not_ranked(november):
    store, db, registry = november
    b = build_bulletin(store, registry, db, NOV, now=NOW, min_votes=30)
    assert b.counties["rank"].isna().all() and b.bottom == []
    assert any("未参加排名" in line for line in b.summary)


def test_the_bulletin_as_html_and_xlsx_says_sample_data(two_months):
    from openpyxl import load_workbook

    store, db, registry = two_months
    b = build_bulletin(store, registry, db, NOV, now=NOW)
    page = render_bulletin(b, "html").decode()
    assert "模拟数据" in page and "曹县" in page and "@page { size: A4" in page
    book = load_workbook(io.BytesIO(render_bulletin(b, "xlsx")))
    assert book.sheetnames == ["总体情况", "县区排名", "乡镇排名", "约谈", "督办件", "终端"]
    assert book["县区排名"]["A1"].value.startswith("模拟数据") and book["县区排名"]["C3"].value == "牡丹区"


@needs_chromium
@pytest.mark.browser
def test_the_bulletin_pdf_is_a4_with_its_text_and_no_table_wider_than_the_page(two_months, tmp_path, browser):
    store, db, registry = two_months
    b = build_bulletin(store, registry, db, NOV, now=NOW)
    pages, text, page_list = pdf_text(render_bulletin(b, "pdf"))
    assert pages >= 1 and round(float(page_list[0].mediabox.width)) == 595       # A4 portrait, 210 mm
    for name in ("月度通报", "牡丹区", "曹县", "东城街道", "模拟数据", "约谈"):
        assert name in text.replace("\n", ""), name
    # the layout: no table overflows the A4 text width, measured by the same browser
    (tmp_path / "b.html").write_bytes(render_bulletin(b, "html"))
    browser.get((tmp_path / "b.html").as_uri())
    browser.execute_script("document.body.style.width = '186mm'")             # A4 less the margins
    tables = browser.execute_script("return document.querySelectorAll('table').length")
    overflow = browser.execute_script(
        "return [...document.querySelectorAll('table')].filter(t => t.scrollWidth > t.clientWidth + 1 "
        "|| t.getBoundingClientRect().right > document.body.getBoundingClientRect().right + 1).length")
    assert tables >= 3 and overflow == 0


@needs_chromium
@pytest.mark.browser
def test_the_quarterly_report_pdf_has_a_cover_parameters_and_the_units(two_months):
    from analytics.output.report import render_report
    from analytics.quarter import compute_quarter

    store, db, registry = two_months
    result = compute_quarter(store, registry, db, "2026Q4", now=NOW)
    pages, text, page_list = pdf_text(render_report(result, "pdf"))
    flat = text.replace("\n", "")
    assert pages >= 3 and float(page_list[0].mediabox.width) > float(page_list[0].mediabox.height)   # landscape
    assert "满意度系数报告" in page_list[0].extract_text().replace("\n", "") and "签发" in flat
    for name in ("参数", "牡丹区", "曹县", "东城街道", "模拟数据"):
        assert name in flat, name


def test_the_upward_export_counts_every_unit_and_maps_the_levels(two_months):
    store, db, registry = two_months
    rows = upward_rows(store, registry, db, NOV, now=NOW)
    city = rows[0]
    assert (city["region_code"], city["level"], city["channel"], city["n"]) == ("371700", "city", "terminal", 74)
    cao = next(r for r in rows if r["region_code"] == CAO and r["channel"] == "terminal")
    assert (cao["满意"], cao["基本满意"], cao["不满意"], cao["非常满意"], cao["非常不满意"]) == (1, 0, 33, 0, 0)
    top = next(r for r in upward_rows(store, registry, db, NOV, now=NOW, levels="top")
               if r["region_code"] == CAO and r["channel"] == "terminal")
    assert (top["非常满意"], top["满意"], top["不满意"]) == (1, 0, 33)
    assert {r["level"] for r in rows} == {"city", "county", "township"}
    assert len([r for r in rows if r["level"] == "township" and r["channel"] == "terminal"]) == len(registry.townships)
    assert set(LEVEL_MAPPINGS["standard"].values()) <= {"满意", "基本满意", "不满意"}


def test_re_exporting_a_closed_month_is_byte_identical(two_months):
    store, db, registry = two_months
    first = [render_upward(upward_rows(store, registry, db, NOV, now=NOW), fmt, month=NOV, levels="standard")
             for fmt in ("csv", "json")]
    later = datetime(2027, 3, 1, 9, tzinfo=CHINA_TZ)
    again = [render_upward(upward_rows(store, registry, db, NOV, now=later), fmt, month=NOV, levels="standard")
             for fmt in ("csv", "json")]
    assert first == again
    document = json.loads(first[1])
    assert document["period"] == "2026-11" and document["mapping"]["U"] == "不满意" and not document["provisional"]
    assert first[0].decode("utf-8-sig").splitlines()[0].startswith("region_code,level,name,period,channel")


def test_the_commands_write_the_files(two_months, tmp_path, capsys):
    from manyi.cli import main

    store, db, registry = two_months
    registry.save(tmp_path / "reg")
    args = ["--store", store.url, "--db", db.path, "--registry", str(tmp_path / "reg")]
    assert main(["bulletin", "--month", "2026-11", "--out", str(tmp_path / "b.xlsx"), *args]) == 0
    assert main(["export", "upward", "--month", "2026-11", "--out", str(tmp_path / "u.json"), *args]) == 0
    assert json.loads((tmp_path / "u.json").read_text())["rows"][0]["n"] == 74
    assert main(["bulletin", "--month", "2026-13", "--out", str(tmp_path / "x.pdf"), *args]) == 2
    assert "2026-13" in capsys.readouterr().err
