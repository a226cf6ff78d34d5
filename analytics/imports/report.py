"""What an import did (:class:`ImportReport`: rows read, imported, rejected rows with
reasons) and the downloadable templates."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable

from .cells import csv_bytes, neutralise_cell
from .units import UnitMatchError


# --------------------------------------------------------------------------- reports


@dataclass
class RejectedRow:
    """One row that was not imported: clerk row number, column, cell value and why."""

    row: int
    column: str
    value: str
    reason: str
    code: str = ""           # stable short reason code, e.g. unknown_unit, bad_date, out_of_quarter
    candidates: list[str] = field(default_factory=list)


REASON_LABELS = {
    "unknown_unit": "单位不在区划登记中",
    "unit_mismatch": "乡镇与县区不符",
    "ambiguous_unit": "单位重名",
    "missing_unit": "缺少单位",
    "bad_date": "日期无法识别",
    "missing_date": "缺少日期",
    "out_of_quarter": "日期不在本季度",
    "bad_answer": "评价无法识别",
    "bad_phone": "手机号格式不正确",
    "bad_score": "得分无法识别",
    "score_range": "得分超出范围",
    "missing_score": "缺少得分",
    "conflict": "同一单位多个不同得分",
    "formula_no_value": "公式没有计算结果",
    "too_long": "单元格过长",
}


@dataclass
class ImportReport:
    """What an import did: rows read, imported, duplicates, rejected rows and unmatched names."""

    kind: str                       # "survey" | "scores"
    filename: str
    quarter: str
    rows_read: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[RejectedRow] = field(default_factory=list)   # optional cells neutralised or shortened; rows kept
    unmatched: dict[str, list[str]] = field(default_factory=dict)
    excluded: int = 0               # survey answers kept but excluded from n (不了解, blank ...)
    already_present: int = 0        # rows identical to ones imported before (re-import)
    replaced: int = 0               # rows of the quarter removed by replace=True
    header_row: int = 0
    encoding: str = ""
    import_id: int | None = None
    partial: bool = False           # the user asked to import the valid rows despite rejected ones
    valid: int = 0                  # rows that passed validation (imported unless aborted)
    aborted: bool = False           # rows were rejected and partial was not asked: nothing written

    def reject(self, row: int, column: str, value: str, reason: str, code: str, candidates=()) -> None:
        """Record a rejected row."""
        self.rejected.append(RejectedRow(row, column, value, reason, code, list(candidates)))

    def warn(self, row: int, column: str, value: str, reason: str, code: str) -> None:
        """Record a problem in an optional cell that did not cost the row (at most 1,000 are listed)."""
        if len(self.warnings) < 1000:
            self.warnings.append(RejectedRow(row, column, value, reason, code, []))

    def reject_unit(self, row: int, exc: UnitMatchError, labels: dict[str, str]) -> None:
        """Record a row whose unit did not match (column named by its header text); an unknown
        name is also listed in ``unmatched`` with its closest candidates."""
        column = {key: labels[key] for key in ("county", "township", "code")}.get(exc.column, exc.column)
        self.reject(row, column, exc.value, exc.reason, exc.code, exc.candidates)
        if exc.code == "unknown_unit":
            self.unmatched.setdefault(exc.value, exc.candidates)

    def rejected_by_reason(self) -> dict[str, int]:
        """Number of rejected rows per reason code."""
        return dict(Counter(r.code or r.reason for r in self.rejected))

    def summary(self) -> str:
        """A few lines for the CLI and the web page."""
        lines = []
        if self.aborted:
            lines.append(
                f"NOTHING IMPORTED from {self.filename} → {self.quarter} ({self.kind}): {len(self.rejected)} of "
                f"{self.rows_read} rows rejected, so the {self.valid} valid rows were not imported either. Fix the "
                "rejected rows and import the file again, or import only the valid rows with --partial "
                "(partial=True; on the web page 仅导入有效行，跳过错误行).")
        else:
            lines.append(
                f"{self.filename} → {self.quarter} ({self.kind}): read {self.rows_read} rows, imported {self.imported}"
                + (f" (of which {self.excluded} excluded answers 不了解/说不清/未评价/空白)" if self.kind == "survey" else "")
                + f", {self.already_present} already imported, {self.duplicates} duplicate rows in the file,"
                + f" {len(self.rejected)} rejected" + (" (partial import: rejected rows skipped)" if self.rejected else "")
                + (f", {self.replaced} earlier rows replaced" if self.replaced else ""))
        for code, count in sorted(self.rejected_by_reason().items(), key=lambda kv: -kv[1]):
            lines.append(f"  rejected {count:>5}  {code}  {REASON_LABELS.get(code, '')}")
        for name, candidates in self.unmatched.items():
            lines.append(f"  unmatched {name!r}: closest " + ("; ".join(candidates) if candidates else "none"))
        if self.warnings:
            lines.append(f"  {len(self.warnings)} warnings: optional cells neutralised or shortened, their rows kept "
                         f"(first: row {self.warnings[0].row} [{self.warnings[0].column}] {self.warnings[0].reason})")
        return "\n".join(lines)

    def details(self, limit: int | None = 50) -> str:
        """The rejected rows, one per line: row, column, value, reason."""
        rows = self.rejected if limit is None else self.rejected[:limit]
        out = [f"  row {r.row} [{r.column}] {r.value!r}: {r.reason}" for r in rows]
        if limit is not None and len(self.rejected) > limit:
            out.append(f"  ... and {len(self.rejected) - limit} more")
        return "\n".join(out)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        data = asdict(self)
        data["rejected_by_reason"] = self.rejected_by_reason()
        return data


ProgressCallback = Callable[[int, int], None]


def excel_template(headers: list[str], examples: list[list], notes: list[str], title: str) -> bytes:
    """An .xlsx template: bold header, example rows, column widths and a 说明 sheet."""
    import openpyxl
    from openpyxl.styles import Font

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    sheet.append(headers)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in examples:
        sheet.append([neutralise_cell(v) for v in row])
    for index, header in enumerate(headers, start=1):
        sheet.column_dimensions[openpyxl.utils.get_column_letter(index)].width = max(12, 2 * len(header) + 4)
    sheet.freeze_panes = "A2"
    help_sheet = book.create_sheet("说明")
    for line in notes:
        help_sheet.append([line])
    help_sheet.column_dimensions["A"].width = 100
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def csv_template(headers: list[str], examples: list[list]) -> bytes:
    """A CSV template in UTF-8 with BOM (so that Excel opens it with the right encoding)."""
    return csv_bytes([headers, *([neutralise_cell(v) for v in row] for row in examples)])
