"""12333 survey import: messy real-world files, answer mapping, idempotence, replace, phone masking."""

from __future__ import annotations

import io
import re
import sqlite3

import openpyxl
import pytest

from analytics.center.imports import import_history, import_report
from analytics.imports.survey import (
    import_survey,
    map_answer,
    mask_digits,
    mask_phone,
    survey_counts,
    survey_summary,
    survey_template,
)
from manyi.exc import ImportFileError
from manyi.periods import Quarter

Q3 = Quarter(2026, 3)

MESSY_ROWS = [
    # date, phone, county, township, answer, note
    ("2026-07-15", "13800001234", "牡丹区", "东城街道 ", "满意", ""),
    ("２０２６/７/１６", "+86 139 0000 5678", "曹县 ", "", "非常满意", ""),
    ("2026年7月16日", "13700004321", "单县", "东城", "不满意", "请回电 13912345678"),
    ("2026-07-16", "13700004322", "牡丹区", "沙土", "基本满意", ""),
    ("2026-07-16", "13700004322", "牡丹区", "沙土", "基本满意", ""),            # duplicate row
    ("2026-07-17", "13700004323", "牡丹区", "沙土镇", "不了解", ""),            # excluded
    ("2026-07-17", "13700004324", "牡丹区", "沙土镇", "", ""),                 # blank: excluded
    ("2026-07-17", "13700004325", "牡丹区", "沙士镇", "满意", ""),              # unknown: candidates
    ("2026-06-30", "13700004326", "牡丹区", "沙土镇", "满意", ""),              # previous quarter
    ("2026-07-18", "13700004327", "鄄城县", "庄寨镇", "满意", ""),              # 庄寨 is in 曹县
    ("2026-07-18", "13700004328", "牡丹区", "沙土镇", "还行吧", ""),            # unknown answer
    ("2026-07-18", "12", "牡丹区", "沙土镇", "满意", ""),                      # bad phone
    ("2026-07-19", "", "", "高新区", "说不清", ""),                            # alias, excluded
    ("2026-07-19", "", "经开区", "", "很满意", ""),                            # alias of a county-level zone
]
HEADER = ("通话日期", "来电号码", "县（区）", "乡镇（街道）", "满意度", "备注")


def csv_bytes(rows=MESSY_ROWS, header=HEADER, encoding="utf-8", title=True) -> bytes:
    lines = (["2026年第三季度12333电话回访结果,,,,,"] if title else []) + [",".join(header)]
    lines += [",".join(f'"{cell}"' if "," in cell else cell for cell in row) for row in rows]
    data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    return data


def xlsx_bytes(rows=MESSY_ROWS) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["2026年第三季度12333电话回访结果"])
    sheet.merge_cells("A1:F1")
    sheet.append(["回访信息", None, "受访单位", None, "回访结果", None])
    sheet.merge_cells("A2:B2")
    sheet.merge_cells("C2:D2")
    sheet.merge_cells("E2:F2")
    sheet.append(list(HEADER))
    for row in rows:
        date, phone, *rest = row
        # Excel users type phone numbers that become numbers, and dates that become dates
        phone_value = int(phone) if phone.isdigit() and len(phone) == 11 else phone
        sheet.append([date, phone_value, *rest])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def check_messy_report(report):
    assert report.rows_read == 14
    assert report.duplicates == 1
    assert report.imported == 8
    assert report.excluded == 3
    by_row = {r.row: r for r in report.rejected}
    first = 3 if report.header_row == 2 else report.header_row + 1   # data starts right after the header
    offset = first - 3
    assert sorted(by_row) == [10 + offset, 11 + offset, 12 + offset, 13 + offset, 14 + offset]
    assert by_row[10 + offset].code == "unknown_unit"
    assert by_row[10 + offset].column == "乡镇(街道)"
    assert by_row[10 + offset].candidates[0] == "沙土镇 (371702100, 牡丹区)"
    assert by_row[11 + offset].code == "out_of_quarter"
    assert by_row[12 + offset].code == "unit_mismatch"
    assert by_row[13 + offset].code == "bad_answer" and by_row[13 + offset].value == "还行吧"
    assert by_row[14 + offset].code == "bad_phone"
    assert report.unmatched == {"沙士镇": report.unmatched["沙士镇"]}
    assert report.rejected_by_reason() == {"unknown_unit": 1, "out_of_quarter": 1, "unit_mismatch": 1,
                                           "bad_answer": 1, "bad_phone": 1}


