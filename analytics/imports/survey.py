"""Import of the quarterly 12333 phone survey (CSV or XLSX) into the center database.

Each answer is attributed to the smallest unit the row names (township if given, else
county). Five-level answers map as the model says: 非常满意, 满意 → satisfied; 基本满意 →
basic; 不满意, 非常不满意 → unsatisfied. 不了解 / 说不清 / 未评价 and blanks are kept as
``excluded`` (counted, never in n). Phone numbers are never stored: only their last four
digits and a salted hash (HMAC-SHA256) to spot repeat callers; digit runs in notes are
masked too. Each row's identity is a salted hash of its content, so importing the same file
twice changes nothing; ``replace=True`` replaces the quarter's survey. Every rejected row
is reported with its row number, column and reason; when any row is rejected nothing is
imported unless ``partial=True`` (then the valid rows are).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta
from pathlib import Path

from manyi.exc import ImportFileError
from manyi.periods import Quarter
from manyi.registry import Registry
from manyi.settings import env_value

from analytics.center import imports as stored

from . import (
    Column,
    data_rows,
    ImportReport,
    ProgressCallback,
    UnitMatcher,
    UnitMatchError,
    clean_text,
    compact,
    csv_template,
    excel_template,
    find_header,
    parse_local_datetime,
    read_table,
)

SATISFIED, BASIC, UNSATISFIED, EXCLUDED = "satisfied", "basic", "unsatisfied", "excluded"

COLUMNS = (
    Column("date", "日期", ("通话日期", "回访日期", "回访时间", "通话时间", "日期时间", "调查日期", "date", "call date",
                          "calldate", "time", "datetime"), required=True),
    Column("phone", "手机号", ("手机号码", "来电号码", "电话", "电话号码", "联系电话", "被访号码", "回访号码", "号码",
                            "phone", "mobile", "phone number", "tel")),
    Column("county", "县区", ("县(区)", "县市区", "区县", "县区名称", "所属县区", "县", "county", "district")),
    Column("township", "乡镇(街道)", ("乡镇", "街道", "乡镇街道", "乡镇(办事处)", "所属乡镇", "镇街", "township", "town",
                                  "street", "subdistrict")),
    Column("code", "单位代码", ("区划代码", "代码", "统计代码", "code", "unit code", "unitcode")),
    Column("rating", "评价", ("满意度", "满意程度", "评价结果", "回访结果", "是否满意", "满意度评价", "rating", "answer",
                            "satisfaction", "result"), required=True),
    Column("note", "备注", ("意见建议", "意见", "说明", "note", "notes", "remark", "comment")),
)

ANSWERS = {
    "非常满意": SATISFIED, "很满意": SATISFIED, "满意": SATISFIED,
    "verysatisfied": SATISFIED, "satisfied": SATISFIED,
    "基本满意": BASIC, "basic": BASIC, "basicallysatisfied": BASIC, "fairlysatisfied": BASIC,
    "不满意": UNSATISFIED, "非常不满意": UNSATISFIED, "很不满意": UNSATISFIED,
    "unsatisfied": UNSATISFIED, "dissatisfied": UNSATISFIED, "veryunsatisfied": UNSATISFIED,
    "verydissatisfied": UNSATISFIED, "notsatisfied": UNSATISFIED,
    "": EXCLUDED, "不了解": EXCLUDED, "说不清": EXCLUDED, "未评价": EXCLUDED, "不清楚": EXCLUDED,
    "无法评价": EXCLUDED, "不知道": EXCLUDED, "说不清楚": EXCLUDED, "dontknow": EXCLUDED, "unknown": EXCLUDED,
    "na": EXCLUDED, "n/a": EXCLUDED, "-": EXCLUDED, "无": EXCLUDED, "notrated": EXCLUDED,
}

# --------------------------------------------------------------------------- phones


def phone_salt(db) -> bytes:
    """The salt of phone hashes: MANYI_PHONE_SALT, else a random one created once in the center db."""
    env = env_value("PHONE_SALT")
    if env:
        return env.encode("utf-8")
    return stored.secret(db, "phone_salt").encode("utf-8")


def normalise_phone(text: str) -> str:
    """Digits of a phone number without +86/0086 country prefix; masked forms keep their '*'."""
    text = compact(text).replace("－", "-")
    kept = re.sub(r"[^0-9*]", "", text)
    if kept.startswith("0086"):
        kept = kept[4:]
    elif kept.startswith("86") and len(kept) == 13:
        kept = kept[2:]
    return kept


def mask_phone(text: str) -> str:
    """``138****5678`` style mask (only the last four digits and up to three leading ones)."""
    digits = normalise_phone(text)
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


_DIGIT_RUN = re.compile(r"\d[\d\- ]{5,}\d")


def mask_digits(text: str) -> str:
    """Mask every run of 7+ digits in free text (a phone number written into a note)."""
    def repl(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return match.group(0) if len(digits) < 7 else digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    return _DIGIT_RUN.sub(repl, text)


# --------------------------------------------------------------------------- import


_ANSWER_NOISE = re.compile(r"[\s_\-'’.。]")
_NON_DIGIT = re.compile(r"\D")


def map_answer(text: str) -> str | None:
    """satisfied / basic / unsatisfied / excluded for an answer as written, None when unknown."""
    key = _ANSWER_NOISE.sub("", clean_text(text).lower())
    if key in ANSWERS:
        return ANSWERS[key]
    if clean_text(text).lower() in ("n/a", "-"):
        return EXCLUDED
    return None


def import_survey(db, registry: Registry, source: str | Path | bytes, quarter: Quarter, *,
                  filename: str | None = None, replace: bool = False, partial: bool = False,
                  progress: ProgressCallback | None = None) -> ImportReport:
    """Import a 12333 survey file for ``quarter``, all-or-nothing unless ``partial``; raise
    ImportFileError when it cannot be read, StoreError when the database write fails."""
    quarter = Quarter.parse(str(quarter)) if not isinstance(quarter, Quarter) else quarter
    table = read_table(source, filename)
    header = find_header(table, COLUMNS)
    if "county" not in header.columns and "township" not in header.columns and "code" not in header.columns:
        raise ImportFileError(f"{table.filename}: no unit column: need 县区 and/or 乡镇(街道) (or 单位代码)")
    salt = phone_salt(db)
    matcher = UnitMatcher(registry)
    report = ImportReport("survey", table.filename, str(quarter), header_row=header.row, encoding=table.encoding,
                          partial=partial)
    labels = {c.key: header.labels.get(c.key, c.label) for c in COLUMNS}
    seen: dict[str, int] = {}
    records: list[tuple] = []
    q_text, q_start, q_end = str(quarter), quarter.start, quarter.end
    keyed = hmac.new(salt, digestmod=hashlib.sha256)   # copied per row: cheaper than a new HMAC

    def row_hash(text: str) -> str:
        h = keyed.copy()
        h.update(text.encode("utf-8"))
        return h.hexdigest()

    for row_number, cells in data_rows(table, header, report, progress):
        # date
        date_text = header.cell(cells, "date")
        if not date_text:
            report.reject(row_number, labels["date"], "", "缺少日期", "missing_date")
            continue
        try:
            answered = parse_local_datetime(date_text)
        except ValueError:
            report.reject(row_number, labels["date"], date_text, f"日期“{date_text}”无法识别", "bad_date")
            continue
        if not q_start <= answered < q_end:
            report.reject(row_number, labels["date"], date_text,
                          f"日期 {answered.date()} 不在 {quarter}（{quarter.start.date()} 至 "
                          f"{(quarter.end - timedelta(days=1)).date()}，北京时间）内", "out_of_quarter")
            continue
        # unit
        try:
            match = matcher.match_cells(header.cell(cells, "code"), header.cell(cells, "county"),
                                        header.cell(cells, "township"))
            unit = (match.level, match.code, match.county_code)
        except UnitMatchError as exc:
            report.reject_unit(row_number, exc, labels)
            continue
        # answer
        answer_text = header.cell(cells, "rating")
        rating = map_answer(answer_text)
        if rating is None:
            report.reject(row_number, labels["rating"], answer_text,
                          f"评价“{answer_text}”无法识别（可用：非常满意、满意、基本满意、不满意、非常不满意、不了解、说不清、未评价）",
                          "bad_answer")
            continue
        # phone
        phone_text = header.cell(cells, "phone")
        phone = normalise_phone(phone_text) if phone_text else ""
        if phone_text and (len(_NON_DIGIT.sub("", phone)) < 4 or (len(phone) < 7)):
            report.reject(row_number, labels["phone"], mask_phone(phone_text), "手机号格式不正确", "bad_phone")
            continue
        raw_note = header.cell(cells, "note")
        answered_text = answered.isoformat()
        answer = compact(answer_text)
        key = row_hash("\x1f".join((q_text, answered_text, phone, unit[0], unit[1], answer, raw_note)))
        if key in seen:
            report.duplicates += 1
            continue
        seen[key] = row_number
        last4 = _NON_DIGIT.sub("", phone)[-4:] if phone else ""
        phone_hash = row_hash("phone:" + phone)[:16] if phone else ""
        records.append((q_text, key, answered_text, unit[0], unit[1], unit[2], rating,
                        answer, last4, phone_hash, mask_digits(raw_note) if raw_note else "", row_number))

    report.valid = len(records)

    def write(conn, import_id: int) -> None:
        if replace:
            report.replaced = stored.delete_survey(conn, str(quarter))
        present = stored.survey_keys(conn, str(quarter))
        new = [record for record in records if record[1] not in present]
        stored.insert_survey(conn, (record + (import_id,) for record in new))
        report.imported = len(new)
        report.excluded = sum(1 for record in new if record[6] == EXCLUDED)
        report.already_present = len(records) - len(new)

    return stored.commit_import(db, report, write)


# --------------------------------------------------------------------------- queries


def survey_counts(db, quarter: Quarter, include_excluded: bool = False):
    """Answers per unit and rating: DataFrame with columns level ("county"|"township"), code, rating, n.

    A row of level "county" counts answers that named only the county; township answers
    appear only under their township (add them to the county yourself). Excluded answers
    (不了解 ...) are left out unless ``include_excluded``.
    """
    import pandas as pd

    rows = stored.survey_count_rows(db, str(quarter), include_excluded)
    frame = pd.DataFrame(rows, columns=["level", "code", "rating", "n"])
    frame["n"] = frame["n"].astype("int64")
    return frame


def survey_summary(db, quarter: Quarter) -> dict:
    """answers, rated, excluded, repeat phone numbers and units of the quarter's survey."""
    return stored.survey_summary(db, str(quarter))


