"""Shared machinery of the spreadsheet imports (12333 survey, composite scores).

Reading: CSV in UTF-8, UTF-8 with BOM, UTF-16 (Excel "Unicode text") or GBK/GB18030, and
XLSX (openpyxl); merged cells are filled with their top-left value, title rows above the
header are skipped, and a header split over two rows (a merged group title above the
column names) is recognised. Cleaning: Unicode NFKC (full-width letters, digits and
brackets become ASCII), trimmed spaces. Header aliases in Chinese and English. Unit names
matched by code, exact name, name without its 县/区/镇/乡/街道 suffix, or the registry's
alias table, with the closest candidates (difflib) for names that match nothing. Row
numbers are the ones the clerk sees in Excel (the header row counts; the first row is 1).

Writing is all-or-nothing by default: :func:`commit_import` writes the valid rows in one
transaction only when no row was rejected (``partial=True`` imports the valid rows and
reports the others). A file that cannot be read raises :class:`~manyi.exc.ImportFileError`
whatever went wrong inside the parser (truncated zip, broken XML, binary data).

Also :func:`neutralise_cell`, used by every CSV/XLSX writer so that a cell starting with
= + - @ is never run as a formula by a spreadsheet program.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import sqlite3
import unicodedata
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from manyi.exc import ImportFileError, StoreError
from manyi.periods import CHINA_TZ, parse_china_time
from manyi.registry import Registry

MAX_HEADER_SEARCH = 15
MAX_CELL_CHARS = 2000                     # a longer cell in a required column rejects its row
# Bounds of what a file may hold, so that a hostile or broken file costs bounded memory and
# time (a 20 MB CSV of one-character rows, an XLSX with a cell at XFD1048576 or a merged
# range A1:XFD20000); a file beyond them is refused with a message saying which bound.
MAX_ROWS = 200_000                        # rows read, blank ones included
MAX_COLUMNS = 64                          # columns read; a value further right refuses the file
MAX_FILE_BYTES = 50 * 1024 * 1024         # a file named on the command line (uploads: 20 MB)
MAX_XLSX_UNCOMPRESSED = 160 * 1024 * 1024  # refuse zip bombs before openpyxl inflates them
MAX_XLSX_SHARED_STRINGS = 24 * 1024 * 1024  # openpyxl holds the shared-string table in memory
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# --------------------------------------------------------------------------- cells


def neutralise_cell(value):
    """Make a cell safe for CSV/XLSX: a string starting with = + - @ (or tab/CR) gets a
    leading apostrophe so that spreadsheet programs show it as text. Numbers, dates and
    None pass through unchanged (a negative number is a number, not a formula)."""
    if isinstance(value, str) and value and value[0] in FORMULA_PREFIXES:
        return "'" + value
    return value


def csv_bytes(rows: Iterable[Iterable]) -> bytes:
    """Rows as a CSV file Excel opens correctly: UTF-8 with BOM, CRLF line ends. Cells are
    written as given: neutralise text cells with :func:`neutralise_cell` first."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


_SPACE_RUN = re.compile(r"\s+")
_SPACE_CHARS = re.compile(r"\s")


def clean_text(value) -> str:
    """A cell as clean text: NFKC (full-width → half-width), non-breaking and ideographic
    spaces folded, control characters (NUL ...) removed, stripped; integral floats lose
    their ``.0``; dates become ISO strings."""
    if value is None:
        return ""
    if type(value) is str and value.isprintable() and "  " not in value \
            and unicodedata.is_normalized("NFKC", value):
        # fast path (most cells): nothing to normalise, fold or remove
        return value.strip(" ")
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S") if value.time() != datetime.min.time() else value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = _CONTROL.sub("", unicodedata.normalize("NFKC", str(value)))
    text = text.replace("\u00a0", " ").replace("\u200b", "").replace("\ufeff", "")
    return _SPACE_RUN.sub(" ", text).strip()


def compact(text: str) -> str:
    """clean_text without any spaces (for names: Chinese names contain none)."""
    return _SPACE_CHARS.sub("", clean_text(text))


_HEADER_STRIP = re.compile(r"[\s*:：()（）\[\]【】_\-./]")