def expected_counts():
    return {
        ("township", "371702001", "satisfied"): 1,
        ("county", "371721", "satisfied"): 1,
        ("township", "371722004", "unsatisfied"): 1,
        ("township", "371702100", "basic"): 1,
        ("county", "371771", "satisfied"): 1,
    }


def counts_dict(frame):
    return {(r.level, r.code, r.rating): int(r.n) for r in frame.itertuples()}


def check_nothing_imported(report, center_db):
    """The all-or-nothing default: every rejected row listed, nothing written, no import logged."""
    assert report.aborted and not report.partial
    assert report.imported == 0 and report.valid == 8 and report.import_id is None
    assert report.rows_read == 14 and len(report.rejected) == 5
    assert "NOTHING IMPORTED" in report.summary() and "--partial" in report.summary()
    assert center_db.query("SELECT COUNT(*) FROM survey_answers")[0][0] == 0
    assert import_history(center_db) == []


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_messy_csv_in_each_encoding(center_db, heze, encoding):
    strict = import_survey(center_db, heze, csv_bytes(encoding=encoding), Q3, filename=f"survey-{encoding}.csv")
    check_nothing_imported(strict, center_db)
    report = import_survey(center_db, heze, csv_bytes(encoding=encoding), Q3, filename=f"survey-{encoding}.csv",
                           partial=True)
    assert report.header_row == 2 and report.partial and not report.aborted
    check_messy_report(report)
    assert counts_dict(survey_counts(center_db, Q3)) == expected_counts()
    with_excluded = counts_dict(survey_counts(center_db, Q3, include_excluded=True))
    assert with_excluded[("township", "371702100", "excluded")] == 2
    assert with_excluded[("county", "371772", "excluded")] == 1   # 高新区 written in the township column


def test_messy_xlsx_with_merged_header_rows(center_db, heze, tmp_path):
    path = tmp_path / "回访.xlsx"
    path.write_bytes(xlsx_bytes())
    check_nothing_imported(import_survey(center_db, heze, path, Q3), center_db)
    report = import_survey(center_db, heze, path, Q3, partial=True)
    assert report.filename == "回访.xlsx" and report.header_row == 3
    check_messy_report(report)
    assert counts_dict(survey_counts(center_db, Q3)) == expected_counts()


def test_same_answers_from_csv_and_xlsx_are_one_survey(center_db, heze):
    import_survey(center_db, heze, csv_bytes(), Q3, filename="a.csv", partial=True)
    again = import_survey(center_db, heze, xlsx_bytes(), Q3, filename="a.xlsx", partial=True)
    assert again.imported == 0 and again.already_present == 8
    assert counts_dict(survey_counts(center_db, Q3)) == expected_counts()


def test_importing_the_same_file_twice_changes_nothing(center_db, heze):
    first = import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    before = center_db.query("SELECT * FROM survey_answers ORDER BY id")
    second = import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    assert first.imported == 8 and second.imported == 0 and second.already_present == 8
    after = center_db.query("SELECT * FROM survey_answers ORDER BY id")
    assert [tuple(r) for r in after] == [tuple(r) for r in before]
    assert [h["imported"] for h in import_history(center_db, "survey")] == [0, 8]


def test_replace_replaces_the_quarter(center_db, heze):
    import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    fix = [("2026-08-01", "13600000001", "曹县", "庄寨镇", "不满意", "")]
    added = import_survey(center_db, heze, csv_bytes(fix), Q3, filename="fix.csv")
    assert added.imported == 1 and sum(survey_counts(center_db, Q3)["n"]) == 6
    replaced = import_survey(center_db, heze, csv_bytes(fix), Q3, filename="fix.csv", replace=True)
    assert replaced.replaced == 9 and replaced.imported == 1
    assert counts_dict(survey_counts(center_db, Q3)) == {("township", "371721101", "unsatisfied"): 1}


def test_replace_touches_only_its_quarter(center_db, heze):
    import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    q4 = [("2026-10-01", "13600000001", "曹县", "", "满意", "")]
    import_survey(center_db, heze, csv_bytes(q4), Quarter(2026, 4), filename="q4.csv", replace=True)
    assert counts_dict(survey_counts(center_db, Q3)) == expected_counts()
    assert counts_dict(survey_counts(center_db, Quarter(2026, 4))) == {("county", "371721", "satisfied"): 1}


def test_quarter_boundary_is_china_time(center_db, heze):
    rows = [("2026-09-30 23:59", "", "曹县", "", "满意", ""), ("2026-10-01 00:00", "", "曹县", "", "满意", ""),
            ("2026-06-30T16:00:00Z", "", "曹县", "", "满意", "")]   # = 2026-07-01 00:00 China time
    report = import_survey(center_db, heze, csv_bytes(rows), Q3, filename="b.csv", partial=True)
    assert report.imported == 2
    assert [r.row for r in report.rejected] == [4] and report.rejected[0].code == "out_of_quarter"


