"""Reports say 模拟数据 when the result was computed on sample data, in every format and after
publishing; times are China time to the second."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import datetime, timezone

import openpyxl
import pytest
from test_quarter import Q3, local, many

from analytics.quarter import compute_quarter, load_published, publish, published, recompute_published
from analytics.output.report import SAMPLE_WARNING, local_time, render_report

COMPUTED = datetime(2026, 11, 22, 3, 9, 29, 729978, tzinfo=timezone.utc)
PUBLISHED = datetime(2026, 11, 22, 3, 15, 2, 5, tzinfo=timezone.utc)


@pytest.fixture
def real_registry(tiny_registry):
    """The tiny registry declared as real data (meta sample = no)."""
    tiny_registry.meta["sample"] = "no"
    return tiny_registry


def _compute(store, registry):
    store.write(many("hz-371702001-w01", local(8, 3), {"satisfied": 30, "basic": 5}))
    return compute_quarter(store, registry, None, Q3, now=COMPUTED)


def _csv_rows(result) -> list[list[str]]:
    return list(csv.reader(io.StringIO(render_report(result, "csv").decode("utf-8-sig"))))


def test_local_time_is_china_time_to_the_second():
    assert local_time(COMPUTED) == "2026-11-22 11:09:29 (北京时间)"
    assert local_time(datetime(2026, 12, 31, 16, 0, 0)) == "2027-01-01 00:00:00 (北京时间)"  # naive = UTC
    assert local_time(None) == ""


def test_computed_and_published_time_in_china_time_in_all_formats(vote_store, real_registry, center_db):
    result = _compute(vote_store, real_registry)
    publish(center_db, result, now=PUBLISHED)
    loaded = load_published(center_db, result.result_id)
    shown, pub = "2026-11-22 11:09:29 (北京时间)", "2026-11-22 11:15:02 (北京时间)"
    page = render_report(loaded, "html").decode()
    assert f"计算时间 {shown}" in page and f"发布时间 {pub}" in page
    assert "+00:00" not in page and ".729978" not in page
    params = {r[2].value: r[1].value for r in openpyxl.load_workbook(
        io.BytesIO(render_report(loaded, "xlsx")))["参数"].iter_rows(min_row=2)}
    assert params["computed_at"] == shown and params["published_at"] == pub
    flat = [cell for row in _csv_rows(loaded) for cell in row]
    assert shown in flat and pub in flat and not any("+00:00" in c for c in flat)
    # not yet published: no publication time
    unpublished = _plain(result)
    assert "发布时间" not in render_report(unpublished, "html").decode()
    assert "published_at" not in {r[2] for r in _csv_rows(unpublished) if len(r) > 2}


def _plain(result):
    return dataclasses.replace(result, result_id=None, published_at=None)


def test_a_real_registry_report_has_no_sample_label(vote_store, real_registry):
    result = _compute(vote_store, real_registry)
    assert result.sample is False
    page = render_report(result, "html").decode()
    assert "模拟数据" not in page and "<body>" in page
    book = openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx")))
    assert book.sheetnames == ["县区", "乡镇", "服务大厅", "窗口", "渠道对比", "参数"]
    assert all("模拟" not in (book[name].oddHeader.center.text or "") for name in book.sheetnames)
    assert all("模拟" not in str(c.value) for row in book["参数"].iter_rows() for c in row)
    rows = _csv_rows(result)
    assert rows[0] == ["# 县区"] and "模拟数据" not in render_report(result, "csv").decode("utf-8-sig")


def test_a_sample_registry_report_says_simulated_in_every_format(vote_store, tiny_registry):
    assert tiny_registry.sample
    result = _compute(vote_store, tiny_registry)
    assert result.sample is True
    page = render_report(result, "html").decode()
    body = page.index('<body class="sample">')
    assert page.index(SAMPLE_WARNING) > body and page.index(SAMPLE_WARNING) < page.index("<h1>")
    assert "<body>" not in page  # a caller adding its own banner after a bare <body> does not double it

    book = openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx")))
    assert book.sheetnames[0] == "说明" and book["说明"]["A1"].value == SAMPLE_WARNING
    params = book["参数"]
    assert [c.value for c in params[2]] == ["数据性质", SAMPLE_WARNING, "sample"]  # first row under the header
    for name in book.sheetnames[1:]:
        assert "模拟数据" in book[name].oddHeader.center.text, name
    # the tables keep a single header row: row 1 headers, row 2 data
    sheet = book["县区"]
    assert sheet["A1"].value == "代码" and sheet["A2"].value in ("371702", "371721")

    rows = _csv_rows(result)
    assert rows[0] == [f"# {SAMPLE_WARNING}"] and rows[1] == [] and rows[2] == ["# 县区"]


def test_the_sample_flag_survives_publish_load_and_recompute(vote_store, tiny_registry, center_db):
    sample = _compute(vote_store, tiny_registry)
    result_id = publish(center_db, sample)
    assert published(center_db, Q3)[0]["sample"] is True
    loaded = load_published(center_db, result_id)
    assert loaded.sample is True
    assert recompute_published(center_db, result_id).sample is True
    for fmt, marker in (("html", SAMPLE_WARNING), ("csv", SAMPLE_WARNING)):
        assert marker in render_report(loaded, fmt).decode("utf-8-sig"), fmt
    assert openpyxl.load_workbook(io.BytesIO(render_report(loaded, "xlsx"))).sheetnames[0] == "说明"


def test_a_real_result_stays_real_after_publishing(vote_store, real_registry, center_db):
    result_id = publish(center_db, _compute(vote_store, real_registry))
    assert published(center_db, Q3)[0]["sample"] is False
    assert load_published(center_db, result_id).sample is False
    assert recompute_published(center_db, result_id).sample is False


def test_results_published_before_the_flag_load_as_not_sample(vote_store, real_registry, center_db):
    import json

    result_id = publish(center_db, _compute(vote_store, real_registry))
    row = center_db.query("SELECT summary FROM quarter_results WHERE id = ?", (result_id,))[0]
    summary = json.loads(row["summary"])
    del summary["sample"]
    center_db.execute("UPDATE quarter_results SET summary = ? WHERE id = ?", (json.dumps(summary), result_id))
    assert load_published(center_db, result_id).sample is False