def header_key(text) -> str:
    """Normalised header text for alias matching: NFKC, lower case, no spaces, brackets or marks."""
    return _HEADER_STRIP.sub("", clean_text(text).lower())


# --------------------------------------------------------------------------- reading files


@dataclass
class Table:
    """Rows of a sheet as clean strings, with the row numbers a clerk sees (1-based, header counted)."""

    rows: list[tuple[int, list[str]]]
    filename: str
    fmt: str            # "csv" | "xlsx"
    encoding: str = ""  # CSV only
    # XLSX formula cells without a cached result: (clerk row, 0-based column) -> formula text
    formulas: dict[tuple[int, int], str] = field(default_factory=dict)


def read_source(source: str | Path | bytes, filename: str | None = None) -> tuple[bytes, str]:
    """The bytes of ``source`` (a path or the content) and a display filename."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), filename or "upload"
    path = Path(source)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImportFileError(f"{path}: the file has {path.stat().st_size / 2**20:.0f} MB; at most "
                                  f"{MAX_FILE_BYTES // 2**20} MB are imported (split it)")
        return path.read_bytes(), filename or path.name
    except FileNotFoundError:
        raise ImportFileError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read ({exc.strerror})") from None


# Leading bytes of file types that are certainly neither CSV nor XLSX.
BINARY_SIGNATURES = (
    (b"MZ", "a Windows program (.exe/.dll)"),
    (b"\x7fELF", "a Linux program"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)


def sniff_binary(data: bytes) -> str | None:
    """What a file is when its first bytes show it is not a spreadsheet (None otherwise)."""
    for magic, what in BINARY_SIGNATURES:
        if data.startswith(magic):
            if magic in (b"MZ", b"BM") and b"\x00" not in data[:64]:
                continue  # a CSV that happens to start with "MZ" or "BM" (programs and bitmaps have NULs)
            return what
    return None


def read_table(source: str | Path | bytes, filename: str | None = None) -> Table:
    """Read a CSV or XLSX file into a :class:`Table`; raise ImportFileError when it cannot be read."""
    data, name = read_source(source, filename)
    if not data.strip():
        raise ImportFileError(f"{name}: the file is empty")
    if data[:4] == b"PK\x03\x04":
        return _read_xlsx(data, name)
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise ImportFileError(f"{name}: old Excel 97-2003 (.xls) files are not supported; save it as .xlsx or CSV")
    what = sniff_binary(data)
    if what:
        raise ImportFileError(f"{name}: this is {what}, not a CSV or XLSX file")
    if name.lower().endswith((".xlsx", ".xlsm")):
        raise ImportFileError(f"{name}: not a valid .xlsx file (it is not a zip archive)")
    return _read_csv(data, name)


def decode_csv(data: bytes, name: str = "file") -> tuple[str, str]:
    """Decode CSV bytes: BOMs first, then strict UTF-8, then GB18030 (a superset of GBK)."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{name}: starts with a UTF-8 BOM but byte {exc.start + 3} is not UTF-8") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise ImportFileError(f"{name}: starts with a UTF-16 mark but is not valid UTF-16") from None
    if b"\x00" in data[:4096]:
        offset = data.index(b"\x00")
        raise ImportFileError(f"{name}: contains NUL bytes (at offset {offset}): a binary file, or "
                              "UTF-16 text without a byte-order mark, not CSV or XLSX; save it from Excel as "
                              "'CSV UTF-8' or as .xlsx")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{name}: cannot decode the text (neither UTF-8 nor GBK/GB18030; bad byte at offset {exc.start}); "
            "save it from Excel as 'CSV UTF-8' or as .xlsx") from None