def test_no_full_phone_number_is_stored_anywhere(center_db, heze, tmp_path):
    import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    import_survey(center_db, heze, xlsx_bytes(), Q3, filename="s.xlsx", partial=True)
    center_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("center.db*"))
    for full in ("13800001234", "13900005678", "13700004321", "13912345678", "13700004322", "13700004328"):
        assert full.encode() not in raw, full
    rows = center_db.query("SELECT phone_last4, phone_hash, note FROM survey_answers WHERE phone_last4 = '1234'")
    assert len(rows) == 1 and len(rows[0]["phone_hash"]) == 16
    note = center_db.query("SELECT note FROM survey_answers WHERE note != ''")[0]["note"]
    assert note == "请回电 139****5678"


def test_repeat_callers_are_spotted_by_the_salted_hash(center_db, heze):
    rows = [("2026-07-01", "138 0000 1234", "曹县", "", "满意", ""), ("2026-07-02", "+8613800001234", "曹县", "", "满意", "")]
    import_survey(center_db, heze, csv_bytes(rows), Q3, filename="r.csv")
    assert survey_summary(center_db, Q3)["repeat_phones"] == 1
    hashes = {r["phone_hash"] for r in center_db.query("SELECT phone_hash FROM survey_answers")}
    assert len(hashes) == 1


def test_salt_from_environment_changes_the_hash(center_db, heze, tmp_path, monkeypatch):
    from analytics.center import CenterDB

    rows = [("2026-07-01", "13800001234", "曹县", "", "满意", "")]
    import_survey(center_db, heze, csv_bytes(rows), Q3, filename="r.csv")
    monkeypatch.setenv("MANYI_PHONE_SALT", "another salt")
    other = CenterDB(tmp_path / "other.db")
    import_survey(other, heze, csv_bytes(rows), Q3, filename="r.csv")
    first = center_db.query("SELECT phone_hash FROM survey_answers")[0][0]
    second = other.query("SELECT phone_hash FROM survey_answers")[0][0]
    other.close()
    assert first != second
    assert not center_db.query("SELECT 1 FROM center_secrets WHERE value = 'another salt'")


def test_rejected_phone_values_are_masked_in_the_report(center_db, heze):
    rows = [("2026-07-01", "1380000", "曹县", "", "满意", "")]
    report = import_survey(center_db, heze, csv_bytes(rows), Q3, filename="r.csv")
    assert report.imported == 1
    rows = [("2026-07-01", "12x", "曹县", "", "满意", "")]
    report = import_survey(center_db, heze, csv_bytes(rows), Q3, filename="r.csv", partial=True)
    assert report.rejected[0].code == "bad_phone" and report.rejected[0].value == "**"
    stored = import_report(center_db, report.import_id)
    assert stored["rejected"][0]["code"] == "bad_phone"


def test_missing_columns_and_unreadable_files_raise_import_file_error(center_db, heze):
    with pytest.raises(ImportFileError, match=r"missing column\(s\) 评价"):
        import_survey(center_db, heze, "日期,县区,备注\n2026-07-01,曹县,x\n".encode(), Q3, filename="x.csv")
    with pytest.raises(ImportFileError, match="no unit column"):
        import_survey(center_db, heze, "日期,评价\n2026-07-01,满意\n".encode(), Q3, filename="x.csv")
    with pytest.raises(ImportFileError, match="file not found"):
        import_survey(center_db, heze, "/nonexistent/survey.csv", Q3)
    with pytest.raises(ImportFileError, match="neither UTF-8 nor GBK"):
        import_survey(center_db, heze, b"\xff\xfe\xfd"[1:] * 50 + b"\x81\x30\xff", Q3, filename="x.csv")
    assert not center_db.query("SELECT name FROM sqlite_master WHERE name = 'survey_answers'") or \
        not center_db.query("SELECT 1 FROM survey_answers")


def test_code_column_wins_over_names(center_db, heze):
    text = "日期,单位代码,乡镇,评价\n2026-07-01,371702100,东城,满意\n2026-07-02,３７１７２１,,满意\n2026-07-02,999,,满意\n"
    report = import_survey(center_db, heze, text.encode(), Q3, filename="c.csv", partial=True)
    assert report.imported == 2
    assert counts_dict(survey_counts(center_db, Q3)) == {("township", "371702100", "satisfied"): 1,
                                                         ("county", "371721", "satisfied"): 1}
    assert report.rejected[0].row == 4 and report.rejected[0].column == "单位代码"