def clear_survey(db, quarter: Quarter) -> int:
    """Delete the quarter's survey answers; return how many."""
    return stored.delete_survey(db, str(quarter))


def survey_template(fmt: str = "xlsx") -> bytes:
    """A survey file to fill in: the accepted headers, example rows and (xlsx) a 说明 sheet."""
    headers = ["日期", "手机号", "县区", "乡镇(街道)", "评价", "备注"]
    examples = [
        ["2026-07-15", "13800001234", "牡丹区", "东城街道", "满意", ""],
        ["2026-07-15", "13900005678", "曹县", "", "基本满意", "只填县区时计入县区"],
        ["2026-07-16", "13700004321", "单县", "东城街道", "不了解", "不计入样本"],
    ]
    if fmt == "csv":
        return csv_template(headers, examples)
    if fmt != "xlsx":
        raise ValueError(f"template format {fmt!r}: use xlsx or csv")
    notes = [
        "12333 电话回访结果导入模板（第一行为表头，可以有标题行，可为 CSV UTF-8/GBK 或 xlsx）",
        "日期：2026-07-15、2026/7/15、2026年7月15日均可；必须在所导入的季度内（北京时间）。",
        "手机号：系统只保存后四位和加盐散列，用于识别重复受访者，不保存完整号码。",
        "县区、乡镇(街道)：填名称或单位代码；可省略“县/区/镇/乡/街道”；只填县区时计入县区。",
        "评价：非常满意、满意 → 满意；基本满意 → 基本满意；不满意、非常不满意 → 不满意；",
        "      不了解、说不清、未评价、空白 → 不计入样本（单独计数）。",
        "同一文件重复导入不会重复计数；选择“替换”会替换该季度已导入的全部回访结果。",
    ]
    return excel_template(headers, examples, notes, "回访结果")