def _read_csv(data: bytes, name: str) -> Table:
    if data.count(b"\n") > 4 * MAX_ROWS:    # certainly too many rows (a quoted cell may hold a few line breaks)
        raise ImportFileError(_too_many_rows(name))
    text, encoding = decode_csv(data, name)
    if not text.strip(" \t\r\n\ufeff\u3000"):
        raise ImportFileError(f"{name}: the file is empty (only a byte-order mark or spaces)")
    first_line = text[:8192].split("\n", 1)[0]
    delimiter = ","
    if "\t" in first_line and (encoding == "utf-16" or "," not in first_line):
        delimiter = "\t"   # Excel "Unicode text" (UTF-16) is tab separated
    elif first_line.count(";") > first_line.count(","):
        delimiter = ";"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    try:
        for index, row in enumerate(reader, start=1):
            if index > MAX_ROWS:
                raise ImportFileError(_too_many_rows(name))
            if len(row) > MAX_COLUMNS:
                if any(cell.strip() for cell in row[MAX_COLUMNS:]):
                    raise ImportFileError(_too_many_columns(name, index))
                row = row[:MAX_COLUMNS]
            rows.append((index, [clean_text(cell) for cell in row]))
    except csv.Error as exc:
        raise ImportFileError(f"{name}: not a readable CSV file near line {reader.line_num} ({exc})") from None
    return Table(rows, name, "csv", encoding)


def _too_many_rows(name: str) -> str:
    return f"{name}: more than {MAX_ROWS:,} rows; an import reads at most {MAX_ROWS:,} (split the file)"


def _too_many_columns(name: str, row: int, column: int | None = None) -> str:
    where = f"row {row}" + (f", column {column}" if column else "")
    return (f"{name}: a value beyond column {MAX_COLUMNS} ({where}); an import reads at most {MAX_COLUMNS} "
            "columns (delete the cells on the right)")


