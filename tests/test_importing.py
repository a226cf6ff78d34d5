"""Shared import machinery: encodings, header detection, cleaning, unit matching, formula neutralisation."""

from __future__ import annotations

import io

import openpyxl
import pytest

from analytics.imports import (
    Column,
    UnitMatcher,
    UnitMatchError,
    clean_text,
    find_header,
    neutralise_cell,
    parse_local_datetime,
    parse_number,
    read_table,
)
from manyi.exc import ImportFileError
from manyi.periods import CHINA_TZ

COLUMNS = (Column("date", "日期", ("通话日期", "date"), required=True),
           Column("county", "县区", ("县(区)", "county")),
           Column("rating", "评价", ("满意度", "rating"), required=True))


@pytest.mark.parametrize("encoding,prefix", [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("gbk", b""), ("gb18030", b""),
                                             ("utf-16", b"")])
def test_csv_in_every_encoding_reads_the_same(encoding, prefix):
    text = "日期,县(区),满意度\n2026-07-01,牡丹区,满意\n"
    if encoding == "utf-16":
        text = text.replace(",", "\t")
    data = prefix + text.encode(encoding)
    table = read_table(data, "f.csv")
    assert [cells for _, cells in table.rows] == [["日期", "县(区)", "满意度"], ["2026-07-01", "牡丹区", "满意"]]


def test_gb18030_only_characters_are_read():
    data = "日期,县区,评价\n2026-07-01,䶮城镇,满意\n".encode("gb18030")  # 䶮 is not in GBK
    assert read_table(data, "f.csv").rows[1][1][1] == "䶮城镇"


def test_undecodable_bytes_name_the_problem():
    with pytest.raises(ImportFileError, match="neither UTF-8 nor GBK/GB18030"):
        read_table(b"\xff\xff\xff\x81\x30\xff,abc\n", "bad.csv")


def test_old_xls_and_broken_xlsx_are_refused_with_a_reason():
    with pytest.raises(ImportFileError, match=r"\.xls\) files are not supported"):
        read_table(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "old.xls")
    with pytest.raises(ImportFileError, match="not a readable .xlsx"):
        read_table(b"PK\x03\x04garbage", "broken.xlsx")
    with pytest.raises(ImportFileError, match="empty"):
        read_table(b"  \n", "empty.csv")


def test_full_width_characters_and_spaces_are_normalised():
    assert clean_text("  ２０２６－０７－０１\u3000") == "2026-07-01"
    assert clean_text("乡镇（街道） ") == "乡镇(街道)"
    assert clean_text(13800001234.0) == "13800001234"
    assert clean_text(None) == ""


def test_header_found_below_a_title_row_with_aliases():
    table = read_table("2026年第三季度回访\n\n通话日期 , 县（区）, 满意度 \n2026-07-01,牡丹区,满意\n".encode(), "f.csv")
    header = find_header(table, COLUMNS)
    assert header.row == 3 and header.columns == {"date": 0, "county": 1, "rating": 2}
    assert table.rows[header.data_start][0] == 4


def test_two_row_header_from_csv_export_of_merged_cells():
    text = "回访信息,,结果\n日期,县区,\n,,评价\n2026-07-01,牡丹区,满意\n"
    table = read_table(text.encode(), "f.csv")
    header = find_header(table, COLUMNS)
    assert header.columns == {"date": 0, "county": 1, "rating": 2}
    assert table.rows[header.data_start][0] == 4


def test_merged_header_cells_in_excel_are_filled():
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["2026年第三季度12333回访结果"])
    sheet.merge_cells("A1:C1")
    sheet.append(["日期", "单位", None])
    sheet.append([None, "县区", "评价"])
    sheet.merge_cells("A2:A3")       # 日期 spans both header rows
    sheet.merge_cells("B2:C2")       # 单位 is a group title over 县区 and 评价
    sheet.append(["2026-07-01", "牡丹区", "满意"])
    buffer = io.BytesIO()
    book.save(buffer)
    table = read_table(buffer.getvalue(), "f.xlsx")
    header = find_header(table, COLUMNS)
    assert header.columns == {"date": 0, "county": 1, "rating": 2}
    assert header.row == 3
    assert table.rows[header.data_start] == (4, ["2026-07-01", "牡丹区", "满意"])


def test_missing_required_column_is_named():
    with pytest.raises(ImportFileError, match=r"missing column\(s\) 评价"):
        find_header(read_table("日期,县区,备注\n2026-07-01,牡丹区,x\n".encode(), "f.csv"), COLUMNS)


def test_garbled_header_suggests_the_encoding():
    data = "日期,县区,评价\n".encode("utf-8").decode("latin-1").encode("gb18030", errors="replace")
    with pytest.raises(ImportFileError, match="read as GB18030.*CSV UTF-8"):
        find_header(read_table(data, "f.csv"), COLUMNS)


def test_dates_as_clerks_write_them():
    assert parse_local_datetime("2026/7/5").date().isoformat() == "2026-07-05"
    assert parse_local_datetime("2026年7月5日").date().isoformat() == "2026-07-05"
    assert parse_local_datetime("20260705").date().isoformat() == "2026-07-05"
    assert parse_local_datetime("2026-07-05 10:30").hour == 10
    moment = parse_local_datetime("2026-06-30T16:30:00Z")   # UTC 16:30 = 00:30 on 1 July in China
    assert moment.tzinfo == CHINA_TZ and moment.date().isoformat() == "2026-07-01"
    assert parse_local_datetime("46208").date().isoformat() == "2026-07-05"   # Excel serial day
    with pytest.raises(ValueError):
        parse_local_datetime("昨天")


def test_numbers_as_clerks_write_them():
    assert parse_number("９２.５") == 92.5
    assert parse_number("92,5") == 92.5
    assert parse_number("88分") == 88
    for bad in ("nan", "优", ""):
        with pytest.raises(ValueError):
            parse_number(bad)


def test_unit_matching_by_code_name_suffix_and_alias(heze):
    m = UnitMatcher(heze)
    assert m.county("371721") == "371721"
    assert m.county("曹县") == "371721"
    assert m.county("牡丹") == "371702"
    assert m.county("菏泽市牡丹区") == "371702"
    assert m.county("高新区") == "371772"
    assert m.township("沙土镇", None) == "371702100"
    assert m.township("沙土", "371702") == "371702100"
    assert m.township("371702100", None) == "371702100"
    assert m.match("单县", "东城街道").code.startswith("371722")
    assert m.match("牡丹区", "").level == "county"


def test_unmatched_names_come_with_closest_candidates(heze):
    m = UnitMatcher(heze)
    with pytest.raises(UnitMatchError) as info:
        m.township("沙士镇", "371702")   # 士 typed for 土
    assert info.value.code == "unknown_unit"
    assert info.value.candidates[0] == "沙土镇 (371702100, 牡丹区)"
    with pytest.raises(UnitMatchError) as info:
        m.township("东城街道", None)       # 牡丹区 and 单县 both have one
    assert info.value.code == "ambiguous_unit" and len(info.value.candidates) == 2
    with pytest.raises(UnitMatchError) as info:
        m.county("牡舟区")
    assert "牡丹区 (371702)" in info.value.candidates


@pytest.mark.parametrize("value,expected", [("=1+1", "'=1+1"), ("+86 138", "'+86 138"), ("-cmd", "'-cmd"),
                                            ("@SUM(A1)", "'@SUM(A1)"), ("\t=x", "'\t=x"), ("满意", "满意"),
                                            (-3.5, -3.5), (None, None), ("", "")])
def test_neutralise_cell(value, expected):
    assert neutralise_cell(value) == expected
