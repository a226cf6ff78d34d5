"""The region registry: file round trip, validation messages, assignment history, opening hours."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from manyi.periods import CHINA_TZ
from manyi.registry import (
    Location,
    OpeningHours,
    Registry,
    RegistryError,
    format_moment,
    parse_moment,
)
from analytics.center.registry import load_active, store_active


def china(*args) -> datetime:
    return datetime(*args, tzinfo=CHINA_TZ)


def test_round_trip_keeps_every_record(tiny_registry, tmp_path):
    tiny_registry.retire("hz-371702100-w01", china(2026, 3, 1, 14, 30))
    tiny_registry.reassign("hz-371702001-w01", "win-371702100-01", china(2026, 3, 1, 14, 30), note="moved")
    tiny_registry.save(tmp_path / "reg")
    loaded = Registry.load(tmp_path / "reg")
    assert loaded.counties == tiny_registry.counties
    assert loaded.townships == tiny_registry.townships
    assert loaded.halls == tiny_registry.halls
    assert loaded.windows == tiny_registry.windows
    assert sorted(loaded.assignments, key=repr) == sorted(tiny_registry.assignments, key=repr)
    assert loaded.aliases == {"庄寨": "371721101"}
    assert loaded.sample is True
    assert loaded.to_files() == tiny_registry.to_files()


def test_times_in_files_are_china_time():
    assert parse_moment("2026-03-01") == china(2026, 3, 1)
    assert parse_moment("2026-03-01 14:30") == china(2026, 3, 1, 14, 30)
    assert parse_moment("2026-03-01T06:30:00+00:00") == china(2026, 3, 1, 14, 30)
    assert format_moment(china(2026, 3, 1)) == "2026-03-01"
    assert format_moment(datetime(2026, 3, 1, 6, 30, tzinfo=timezone.utc)) == "2026-03-01 14:30"


def _write(directory, name, text):
    (directory / name).write_text(text, encoding="utf-8")


def test_validation_lists_every_problem_with_file_line_and_field(tiny_registry, tmp_path):
    reg_dir = tmp_path / "reg"
    tiny_registry.save(reg_dir)
    counties = (reg_dir / "counties.csv").read_text(encoding="utf-8")
    _write(reg_dir, "counties.csv", counties + "371702,重复,district,\n371799,新区,city,\n")
    townships = (reg_dir / "townships.csv").read_text(encoding="utf-8")
    _write(reg_dir, "townships.csv", townships + "371799001,某街道,999999,\n")
    assignments = (reg_dir / "assignments.csv").read_text(encoding="utf-8")
    _write(reg_dir, "assignments.csv", assignments
           + "hz-371702001-w01,win-371702100-01,2026-02-01,,\n"   # line 10: device already assigned (open-ended)
           + "BAD ID,win-371702001-01,2026-01-01,,\n"
           + "hz-new-w01,win-nowhere,yesterday,,\n")
    halls = (reg_dir / "halls.csv").read_text(encoding="utf-8")
    _write(reg_dir, "halls.csv", halls + "hall-x,X,,371702001,115.1,,maybe,mon-fri 9-12,\n")
    with pytest.raises(RegistryError) as info:
        Registry.load(reg_dir)
    message = str(info.value)
    problems = {(f, line, fld) for f, line, fld, _ in info.value.problems}
    assert ("counties.csv", 4, "code") in problems
    assert ("counties.csv", 5, "kind") in problems
    assert ("townships.csv", 5, "county_code") in problems
    assert ("assignments.csv", 10, "device") in problems      # overlaps line 2
    assert ("assignments.csv", 10, "window_id") in problems   # window already has a terminal
    assert ("assignments.csv", 11, "device") in problems
    assert ("assignments.csv", 12, "window_id") in problems
    assert ("assignments.csv", 12, "valid_from") in problems
    assert ("halls.csv", 6, "lat") in problems
    assert ("halls.csv", 6, "approximate") in problems
    assert ("halls.csv", 6, "opening_hours") in problems
    assert "counties.csv:4:code: duplicate code 371702" in message
    assert "assignments.csv:10:device: terminal hz-371702001-w01 is assigned twice at once (overlaps line 2" in message


def test_missing_file_and_missing_column_are_named(tiny_registry, tmp_path):
    reg_dir = tmp_path / "reg"
    tiny_registry.save(reg_dir)
    (reg_dir / "windows.csv").unlink()
    _write(reg_dir, "townships.csv", "code,name\n371702001,东城街道\n")
    with pytest.raises(RegistryError) as info:
        Registry.load(reg_dir)
    problems = {(f, line, fld) for f, line, fld, _ in info.value.problems}
    assert ("windows.csv", 0, "") in problems
    assert ("townships.csv", 1, "county_code") in problems
    assert "windows.csv: file is missing" in str(info.value)


def test_non_utf8_file_is_reported(tiny_registry, tmp_path):
    reg_dir = tmp_path / "reg"
    tiny_registry.save(reg_dir)
    (reg_dir / "counties.csv").write_bytes("code,name,kind\n371702,牡丹区,district\n".encode("gbk"))
    with pytest.raises(RegistryError, match="counties.csv: not UTF-8"):
        Registry.load(reg_dir)


def test_utf8_bom_and_crlf_from_excel_are_accepted(tiny_registry, tmp_path):
    reg_dir = tmp_path / "reg"
    tiny_registry.save(reg_dir)
    text = (reg_dir / "counties.csv").read_text(encoding="utf-8")
    (reg_dir / "counties.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert Registry.load(reg_dir).counties["371702"].name == "牡丹区"


def test_moving_a_terminal_does_not_rewrite_the_past(tiny_registry, tmp_path):
    moved_at = china(2026, 3, 1, 12, 0)
    before = moved_at - timedelta(seconds=1)
    device = "hz-371702001-w01"
    tiny_registry.assignments = [a for a in tiny_registry.assignments if a.window_id != "win-371721101-01"]
    tiny_registry.reassign(device, "win-371721101-01", moved_at)
    tiny_registry.save(tmp_path / "reg")
    reg = Registry.load(tmp_path / "reg")
    assert reg.locate(device, before) == Location("371702", "371702001", "hall-371702001", "win-371702001-01")
    assert reg.locate(device, moved_at) == Location("371721", "371721101", "hall-371721101", "win-371721101-01")
    assert reg.current_location(device).county_code == "371721"
    assert reg.locate(device, china(2025, 12, 31, 23, 59)) is None  # before its first assignment
    assert device in reg.devices_of(county="371721")
    assert device not in reg.devices_of(county="371702")
    assert device in reg.devices_of(county="371702", at=before)
    assert [a.window_id for a in reg.assignments_of(device)] == ["win-371702001-01", "win-371721101-01"]


def test_locate_uses_china_time_at_the_boundary(tiny_registry):
    device = "hz-371702001-w01"
    # 2026-01-01 00:00 China time is 2025-12-31 16:00 UTC; naive datetimes are UTC.
    assert tiny_registry.locate(device, datetime(2025, 12, 31, 15, 59)) is None
    assert tiny_registry.locate(device, datetime(2025, 12, 31, 16, 0)) is not None


def test_county_level_hall_has_no_township(tiny_registry):
    loc = tiny_registry.current_location("hz-371702000-w01")
    assert loc == Location("371702", "", "hall-371702000", "win-371702000-01")


def test_opening_hours():
    hours = OpeningHours.parse("mon-fri 09:00-12:00,13:30-17:30; sat 09:00-12:00")
    monday_9 = china(2026, 3, 2, 9, 0)
    assert hours.is_open(monday_9)
    assert not hours.is_open(china(2026, 3, 2, 12, 0))
    assert hours.is_open(china(2026, 3, 2, 17, 29))
    assert not hours.is_open(china(2026, 3, 2, 17, 30))
    assert hours.is_open(china(2026, 3, 7, 11, 0))          # Saturday morning
    assert not hours.is_open(china(2026, 3, 8, 11, 0))      # Sunday
    assert hours.is_open(datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc))  # 09:00 China time
    assert OpeningHours.parse("").is_open(china(2026, 3, 8, 3, 0))
    for bad in ("mon-fri", "mon-fry 09:00-12:00", "mon 12:00-09:00", "fri-mon 09:00-10:00", "mon 25:00-26:00"):
        with pytest.raises(ValueError):
            OpeningHours.parse(bad)


def test_hall_is_open(heze):
    hall = heze.halls["hall-371702001"]
    assert hall.is_open(china(2026, 3, 2, 10, 0))
    assert not hall.is_open(china(2026, 3, 2, 12, 30))


def test_roster_attributes_staff_and_rejects_double_duty(tiny_registry, tmp_path):
    from manyi.registry import RosterEntry

    tiny_registry.roster = [
        RosterEntry("win-371702001-01", "s1", "王伟", china(2026, 1, 1), china(2026, 2, 1)),
        RosterEntry("win-371702001-01", "s2", "李娜", china(2026, 2, 1), None),
    ]
    tiny_registry.save(tmp_path / "reg")
    reg = Registry.load(tmp_path / "reg")
    assert reg.staff_at("win-371702001-01", china(2026, 1, 31, 23, 0)).staff_id == "s1"
    assert reg.staff_at("win-371702001-01", china(2026, 2, 1)).staff_id == "s2"
    assert reg.staff_at("win-371702100-01", china(2026, 2, 1)) is None
    roster = (tmp_path / "reg" / "roster.csv").read_text(encoding="utf-8")
    _write(tmp_path / "reg", "roster.csv", roster + "win-371702001-01,s3,张三,2026-03-01,,\n")
    with pytest.raises(RegistryError, match=r"roster.csv:4:valid_from: window win-371702001-01 has two staff"):
        Registry.load(tmp_path / "reg")


def test_transactions_give_totals_per_window(tiny_registry, tmp_path):
    tiny_registry.save(tmp_path / "reg")
    _write(tmp_path / "reg", "transactions.csv",
           "window_id,date,count\nwin-371702001-01,2026-03-02,40\nwin-371702001-01,2026-03-03,35\n"
           "win-371702001-02,2026-04-01,7\n")
    reg = Registry.load(tmp_path / "reg")
    from datetime import date

    assert reg.transactions_by_window(date(2026, 1, 1), date(2026, 4, 1)) == {"win-371702001-01": 75}
    _write(tmp_path / "reg", "transactions.csv",
           "window_id,date,count\nwin-371702001-01,2026-03-02,40\nwin-371702001-01,2026-03-02,1\nwin-x,2026-13-01,-1\n")
    with pytest.raises(RegistryError) as info:
        Registry.load(tmp_path / "reg")
    problems = {(f, line, fld) for f, line, fld, _ in info.value.problems}
    assert problems == {("transactions.csv", 3, "date"), ("transactions.csv", 4, "window_id"),
                        ("transactions.csv", 4, "date"), ("transactions.csv", 4, "count")}


def test_active_registry_is_stored_in_the_center_db(center_db, tiny_registry):
    assert load_active(center_db) is None
    store_active(center_db, tiny_registry, source="test")
    loaded = load_active(center_db)
    assert loaded.counties == tiny_registry.counties
    assert loaded.devices() == tiny_registry.devices()


def test_reassign_refuses_an_occupied_window(tiny_registry):
    with pytest.raises(RegistryError, match="still has terminal hz-371702100-w01"):
        tiny_registry.reassign("hz-371702001-w01", "win-371702100-01", china(2026, 3, 1))


def test_registry_json_summary(heze):
    summary = heze.summary()
    assert json.loads(json.dumps(summary))["townships"] == 167


def test_retire_takes_effect_on_a_registry_already_queried(tiny_registry):
    device = "hz-371702001-w01"
    assert tiny_registry.current_location(device) is not None      # builds the lookup index
    tiny_registry.retire(device, china(2026, 5, 1))
    assert tiny_registry.current_location(device) is None
    assert tiny_registry.locate(device, china(2026, 4, 30)) is not None
    assert tiny_registry.locate(device, china(2026, 5, 1)) is None
