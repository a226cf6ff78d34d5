"""Cells: the limits of what is read, cleaning text, header keys, dates and numbers, and
:func:`neutralise_cell`, used by every CSV/XLSX writer so that a cell starting with = + - @ is
never run as a formula by a spreadsheet program."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from datetime import date, datetime, timedelta
from typing import Iterable

from manyi.periods import CHINA_TZ, parse_china_time


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