def test_english_headers(center_db, heze):
    text = "Date,Phone,County,Township,Rating,Note\n2026-07-01,13800001234,Cao Xian,,satisfied,\n" \
           "2026-07-01,13800001235,曹县,,Very Satisfied,\n2026-07-01,13800001236,曹县,,dissatisfied,\n"
    report = import_survey(center_db, heze, text.encode(), Q3, filename="en.csv", partial=True)
    assert report.imported == 2
    assert report.rejected[0].column == "County" and report.rejected[0].code == "unknown_unit"


def test_answer_mapping_follows_the_model():
    assert [map_answer(a) for a in ("非常满意", "满意", "基本满意", "不满意", "非常不满意")] == \
        ["satisfied", "satisfied", "basic", "unsatisfied", "unsatisfied"]
    assert {map_answer(a) for a in ("不了解", "说不清", "未评价", "", "  ")} == {"excluded"}
    assert map_answer("满 意 ") == "satisfied" and map_answer("一般") is None


def test_masking_helpers():
    assert mask_phone("13800001234") == "138****1234"
    assert mask_digits("电话13800001234，座机 0530-1234567") == "电话138****1234，座机 053****4567"
    assert re.search(r"\d{7}", mask_digits("身份证 371702199001011234")) is None


def test_survey_template_round_trips(center_db, heze, tmp_path):
    for fmt in ("xlsx", "csv"):
        data = survey_template(fmt)
        report = import_survey(center_db, heze, data, Q3, filename=f"template.{fmt}", replace=True)
        assert report.rows_read == 3 and report.imported == 3 and not report.rejected
        assert report.excluded == 1
    book = openpyxl.load_workbook(io.BytesIO(survey_template("xlsx")))
    assert book.sheetnames == ["回访结果", "说明"]
    assert survey_template("csv").startswith(b"\xef\xbb\xbf")


def test_progress_is_reported_on_long_files(center_db, heze):
    rows = [(f"2026-07-{1 + i % 28:02d}", f"138{i:08d}", "曹县", "", "满意", "") for i in range(1200)]
    calls = []
    report = import_survey(center_db, heze, csv_bytes(rows), Q3, filename="long.csv",
                           progress=lambda done, total: calls.append((done, total)))
    assert report.imported == 1200
    assert calls[0] == (500, 1200) and calls[-1] == (1200, 1200)


def test_summary_lists_rejections_by_reason(center_db, heze):
    report = import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    text = report.summary()
    assert "read 14 rows, imported 8" in text and "unknown_unit" in text and "沙土镇 (371702100, 牡丹区)" in text
    assert report.to_dict()["rejected_by_reason"]["bad_answer"] == 1


def test_db_file_is_a_plain_sqlite_file(center_db, heze, tmp_path):
    import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    with sqlite3.connect(tmp_path / "center.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM survey_answers").fetchone()[0] == 8


def test_replace_with_an_unreadable_file_keeps_the_survey(center_db, heze):
    import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    with pytest.raises(ImportFileError):
        import_survey(center_db, heze, b"PK\x03\x04broken", Q3, filename="new.xlsx", replace=True)
    assert counts_dict(survey_counts(center_db, Q3)) == expected_counts()


def test_replace_with_rejected_rows_keeps_the_survey(center_db, heze):
    import_survey(center_db, heze, csv_bytes(), Q3, filename="s.csv", partial=True)
    fix = [("2026-08-01", "13600000001", "曹县", "庄寨镇", "不满意", ""), ("2026-08-02", "", "曹县", "", "一般", "")]
    report = import_survey(center_db, heze, csv_bytes(fix), Q3, filename="fix.csv", replace=True)
    assert report.aborted and report.replaced == 0 and report.valid == 1
    assert [(r.row, r.column, r.value, r.code) for r in report.rejected] == [(4, "满意度", "一般", "bad_answer")]
    assert counts_dict(survey_counts(center_db, Q3)) == expected_counts()
    assert [h["imported"] for h in import_history(center_db, "survey")] == [8]


def test_semicolon_and_tab_separated_files(center_db, heze):
    for sep in (";", "\t"):
        text = sep.join(("日期", "县区", "评价")) + "\n" + sep.join(("2026-07-01", "曹县", "满意")) + "\n"
        report = import_survey(center_db, heze, text.encode("gbk"), Q3, filename="s.csv", replace=True)
        assert report.imported == 1 and not report.rejected, sep
