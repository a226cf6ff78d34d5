"""Import of the composite assessment scores (综合考核得分) per county and township per quarter.

A row names a unit by code, or by county and/or township name (township wins; a row with
only a county is a county score), and gives its score. Scores must be numbers in
[0, max_score] (default 100). Two rows for the same unit with the same score count as a
duplicate; with different scores both are rejected (the office must decide). By default an
import replaces the quarter's scores (the office sends the whole sheet); with
``replace=False`` a unit that already has a different score is rejected. When any row is
rejected nothing is imported unless ``partial=True`` (then the valid rows are).
"""

from __future__ import annotations

from pathlib import Path

from manyi.exc import ImportFileError
from manyi.periods import Quarter
from manyi.registry import Registry

from analytics.center import imports as stored

from . import (
    Column,
    data_rows,
    ImportReport,
    ProgressCallback,
    UnitMatcher,
    UnitMatchError,
    csv_template,
    excel_template,
    find_header,
    parse_number,
    read_table,
)

COLUMNS = (
    Column("code", "代码", ("单位代码", "区划代码", "统计代码", "code", "unit code", "unitcode")),
    Column("county", "县区", ("县(区)", "县市区", "区县", "所属县区", "county", "district")),
    Column("township", "乡镇(街道)", ("乡镇", "街道", "乡镇街道", "镇街", "township", "town", "street")),
    Column("name", "单位", ("单位名称", "被考核单位", "名称", "unit", "name")),
    Column("score", "综合考核得分", ("考核得分", "综合得分", "得分", "总分", "分数", "score", "total score",
                                 "composite score", "base score"), required=True),
)

def import_scores(db, registry: Registry, source: str | Path | bytes, quarter: Quarter, *,
                  filename: str | None = None, replace: bool = True, partial: bool = False,
                  progress: ProgressCallback | None = None, max_score: float = 100.0) -> ImportReport:
    """Import a composite-score sheet for ``quarter``, all-or-nothing unless ``partial``; raise
    ImportFileError when it cannot be read, StoreError when the database write fails."""
    quarter = Quarter.parse(str(quarter)) if not isinstance(quarter, Quarter) else quarter
    table = read_table(source, filename)
    header = find_header(table, COLUMNS)
    if not {"code", "county", "township", "name"} & set(header.columns):
        raise ImportFileError(f"{table.filename}: no unit column: need 代码, 县区 and/or 乡镇(街道)")
    matcher = UnitMatcher(registry)
    report = ImportReport("scores", table.filename, str(quarter), header_row=header.row, encoding=table.encoding,
                          partial=partial)
    labels = {c.key: header.labels.get(c.key, c.label) for c in COLUMNS}
    found: dict[tuple[str, str], list[tuple[int, float, str]]] = {}

    for row_number, cells in data_rows(table, header, report, progress):
        township = header.cell(cells, "township")
        county = header.cell(cells, "county")
        if not township and not county and header.cell(cells, "name"):
            # a single 单位 column: a township name, else a county name
            township, county = _split_name(matcher, header.cell(cells, "name"))
        try:
            match = matcher.match_cells(header.cell(cells, "code"), county, township)
            level, code = match.level, match.code
        except UnitMatchError as exc:
            report.reject_unit(row_number, exc, labels)
            continue
        text = header.cell(cells, "score")
        if not text:
            report.reject(row_number, labels["score"], "", "缺少得分", "missing_score")
            continue
        try:
            score = parse_number(text)
        except ValueError:
            report.reject(row_number, labels["score"], text, f"得分“{text}”不是数字", "bad_score")
            continue
        if not 0 <= score <= max_score:
            report.reject(row_number, labels["score"], text, f"得分 {score:g} 不在 0 到 {max_score:g} 之间", "score_range")
            continue
        found.setdefault((level, code), []).append((row_number, score, text))

    records = []
    for (level, code), rows in found.items():
        scores = {score for _, score, _ in rows}
        if len(scores) > 1:
            where = "、".join(f"第{r}行 {s:g}" for r, s, _ in rows)
            for row_number, _, text in rows:
                report.reject(row_number, labels["score"], text,
                              f"{matcher.describe(code)} 有多个不同得分（{where}），均未导入", "conflict")
            continue
        report.duplicates += len(rows) - 1
        records.append((str(quarter), level, code, rows[0][1], rows[0][0]))
    report.rejected.sort(key=lambda r: r.row)

    report.valid = len(records)

    def write(conn, import_id: int) -> None:
        if replace:
            report.replaced = stored.delete_scores(conn, str(quarter))
        existing = stored.stored_scores(conn, str(quarter))
        for record in records:
            key = (record[1], record[2])
            if key in existing:
                if existing[key] == record[3]:
                    report.already_present += 1
                else:
                    report.valid -= 1
                    report.reject(record[4], labels["score"], f"{record[3]:g}",
                                  f"{matcher.describe(record[2])} 已有得分 {existing[key]:g}；要更正请选择替换导入",
                                  "conflict")
                continue
            stored.insert_score(conn, *record, import_id)
            report.imported += 1

    return stored.commit_import(db, report, write)


def _split_name(matcher: UnitMatcher, name: str) -> tuple[str, str]:
    """(township, county) for a single unit name: a county when it is one, else a township."""
    try:
        matcher.county(name)
        return "", name
    except UnitMatchError:
        return name, ""


def base_scores(db, quarter: Quarter):
    """The quarter's composite scores: DataFrame with columns level ("county"|"township"), code, score."""
    import pandas as pd

    frame = pd.DataFrame(stored.score_rows(db, str(quarter)), columns=["level", "code", "score"])
    frame["score"] = frame["score"].astype("float64")
    return frame


def clear_scores(db, quarter: Quarter) -> int:
    """Delete the quarter's scores; return how many."""
    return stored.delete_scores(db, str(quarter))


def scores_template(fmt: str = "xlsx", registry: Registry | None = None) -> bytes:
    """A score sheet to fill in; with a registry, one row per county and township (score blank)."""
    headers = ["代码", "县区", "乡镇(街道)", "综合考核得分"]
    if registry is not None:
        examples = [[c.code, c.name, "", ""] for c in registry.counties.values()]
        examples += [[t.code, registry.counties[t.county_code].name if t.county_code in registry.counties else "",
                      t.name, ""] for t in registry.townships.values()]
    else:
        examples = [["371702", "牡丹区", "", 92.5], ["371702001", "牡丹区", "东城街道", 88]]
    if fmt == "csv":
        return csv_template(headers, examples)
    if fmt != "xlsx":
        raise ValueError(f"template format {fmt!r}: use xlsx or csv")
    notes = [
        "综合考核得分导入模板：每个县区、乡镇(街道)每季度一行。",
        "单位：填代码，或县区/乡镇(街道)名称（可省略“县/区/镇/乡/街道”）；只填县区的行是县区得分。",
        "得分：0 到 100 的数字；同一单位出现两个不同得分时两行都不导入。",
        "默认替换该季度已导入的全部得分。",
    ]
    return excel_template(headers, examples, notes, "综合考核得分")