def _check_xlsx_archive(data: bytes, name: str) -> None:
    """Refuse zips that are not workbooks or would inflate too much (checked on the declared
    sizes; zipfile also stops reading a member past its declared size)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = {info.filename for info in infos}
            if "xl/workbook.xml" not in names:
                raise ImportFileError(f"{name}: a zip archive, but not an Excel workbook (no xl/workbook.xml); "
                                      "save the sheet from Excel as .xlsx or CSV")
            if sum(info.file_size for info in infos) > MAX_XLSX_UNCOMPRESSED:
                raise ImportFileError(f"{name}: the workbook would expand to more than "
                                      f"{MAX_XLSX_UNCOMPRESSED // 2**20} MB; refused")
            strings = sum(info.file_size for info in infos if info.filename.lower().endswith("sharedstrings.xml"))
            if strings > MAX_XLSX_SHARED_STRINGS:
                raise ImportFileError(f"{name}: the workbook's text table would expand to {strings // 2**20} MB "
                                      f"(at most {MAX_XLSX_SHARED_STRINGS // 2**20} MB); refused")
    except ImportFileError:
        raise
    except Exception as exc:  # zipfile raises many kinds on damaged archives (truncated, bad CRC ...)
        raise ImportFileError(f"{name}: not a readable .xlsx workbook (damaged or truncated zip: "
                              f"{exc.__class__.__name__}: {exc})") from None


def _read_xlsx(data: bytes, name: str) -> Table:
    """The first visible sheet with data, read as a stream of the rows the file holds.

    openpyxl's read-only mode supplies the shared strings and date formats, and its sheet
    parser yields the rows present in the XML one by one; missing rows and cells are never
    materialised (its ``iter_rows`` would pad every row to the widest and fill every gap,
    which a cell at XFD1048576 turns into billions of cells). Rows beyond MAX_ROWS and
    values beyond MAX_COLUMNS refuse the file; merged ranges are filled only inside the
    rows and columns read. One pass also finds formula cells without a cached result.
    """
    import openpyxl  # heavy: imported only when an XLSX arrives

    _check_xlsx_archive(data, name)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises anything from KeyError to XML parse errors on broken files
        raise ImportFileError(f"{name}: not a readable .xlsx workbook ({exc.__class__.__name__}: {exc})") from None
    try:
        if not book.worksheets:
            raise ImportFileError(f"{name}: the workbook has no worksheet")
        grid, formulas, merged = None, {}, []
        for sheet in book.worksheets:
            if getattr(sheet, "sheet_state", "visible") != "visible":
                continue
            grid, formulas, merged = _sheet_rows(book, sheet, name)
            if len(grid) > 1:
                break
        if grid is None:
            grid, formulas, merged = _sheet_rows(book, book.worksheets[0], name)
    except ImportFileError:
        raise
    except Exception as exc:
        raise ImportFileError(f"{name}: not a readable .xlsx workbook ({exc.__class__.__name__}: {exc})") from None
    finally:
        book.close()
    numbers = sorted(grid)
    dense = {number: [None] * (max(grid[number]) + 1 if grid[number] else 0) for number in numbers}
    for number in numbers:
        for column, value in grid[number].items():
            dense[number][column] = value
    # Fill merged ranges with their top-left value: a merged "县区" spanning two header rows or a
    # group title spanning columns then reads like ordinary cells. Only inside what was read.
    for min_row, min_col, max_row, max_col in merged:
        value = grid.get(min_row, {}).get(min_col - 1)
        for number in numbers:
            if number < min_row or number > max_row:
                continue
            cells = dense[number]
            for c in range(min_col - 1, min(max_col, MAX_COLUMNS)):
                while len(cells) <= c:
                    cells.append(None)
                cells[c] = value
    # Rows the file leaves out come back as empty rows, so that row numbers stay the clerk's.
    rows, last = [], 0
    for number in numbers:
        rows.extend((missing, []) for missing in range(last + 1, number))
        rows.append((number, [clean_text(cell) for cell in dense[number]]))
        last = number
    return Table(rows, name, "xlsx", formulas=formulas)


def _sheet_rows(book, sheet, name: str):
    """({row: {0-based column: value}}, {(row, column): formula without cached value}, merged ranges)."""
    from openpyxl.worksheet._reader import FORMULA_TAG, WorkSheetParser

    class Parser(WorkSheetParser):
        def parse_cell(self, element):
            cell = super().parse_cell(element)
            if cell["value"] is None:
                formula = element.find(FORMULA_TAG)
                if formula is not None:
                    cell["formula"] = "=" + (formula.text or "")
            return cell

    grid: dict[int, dict[int, object]] = {}
    formulas: dict[tuple[int, int], str] = {}
    seen = 0
    # openpyxl's own sheet parser, as its ReadOnlyWorksheet._cells_by_row drives it (private API:
    # pinned by tests/test_fuzz_imports.py, which reads real workbooks through it).
    with sheet._get_source() as source:
        parser = Parser(source, sheet._shared_strings, data_only=True, epoch=book.epoch,
                        date_formats=book._date_formats, timedelta_formats=book._timedelta_formats)
        for number, cells in parser.parse():
            seen += 1
            values = {c["column"] - 1: c["value"] for c in cells if c["value"] is not None}
            uncached = {c["column"] - 1: c["formula"] for c in cells if "formula" in c}
            if not values and not uncached:
                if seen > MAX_ROWS + 50_000:     # style-only rows: the XML parser keeps each, so stop
                    raise ImportFileError(_too_many_rows(name))
                continue
            if number > MAX_ROWS:
                raise ImportFileError(_too_many_rows(name))
            beyond = [c for c in (*values, *uncached) if c >= MAX_COLUMNS]
            if beyond:
                raise ImportFileError(_too_many_columns(name, number, min(beyond) + 1))
            grid[number] = values
            for column, text in uncached.items():
                formulas[(number, column)] = text
                grid[number].setdefault(column, None)
        merged = []
        if parser.merged_cells is not None:
            from openpyxl.utils.cell import range_boundaries
            for cell_range in parser.merged_cells.mergeCell[:10_000]:
                min_col, min_row, max_col, max_row = range_boundaries(cell_range.ref)
                merged.append((min_row, min_col, max_row, max_col))
    return grid, formulas, merged


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


# --------------------------------------------------------------------------- unit names

UNIT_SUFFIXES = ("街道办事处", "办事处", "街道", "镇", "乡", "县", "区", "市")


def strip_suffix(name: str) -> str:
    """A unit name without its administrative suffix (东城街道 → 东城, 曹县 → 曹), when something remains."""
    for suffix in UNIT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def strip_city(name: str) -> str:
    """Drop a leading province/city prefix (山东省菏泽市牡丹区 → 牡丹区)."""
    name = re.sub(r"^.{1,8}?省", "", name)
    match = re.match(r"^.{1,6}?市(.+)$", name)
    return match.group(1) if match else name


@dataclass(frozen=True)
class UnitMatch:
    """The result of matching a survey's county/township cells to registry units."""

    level: str               # "county" | "township"
    code: str
    county_code: str


