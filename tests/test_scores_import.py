"""Composite assessment score import: validation, duplicates, conflicts, replace, templates."""

from __future__ import annotations

import io

import openpyxl
import pytest

from analytics.imports.scores import base_scores, import_scores, scores_template
from manyi.exc import ImportFileError
from manyi.periods import Quarter

Q3 = Quarter(2026, 3)


def scores_dict(frame):
    return {(r.level, r.code): r.score for r in frame.itertuples()}


def test_scores_csv_with_messy_content(center_db, heze):
    text = ("2026年第三季度综合考核得分\n"
            "县区,乡镇（街道）,综合考核得分 \n"
            "牡丹区,,９２.５\n"
            "牡丹区,沙土,88\n"
            "牡丹区,沙土镇,88\n"          # duplicate (same unit, same score)
            "曹县,,90分\n"
            "曹县,庄寨镇,85\n"
            "曹县,庄寨镇,86\n"            # conflict with the row above: both rejected
            "单县,,101\n"                 # out of range
            "单县,东城街道,优\n"           # not a number
            "单县,西城街道,80\n"           # 西城街道 is in 牡丹区
            "单县,幸福街道,80\n"           # unknown township
            "成武县,,\n")                 # missing score
    strict = import_scores(center_db, heze, text.encode("gbk"), Q3, filename="scores.csv")
    assert strict.aborted and strict.imported == 0 and strict.valid == 3 and len(strict.rejected) == 7
    assert base_scores(center_db, Q3).empty and "NOTHING IMPORTED" in strict.summary()
    report = import_scores(center_db, heze, text.encode("gbk"), Q3, filename="scores.csv", partial=True)
    assert not report.aborted
    assert report.rows_read == 11 and report.imported == 3 and report.duplicates == 1
    reasons = {(r.row, r.code) for r in report.rejected}
    assert reasons == {(7, "conflict"), (8, "conflict"), (9, "score_range"), (10, "bad_score"),
                       (11, "unit_mismatch"), (12, "unknown_unit"), (13, "missing_score")}
    assert list(report.unmatched) == ["幸福街道"] and report.unmatched["幸福街道"]
    assert scores_dict(base_scores(center_db, Q3)) == {("county", "371702"): 92.5, ("township", "371702100"): 88.0,
                                                       ("county", "371721"): 90.0}


def test_scores_xlsx_with_codes_and_numbers(center_db, heze):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["代码", "单位名称", "得分"])
    sheet.append([371702, "牡丹区", 92.5])       # codes typed as numbers
    sheet.append([371702100, "沙土镇", 88])
    sheet.append([None, "郓城县", 79.25])        # name only: a county
    sheet.append([None, "黄集乡", 81])           # name only: a township
    buffer = io.BytesIO()
    book.save(buffer)
    report = import_scores(center_db, heze, buffer.getvalue(), Q3, filename="s.xlsx")
    assert report.imported == 4 and not report.rejected
    scores = scores_dict(base_scores(center_db, Q3))
    assert scores[("county", "371725")] == 79.25 and scores[("county", "371702")] == 92.5
    assert sum(1 for level, _ in scores if level == "township") == 2


def test_reimport_replaces_by_default_and_keep_rejects_conflicts(center_db, heze):
    first = "县区,得分\n牡丹区,90\n曹县,80\n".encode()
    import_scores(center_db, heze, first, Q3, filename="a.csv")
    again = import_scores(center_db, heze, first, Q3, filename="a.csv")
    assert again.replaced == 2 and again.imported == 2
    assert scores_dict(base_scores(center_db, Q3)) == {("county", "371702"): 90.0, ("county", "371721"): 80.0}
    keep_file = "县区,得分\n牡丹区,90\n曹县,81\n单县,70\n".encode()
    strict = import_scores(center_db, heze, keep_file, Q3, filename="b.csv", replace=False)
    assert strict.aborted and strict.imported == 0 and [r.code for r in strict.rejected] == ["conflict"]
    assert scores_dict(base_scores(center_db, Q3)) == {("county", "371702"): 90.0, ("county", "371721"): 80.0}
    keep = import_scores(center_db, heze, keep_file, Q3, filename="b.csv", replace=False, partial=True)
    assert keep.already_present == 1 and keep.imported == 1
    assert [r.code for r in keep.rejected] == ["conflict"]
    assert scores_dict(base_scores(center_db, Q3))[("county", "371721")] == 80.0
    assert base_scores(center_db, Quarter(2026, 2)).empty


def test_max_score_is_a_parameter(center_db, heze):
    report = import_scores(center_db, heze, "县区,得分\n牡丹区,105\n".encode(), Q3, filename="a.csv", max_score=120)
    assert report.imported == 1


def test_unreadable_scores_file(center_db, heze):
    with pytest.raises(ImportFileError, match=r"missing column\(s\) 综合考核得分"):
        import_scores(center_db, heze, "县区,备注\n牡丹区,x\n".encode(), Q3, filename="a.csv")
    with pytest.raises(ImportFileError, match="no unit column"):
        import_scores(center_db, heze, "序号,得分\n1,90\n".encode(), Q3, filename="a.csv")


def test_scores_template_lists_every_unit_and_imports_cleanly(center_db, heze):
    data = scores_template("xlsx", registry=heze)
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet.max_row == 1 + 11 + 167
    assert import_scores(center_db, heze, scores_template("csv"), Q3, filename="t.csv").imported == 2


def test_base_scores_frame_columns(center_db):
    frame = base_scores(center_db, Q3)
    assert list(frame.columns) == ["level", "code", "score"] and frame.empty
