"""Reading a registry's CSV files: every row checked, every problem collected.

:class:`Loader` turns the texts of a registry directory (file name -> CSV) into a
:class:`~manyi.registry.Registry`, or raises one :class:`~manyi.registry.RegistryError`
listing each problem as ``file:line:field: what is wrong``. Standard library only.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

from .registry import (
    _FALSE, _TRUE, COUNTY_KINDS, FILES, FORMAT_NAME, Assignment, County, Hall, Registry, RegistryError, RosterEntry,
    Township, Transaction, Window, _hours, parse_moment,
)
class Loader:
    """Parses and cross-checks the CSV texts of a registry, collecting every problem."""

    def __init__(self, texts: dict[str, str]):
        self.texts = {name: text.lstrip("\ufeff") for name, text in texts.items()}
        self.problems: list[tuple[str, int, str, str]] = []

    def problem(self, file: str, line: int, fld: str, message: str) -> None:
        self.problems.append((file, line, fld, message))

    def rows(self, name: str) -> list[tuple[int, dict[str, str]]]:
        required, needed, _ = FILES[name]
        text = self.texts.get(name)
        if text is None:
            if required:
                self.problem(name, 0, "", "file is missing")
            return []
        reader = csv.reader(io.StringIO(text))
        try:
            header = next(reader)
        except StopIteration:
            self.problem(name, 1, "", f"empty file; the header must be {','.join(needed)}")
            return []
        header = [h.strip().lower() for h in header]
        missing = [c for c in needed if c not in header]
        if missing:
            self.problem(name, 1, ",".join(missing), f"missing column(s) {', '.join(missing)} in the header")
            return []
        out = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header) and any(cell.strip() for cell in row[len(header):]):
                self.problem(name, line, "", f"{len(row)} fields but the header has {len(header)} (a comma inside a value needs quotes)")
            values = {col: (row[i].strip() if i < len(row) else "") for i, col in enumerate(header)}
            out.append((line, values))
        return out

    def moment(self, file: str, line: int, fld: str, text: str, required: bool) -> datetime | None:
        if not text:
            if required:
                self.problem(file, line, fld, "empty; expected a date like 2026-03-01 or 2026-03-01 14:30")
            return None
        try:
            return parse_moment(text)
        except ValueError:
            self.problem(file, line, fld, f"{text!r} is not a date/time like 2026-03-01 or 2026-03-01 14:30")
            return None

    def validity(self, file: str, line: int, row: dict[str, str]) -> tuple[datetime | None, datetime | None]:
        """(valid_from, valid_to) of a row; valid_from is None when the span is unusable (problem recorded)."""
        start = self.moment(file, line, "valid_from", row["valid_from"], True)
        end = self.moment(file, line, "valid_to", row.get("valid_to", ""), False)
        if start is None or (row.get("valid_to") and end is None):
            return None, None
        if end is not None and end <= start:
            self.problem(file, line, "valid_to", "valid_to is not after valid_from")
            return None, None
        return start, end

    def build(self) -> Registry:
        reg = Registry()
        for line, row in self.rows("meta.csv"):
            if row["key"]:
                reg.meta[row["key"]] = row["value"]
        if reg.meta and reg.meta.get("format", FORMAT_NAME) != FORMAT_NAME:
            self.problem("meta.csv", 0, "format", f"format is {reg.meta['format']!r}, expected {FORMAT_NAME!r}")

        lines: dict[tuple[str, str], int] = {}
        for line, row in self.rows("counties.csv"):
            code, name, kind = row["code"], row["name"], row["kind"].lower()
            if not code:
                self.problem("counties.csv", line, "code", "empty code")
                continue
            if code in reg.counties:
                self.problem("counties.csv", line, "code", f"duplicate code {code} (first on line {lines['c', code]})")
                continue
            if not name:
                self.problem("counties.csv", line, "name", "empty name")
            if kind not in COUNTY_KINDS:
                self.problem("counties.csv", line, "kind", f"{row['kind']!r} is not one of {', '.join(COUNTY_KINDS)}")
            lines["c", code] = line
            reg.counties[code] = County(code, name, kind, row.get("note", ""))

        for line, row in self.rows("townships.csv"):
            code, county = row["code"], row["county_code"]
            if not code:
                self.problem("townships.csv", line, "code", "empty code")
                continue
            if code in reg.townships or code in reg.counties:
                self.problem("townships.csv", line, "code", f"duplicate code {code}")
                continue
            if not row["name"]:
                self.problem("townships.csv", line, "name", "empty name")
            if county not in reg.counties:
                self.problem("townships.csv", line, "county_code", f"unknown county {county!r} (not in counties.csv)")
            reg.townships[code] = Township(code, row["name"], county, row.get("note", ""))

        for line, row in self.rows("halls.csv"):
            hall = self.hall(line, row, reg)
            if hall is not None:
                if hall.id in reg.halls:
                    self.problem("halls.csv", line, "id", f"duplicate hall id {hall.id}")
                else:
                    reg.halls[hall.id] = hall

        for line, row in self.rows("windows.csv"):
            wid = row["id"]
            if not wid:
                self.problem("windows.csv", line, "id", "empty id")
                continue
            if wid in reg.windows:
                self.problem("windows.csv", line, "id", f"duplicate window id {wid}")
                continue
            if row["hall_id"] not in reg.halls:
                self.problem("windows.csv", line, "hall_id", f"unknown hall {row['hall_id']!r} (not in halls.csv)")
            reg.windows[wid] = Window(wid, row["hall_id"], row["name"] or wid, row.get("note", ""))

        assignment_lines: dict[int, int] = {}
        for line, row in self.rows("assignments.csv"):
            device, wid = row["device"], row["window_id"]
            ok = True
            if not _valid_device(device):
                self.problem("assignments.csv", line, "device",
                             f"{device!r} is not a device id (lower-case letters, digits and '-', 3 to 64 characters)")
                ok = False
            if wid not in reg.windows:
                self.problem("assignments.csv", line, "window_id", f"unknown window {wid!r} (not in windows.csv)")
                ok = False
            start, end = self.validity("assignments.csv", line, row)
            if ok and start is not None:
                assignment_lines[len(reg.assignments)] = line
                reg.assignments.append(Assignment(device, wid, start, end, row.get("note", "")))
        self.overlaps("assignments.csv", reg.assignments, assignment_lines, lambda a: a.device, "device",
                      "terminal {key} is assigned twice at once")
        self.overlaps("assignments.csv", reg.assignments, assignment_lines, lambda a: a.window_id, "window_id",
                      "window {key} has two terminals at once")

        roster_lines: dict[int, int] = {}
        for line, row in self.rows("roster.csv"):
            ok = True
            if row["window_id"] not in reg.windows:
                self.problem("roster.csv", line, "window_id", f"unknown window {row['window_id']!r}")
                ok = False
            if not row["staff_id"]:
                self.problem("roster.csv", line, "staff_id", "empty staff id")
                ok = False
            start, end = self.validity("roster.csv", line, row)
            if ok and start is not None:
                roster_lines[len(reg.roster)] = line
                reg.roster.append(RosterEntry(row["window_id"], row["staff_id"], row["staff_name"], start, end,
                                              row.get("note", "")))
        self.overlaps("roster.csv", reg.roster, roster_lines, lambda r: r.window_id, "valid_from",
                      "window {key} has two staff members on duty at once")

        for line, row in self.rows("aliases.csv"):
            alias, code = row["alias"], row["code"]
            if not alias:
                self.problem("aliases.csv", line, "alias", "empty alias")
                continue
            if code not in reg.counties and code not in reg.townships:
                self.problem("aliases.csv", line, "code", f"unknown unit code {code!r} (not a county or township)")
                continue
            if alias in reg.aliases and reg.aliases[alias] != code:
                self.problem("aliases.csv", line, "alias", f"alias {alias!r} already points to {reg.aliases[alias]}")
                continue
            reg.aliases[alias] = code
            if row.get("note"):
                reg.alias_notes[alias] = row["note"]

        seen_tx: dict[tuple[str, date], int] = {}
        for line, row in self.rows("transactions.csv"):
            ok = True
            if row["window_id"] not in reg.windows:
                self.problem("transactions.csv", line, "window_id", f"unknown window {row['window_id']!r}")
                ok = False
            try:
                day = date.fromisoformat(row["date"])
            except ValueError:
                self.problem("transactions.csv", line, "date", f"{row['date']!r} is not a date like 2026-03-01")
                ok = False
            try:
                count = int(row["count"])
                if count < 0:
                    raise ValueError
            except ValueError:
                self.problem("transactions.csv", line, "count", f"{row['count']!r} is not a whole number >= 0")
                ok = False
            if ok:
                key = (row["window_id"], day)
                if key in seen_tx:
                    self.problem("transactions.csv", line, "date", f"second count for {key[0]} on {day} (first on line {seen_tx[key]})")
                    continue
                seen_tx[key] = line
                reg.transactions.append(Transaction(row["window_id"], day, count, row.get("note", "")))

        if self.problems:
            raise RegistryError(self.problems)
        return reg

    def hall(self, line: int, row: dict[str, str], reg: Registry) -> Hall | None:
        hid = row["id"]
        if not hid:
            self.problem("halls.csv", line, "id", "empty id")
            return None
        township = row["township_code"]
        county = row.get("county_code", "")
        if township:
            if township not in reg.townships:
                self.problem("halls.csv", line, "township_code", f"unknown township {township!r} (not in townships.csv)")
            else:
                actual = reg.townships[township].county_code
                if county and county != actual:
                    self.problem("halls.csv", line, "county_code", f"{county} but township {township} belongs to {actual}")
                county = actual
        elif not county:
            self.problem("halls.csv", line, "township_code", "empty: give a township_code, or a county_code for a county-level hall")
        elif county not in reg.counties:
            self.problem("halls.csv", line, "county_code", f"unknown county {county!r} (not in counties.csv)")
        coords: list[float | None] = []
        for fld, low, high in (("lon", -180, 180), ("lat", -90, 90)):
            text = row.get(fld, "")
            if not text:
                coords.append(None)
                continue
            try:
                value = float(text)
                if not low <= value <= high:
                    raise ValueError
                coords.append(value)
            except ValueError:
                self.problem("halls.csv", line, fld, f"{text!r} is not a number between {low} and {high}")
                coords.append(None)
        if bool(row.get("lon", "")) != bool(row.get("lat", "")):
            self.problem("halls.csv", line, "lat" if row.get("lon", "") else "lon", "give both lon and lat, or neither")
        approx_text = row.get("approximate", "").strip().lower()
        if approx_text not in _TRUE | _FALSE:
            self.problem("halls.csv", line, "approximate", f"{approx_text!r} is not yes/no")
        hours = row.get("opening_hours", "")
        try:
            _hours(hours)
        except ValueError as exc:
            self.problem("halls.csv", line, "opening_hours", str(exc))
        if not row["name"]:
            self.problem("halls.csv", line, "name", "empty name")
        return Hall(hid, row["name"], township, coords[0], coords[1], approx_text in _TRUE, hours, county,
                    row.get("note", ""))

    def overlaps(self, file, records, line_of, key_of, fld, message) -> None:
        groups: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            groups.setdefault(key_of(record), []).append(index)
        for key, indexes in groups.items():
            indexes.sort(key=lambda i: records[i].valid_from)
            for prev, cur in zip(indexes, indexes[1:]):
                a, b = records[prev], records[cur]
                if a.valid_to is None or b.valid_from < a.valid_to:
                    self.problem(file, line_of[cur], fld,
                                 message.format(key=key) + f" (overlaps line {line_of[prev]}; close that row's valid_to first)")


def _valid_device(device: str) -> bool:
    from .protocol import is_valid_device_id  # stdlib-only module; imported late to keep start-up small

    return is_valid_device_id(device)