class UnitMatchError(ValueError):
    """A unit name could not be matched; ``column`` is "county" or "township"."""

    def __init__(self, column: str, value: str, reason: str, candidates: list[str], code: str = "unknown_unit"):
        super().__init__(reason)
        self.column = column
        self.value = value
        self.reason = reason
        self.candidates = candidates
        self.code = code if value else "missing_unit"


class UnitMatcher:
    """Match county and township names or codes to a registry's units."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.county_exact = {c.name: c.code for c in registry.counties.values()}
        self.county_stripped = {strip_suffix(c.name): c.code for c in registry.counties.values()}
        self.town_exact: dict[str, list[str]] = {}
        self.town_stripped: dict[str, list[str]] = {}
        for t in registry.townships.values():
            self.town_exact.setdefault(t.name, []).append(t.code)
            self.town_stripped.setdefault(strip_suffix(t.name), []).append(t.code)
        self.aliases = {compact(alias): code for alias, code in registry.aliases.items()}
        self._memo: dict[tuple[str, str, str], UnitMatch | tuple] = {}

    def county(self, text: str) -> str:
        """County code for a name or code; raise UnitMatchError with candidates."""
        name = compact(text)
        reg = self.registry
        for candidate in (name, strip_city(name)):
            if candidate in reg.counties:
                return candidate
            if candidate in self.county_exact:
                return self.county_exact[candidate]
            code = self.aliases.get(candidate)
            if code in reg.counties:
                return code
            if strip_suffix(candidate) in self.county_stripped:
                return self.county_stripped[strip_suffix(candidate)]
        raise UnitMatchError("county", text, f"县区“{text}”不在区划登记中", self.county_candidates(name))

    def township(self, text: str, county_code: str | None) -> str:
        """Township code for a name or code (within ``county_code`` when given)."""
        name = compact(text)
        reg = self.registry
        codes: list[str] = []
        for candidate in (name, strip_city(name)):
            if candidate in reg.townships:
                codes = [candidate]
            elif candidate in self.town_exact:
                codes = self.town_exact[candidate]
            elif self.aliases.get(candidate) in reg.townships:
                codes = [self.aliases[candidate]]
            elif strip_suffix(candidate) in self.town_stripped:
                codes = self.town_stripped[strip_suffix(candidate)]
            if codes:
                break
        if not codes:
            raise UnitMatchError("township", text, f"乡镇(街道)“{text}”不在区划登记中",
                                 self.township_candidates(name, county_code))
        if county_code:
            inside = [c for c in codes if reg.townships[c].county_code == county_code]
            if not inside:
                owners = "、".join(f"{reg.counties[reg.townships[c].county_code].name}" for c in codes
                                  if reg.townships[c].county_code in reg.counties)
                raise UnitMatchError("township", text,
                                     f"乡镇(街道)“{text}”属于{owners}，不属于{reg.counties[county_code].name}",
                                     [self.describe(c) for c in codes], "unit_mismatch")
            codes = inside
        if len(codes) > 1:
            raise UnitMatchError("township", text, f"乡镇(街道)“{text}”有重名，请填写县区或代码",
                                 [self.describe(c) for c in codes], "ambiguous_unit")
        return codes[0]

    def match(self, county_text: str, township_text: str) -> UnitMatch:
        """Match a row's county and township cells (township wins when both are given)."""
        county_code = self.county(county_text) if county_text else None
        if township_text:
            try:
                code = self.township(township_text, county_code)
            except UnitMatchError as exc:
                # a county-level unit written in the township column (e.g. 高新区 with no county)
                if exc.code != "unknown_unit" or county_code:
                    raise
                try:
                    county_code = self.county(township_text)
                except UnitMatchError:
                    raise exc from None
                return UnitMatch("county", county_code, county_code)
            return UnitMatch("township", code, self.registry.townships[code].county_code)
        if county_code:
            return UnitMatch("county", county_code, county_code)
        raise UnitMatchError("county", "", "缺少县区和乡镇(街道)", [])

    def match_cells(self, code: str, county: str, township: str) -> UnitMatch:
        """Match a row by its code cell first, else by its county/township names (memoised:
        a long file names the same few hundred units over and over)."""
        key = (code, county, township)
        cached = self._memo.get(key)
        if cached is None:
            try:
                cached = self._match_cells(code, county, township)
            except UnitMatchError as exc:
                cached = (exc.column, exc.value, exc.reason, exc.candidates, exc.code)
            if len(self._memo) < 100_000:
                self._memo[key] = cached
        if isinstance(cached, UnitMatch):
            return cached
        column, value, reason, candidates, error_code = cached
        error = UnitMatchError(column, value, reason, list(candidates), error_code)
        error.code = error_code
        raise error

    def _match_cells(self, code: str, county: str, township: str) -> UnitMatch:
        code = compact(code)
        reg = self.registry
        if code:
            if code in reg.townships:
                return UnitMatch("township", code, reg.townships[code].county_code)
            if code in reg.counties:
                return UnitMatch("county", code, code)
            raise UnitMatchError("code", code, f"单位代码“{code}”不在区划登记中",
                                 self.township_candidates(compact(township), None) if township else [])
        return self.match(county, township)

    def describe(self, code: str) -> str:
        """``东城街道 (371702001, 牡丹区)`` for a township, ``牡丹区 (371702)`` for a county."""
        reg = self.registry
        if code in reg.townships:
            t = reg.townships[code]
            county = reg.counties.get(t.county_code)
            return f"{t.name} ({t.code}, {county.name if county else t.county_code})"
        if code in reg.counties:
            return f"{reg.counties[code].name} ({code})"
        return code

    def county_candidates(self, name: str) -> list[str]:
        """Closest county names to ``name``."""
        names = {c.name: c.code for c in self.registry.counties.values()}
        names.update({alias: code for alias, code in self.aliases.items() if code in self.registry.counties})
        return self._closest(name, names)

    def township_candidates(self, name: str, county_code: str | None) -> list[str]:
        """Closest township names to ``name`` (those of ``county_code`` first when given)."""
        towns = [t for t in self.registry.townships.values() if not county_code or t.county_code == county_code]
        names: dict[str, str] = {}
        for t in towns:
            names.setdefault(t.name, t.code)
            names.setdefault(strip_suffix(t.name), t.code)
        for alias, code in self.aliases.items():
            if code in self.registry.townships and (not county_code or self.registry.townships[code].county_code == county_code):
                names.setdefault(alias, code)
        found = self._closest(name, names)
        if not found and county_code:
            return self.township_candidates(name, None)
        return found

    def _closest(self, name: str, names: dict[str, str], n: int = 3) -> list[str]:
        key = strip_suffix(strip_city(name))
        scored = []
        for candidate, code in names.items():
            ratio = max(difflib.SequenceMatcher(None, name, candidate).ratio(),
                        difflib.SequenceMatcher(None, key, strip_suffix(candidate)).ratio())
            if key and (key in candidate or strip_suffix(candidate) in name):
                ratio = max(ratio, 0.8)
            if ratio >= 0.4:
                scored.append((-ratio, candidate, code))
        out: list[str] = []
        for _, _, code in sorted(scored):
            label = self.describe(code)
            if label not in out:
                out.append(label)
            if len(out) == n:
                break
        return out


