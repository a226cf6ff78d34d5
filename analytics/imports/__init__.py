"""Spreadsheet imports (12333 survey, composite scores), split by step.

- :mod:`.cells`: limits, cleaning (Unicode NFKC, trimmed spaces), dates, numbers, and
  :func:`neutralise_cell` for every CSV/XLSX writer;
- :mod:`.read`: a file into a :class:`Table` (CSV in any of the encodings Chinese offices
  send, XLSX streamed);
- :mod:`.headers`: finding the header row and the columns by their aliases;
- :mod:`.units`: unit names and codes to the registry;
- :mod:`.report`: what an import did (:class:`ImportReport`) and the templates;
- :mod:`.survey`, :mod:`.scores`: the rules of each kind of file.

Writing is all-or-nothing by default (analytics.center.imports.commit_import):
``partial=True`` imports the valid rows and reports the others.
"""

from .cells import (
    MAX_CELL_CHARS, MAX_COLUMNS, MAX_FILE_BYTES, MAX_ROWS, MAX_XLSX_SHARED_STRINGS, MAX_XLSX_UNCOMPRESSED,
    clean_text, compact, csv_bytes, header_key, neutralise_cell, parse_local_datetime, parse_number,
)
from .headers import Column, Header, data_rows, find_header
from .read import Table, decode_csv, read_source, read_table, sniff_binary
from .report import REASON_LABELS, ImportReport, ProgressCallback, RejectedRow, csv_template, excel_template
from .units import UnitMatch, UnitMatcher, UnitMatchError, strip_city, strip_suffix

__all__ = [
    "MAX_CELL_CHARS", "MAX_COLUMNS", "MAX_FILE_BYTES", "MAX_ROWS", "MAX_XLSX_SHARED_STRINGS", "MAX_XLSX_UNCOMPRESSED",
    "REASON_LABELS", "Column", "Header", "ImportReport", "ProgressCallback", "RejectedRow", "Table", "UnitMatch",
    "UnitMatchError", "UnitMatcher", "clean_text", "compact", "csv_bytes", "csv_template", "data_rows",
    "decode_csv", "excel_template", "find_header", "header_key", "neutralise_cell", "parse_local_datetime",
    "parse_number", "read_source", "read_table", "sniff_binary", "strip_city", "strip_suffix",
]
