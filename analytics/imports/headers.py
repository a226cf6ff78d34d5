"""Finding the header row (title rows above it skipped, a header split over two rows
recognised) and matching its columns by their Chinese and English aliases; then the data
rows, numbered as the clerk sees them in Excel (the header row counts; the first row is 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from manyi.exc import ImportFileError
from .cells import MAX_CELL_CHARS, MAX_HEADER_SEARCH, header_key, neutralise_cell
from .read import Table
from .report import ImportReport, ProgressCallback


# --------------------------------------------------------------------------- headers


@dataclass(frozen=True)
class Column:
    """A logical column of an import: key, display name, accepted header aliases, required?"""

    key: str
    label: str
    aliases: tuple[str, ...]
    required: bool = False


@dataclass
class Header:
    """Where the header is and which sheet column each logical column is."""

    row: int                      # clerk row number of the (last) header row
    columns: dict[str, int]       # key -> 0-based column index
    labels: dict[str, str]        # key -> header text as found
    data_start: int               # index into Table.rows of the first data row
    required: frozenset = frozenset()   # keys of the required columns: only these can reject a row

    def cell(self, cells: list[str], key: str) -> str:
        """The text of logical column ``key`` in a data row ("" when the file has no such column)."""
        index = self.columns.get(key)
        return cells[index] if index is not None and index < len(cells) else ""


def data_rows(table: Table, header: Header, report: "ImportReport",
              progress: ProgressCallback | None = None) -> Iterator[tuple[int, list[str]]]:
    """The non-empty rows below the header as (clerk row number, cells), counted in
    ``report.rows_read``; ``progress(done, total)`` every 500 rows and at the end.

    A formula cell without a cached result, or a cell longer than MAX_CELL_CHARS, rejects
    its row when it is in a required column. In an optional column (a note) it never costs
    the answer: the formula is kept as neutralised text, a long cell is shortened, and the
    report gets a warning."""
    rows = table.rows[header.data_start:]
    total = len(rows)
    labels = {index: header.labels.get(key, key) for key, index in header.columns.items()}
    required = {index for key, index in header.columns.items() if key in header.required}
    for done, (row_number, cells) in enumerate(rows, start=1):
        if progress and (done % 500 == 0 or done == total):
            progress(done, total)
        formulas = [(index, table.formulas[(row_number, index)]) for index in labels
                    if (row_number, index) in table.formulas] if table.formulas else []
        if not any(cells) and not formulas:
            continue
        report.rows_read += 1
        blocking = next(((i, text) for i, text in formulas if i in required), None)
        if blocking is not None:
            report.reject(row_number, labels[blocking[0]], blocking[1][:200],
                          f"公式 {blocking[1][:60]} 没有计算结果（文件未经 Excel 保存）；请在 Excel 中打开并保存，或粘贴为数值",
                          "formula_no_value")
            continue
        long_cell = next((index for index in required if index < len(cells) and len(cells[index]) > MAX_CELL_CHARS),
                         None)
        if long_cell is not None:
            report.reject(row_number, labels[long_cell], cells[long_cell][:50] + "…",
                          f"单元格过长（{len(cells[long_cell])} 个字符，上限 {MAX_CELL_CHARS}）", "too_long")
            continue
        if formulas or any(index < len(cells) and len(cells[index]) > MAX_CELL_CHARS for index in labels):
            cells = list(cells)
            for index, text in formulas:
                while len(cells) <= index:
                    cells.append("")
                cells[index] = neutralise_cell(text)[:MAX_CELL_CHARS]
                report.warn(row_number, labels[index], text[:200],
                            f"公式 {text[:60]} 没有计算结果，已按文本保存（可选列，不影响本行导入）", "formula_no_value")
            for index in labels:
                if index < len(cells) and len(cells[index]) > MAX_CELL_CHARS:
                    report.warn(row_number, labels[index], cells[index][:50] + "…",
                                f"单元格过长（{len(cells[index])} 个字符），已截取前 {MAX_CELL_CHARS} 个字符（可选列）",
                                "too_long")
                    cells[index] = cells[index][:MAX_CELL_CHARS]
        yield row_number, cells


def find_header(table: Table, columns: Iterable[Column]) -> Header:
    """Find the header row (or pair of rows) among the first rows; raise ImportFileError naming
    the missing required columns when none fits."""
    columns = list(columns)
    alias_keys = {col.key: {header_key(a) for a in (col.label, *col.aliases)} for col in columns}
    best: tuple[int, int, int, dict[str, int], dict[str, str]] | None = None
    limit = min(len(table.rows), MAX_HEADER_SEARCH)
    for start in range(limit):
        for span in (1, 2):
            if start + span > len(table.rows):
                continue
            stack = [table.rows[start + k][1] for k in range(span)]
            found: dict[str, int] = {}
            labels: dict[str, str] = {}
            width = max(len(r) for r in stack)
            for index in range(width):
                # the lower header row wins (the upper one is a group title)
                for cells in reversed(stack):
                    text = cells[index] if index < len(cells) else ""
                    key = header_key(text)
                    if not key:
                        continue
                    match = next((c.key for c in columns if key in alias_keys[c.key] and c.key not in found), None)
                    if match:
                        found[match] = index
                        labels[match] = text
                        break
            required = sum(1 for c in columns if c.required and c.key in found)
            score = (required, len(found), -span)
            if best is None or score > (best[0], best[1], -best[2]):
                best = (required, len(found), span, found, labels, start)  # type: ignore[assignment]
    missing_from = [c for c in columns if c.required]
    if best is None or best[0] < len(missing_from):
        found = best[3] if best else {}
        missing = [c for c in missing_from if c.key not in found]
        first = next((cells for _, cells in table.rows if any(cells)), [])
        hint = ""
        if table.encoding == "gb18030" or any("\ufffd" in cell for cell in first):
            hint = f" (the file was read as {table.encoding.upper() or 'text'}; if the header looks garbled, save it as 'CSV UTF-8')"
        raise ImportFileError(
            f"{table.filename}: missing column(s) "
            + "、".join(f"{c.label} (also accepted: {', '.join(c.aliases[:4])})" for c in missing)
            + f"; the first row reads: {' | '.join(c for c in first if c)[:200]!r}{hint}")
    _, _, span, found, labels, start = best  # type: ignore[misc]
    return Header(table.rows[start + span - 1][0], found, labels, start + span,
                  frozenset(c.key for c in columns if c.required))