# --------------------------------------------------------------------------- dates and numbers

_DATE_PATTERNS = (
    re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T]+(\d{1,2})[:时](\d{1,2})(?:[:分](\d{1,2})秒?)?)?$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})(?:[ T]?(\d{2}):?(\d{2})(?::?(\d{2}))?)?$"),
)


_SERIAL_DAY = re.compile(r"\d{5}(\.\d+)?")


def parse_local_datetime(text: str) -> datetime:
    """Parse a date/time as written in a survey sheet (China time): 2026-07-15, 2026/7/15 10:30,
    2026年7月15日, 20260715, 2026-07-15T10:30:00+08:00, or an Excel serial day number."""
    text = clean_text(text)
    for pattern in _DATE_PATTERNS:
        match = pattern.match(text)
        if match:
            y, m, d, hh, mm, ss = (int(g) if g else 0 for g in match.groups())
            return datetime(y, m, d, hh, mm, ss, tzinfo=CHINA_TZ)
    if _SERIAL_DAY.fullmatch(text) and 20000 < float(text) < 80000:
        return datetime(1899, 12, 30, tzinfo=CHINA_TZ) + timedelta(days=float(text))
    return parse_china_time(text)  # raises ValueError


def parse_number(text: str) -> float:
    """A score as written: 92.5, 92,5 (decimal comma), 92.5分, ９２.５ (full-width); raise ValueError."""
    value = clean_text(text).replace("分", "").replace(" ", "")
    if re.fullmatch(r"-?\d+,\d+", value):
        value = value.replace(",", ".")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(text)
    return number


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


