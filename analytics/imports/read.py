"""Reading a spreadsheet into a :class:`Table`: CSV in UTF-8, UTF-8 with BOM, UTF-16 (Excel
"Unicode text") or GBK/GB18030, and XLSX streamed from openpyxl's own sheet parser (merged
cells filled with their top-left value), with the limits of :mod:`.cells` checked before memory
is spent. A file that cannot be read raises :class:`~manyi.exc.ImportFileError` whatever went
wrong inside the parser (truncated zip, broken XML, binary data)."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from manyi.exc import ImportFileError
from .cells import MAX_COLUMNS, MAX_FILE_BYTES, MAX_ROWS, MAX_XLSX_SHARED_STRINGS, MAX_XLSX_UNCOMPRESSED, clean_text


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