class _RollBack(Exception):
    """Raised inside the import transaction to undo it (rows were rejected while writing)."""


def commit_import(db, report: ImportReport, write: Callable[[sqlite3.Connection, int], None]) -> ImportReport:
    """Write an import all-or-nothing, in one transaction: an import_log row is opened,
    ``write(conn, import_id)`` stores the rows (stamped with that id) and counts them in the
    report, and the log row gets the final report. Unless ``report.partial``, nothing is
    written when any row is rejected, before or during ``write`` (which may reject rows,
    e.g. conflicts with stored data): the report is then marked ``aborted`` with
    imported = 0. A database failure rolls everything back and raises StoreError."""
    if report.rejected and not report.partial:
        return _aborted(report)
    try:
        with db.transaction() as conn:
            import_id = log_import(conn, report)
            write(conn, import_id)
            if report.rejected and not report.partial:
                raise _RollBack
            conn.execute("UPDATE import_log SET imported = ?, rejected = ?, report = ? WHERE id = ?",
                         (report.imported, len(report.rejected),
                          json.dumps(report.to_dict(), ensure_ascii=False), import_id))
    except _RollBack:
        return _aborted(report)
    except sqlite3.Error as exc:
        report.import_id = None
        raise StoreError(f"{report.filename}: writing the {report.kind} import of {report.quarter} to the center "
                         f"database failed, nothing was imported ({exc.__class__.__name__}: {exc})") from exc
    return report


def _aborted(report: ImportReport) -> ImportReport:
    report.aborted = True
    report.imported = report.excluded = report.already_present = report.replaced = 0
    report.import_id = None
    return report


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


# --------------------------------------------------------------------------- import log

IMPORTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS import_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                -- survey | scores
    quarter TEXT NOT NULL,
    filename TEXT NOT NULL,
    imported_at TEXT NOT NULL,         -- UTC ISO 8601
    rows_read INTEGER NOT NULL,
    imported INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    report TEXT NOT NULL               -- ImportReport.to_dict() as JSON (phones masked)
);
"""


def log_import(conn, report: ImportReport) -> int:
    """Open an import's import_log row (inside the caller's transaction; :func:`commit_import`
    fills in the counts and the report once the rows are written); return its id."""
    cursor = conn.execute(
        "INSERT INTO import_log (kind, quarter, filename, imported_at, rows_read, imported, rejected, report)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (report.kind, report.quarter, report.filename, datetime.now(timezone.utc).isoformat(timespec="seconds"),
         report.rows_read, report.imported, len(report.rejected), "{}"))
    report.import_id = int(cursor.lastrowid)
    return report.import_id


def import_history(db, kind: str | None = None, quarter=None) -> list[dict]:
    """Past imports, newest first: id, kind, quarter, filename, imported_at, rows_read, imported, rejected."""
    db.ensure(IMPORTS_SCHEMA)
    sql = "SELECT id, kind, quarter, filename, imported_at, rows_read, imported, rejected FROM import_log WHERE 1=1"
    params: list = []
    if kind:
        sql += " AND kind = ?"
        params.append(kind)
    if quarter is not None:
        sql += " AND quarter = ?"
        params.append(str(quarter))
    return [dict(row) for row in db.query(sql + " ORDER BY id DESC", params)]


def import_report(db, import_id: int) -> dict | None:
    """The stored report (ImportReport.to_dict()) of one import, or None."""
    db.ensure(IMPORTS_SCHEMA)
    rows = db.query("SELECT report FROM import_log WHERE id = ?", (import_id,))
    return json.loads(rows[0]["report"]) if rows else None
