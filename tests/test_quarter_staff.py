"""Staff (人员): votes attributed to the staff member on duty, over a real SQLiteStore."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import datetime, timedelta, timezone

import openpyxl
import pytest
from pandas.testing import assert_frame_equal

from analytics.quarter import (
    STAFF_COLUMNS, TABLES, compute_quarter, load_published, publish, recompute_published,
)
from analytics.output.report import render_report
from collector.stores.base import StoredVote
from manyi.periods import CHINA_TZ, Quarter
from manyi.registry import RosterEntry

Q3 = Quarter(2026, 3)
NOW = datetime(2026, 10, 8, 1, 0, tzinfo=timezone.utc)
W1, W2 = "win-371702001-01", "win-371702001-02"
D1, D2 = "hz-371702001-w01", "hz-371702001-w02"
_seq = itertools.count(1)


def local(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA_TZ)


def votes(device: str, at: datetime, rating: str, n: int) -> list[StoredVote]:
    """``n`` votes a minute apart from ``at``."""
    return [StoredVote(device=device, seq=next(_seq), rating=rating, time=at + timedelta(minutes=i), received_at=at,
                       pressed_at=at.isoformat(), clock_ok=True) for i in range(n)]


def staff(result, staff_id: str) -> dict:
    return result.staff.set_index("staff_id").loc[staff_id].to_dict()


@pytest.fixture
def shifts(vote_store, tiny_registry):
    """Two staff share window 01 on 3 Aug: 甲 08:00-13:00, 乙 13:00-18:00; nobody there before or after."""
    tiny_registry.roster += [RosterEntry(W1, "s-001", "张甲", local(8, 3, 8), local(8, 3, 13)),
                             RosterEntry(W1, "s-002", "李乙", local(8, 3, 13), local(8, 3, 18))]
    vote_store.write(votes(D1, local(8, 3, 9), "satisfied", 5) + votes(D1, local(8, 3, 12, 50), "unsatisfied", 2)
                     + votes(D1, local(8, 3, 13, 5), "basic", 3) + votes(D1, local(8, 3, 17, 30), "satisfied", 1)
                     + votes(D1, local(8, 3, 19), "unsatisfied", 4))        # after both shifts: 未排班
    return vote_store, tiny_registry


def test_two_shifts_on_one_window_get_exactly_their_own_votes(shifts):
    store, registry = shifts
    result = compute_quarter(store, registry, None, Q3, now=NOW)
    a, b = staff(result, "s-001"), staff(result, "s-002")
    assert (a["S_T"], a["B_T"], a["U_T"], a["n_T"]) == (5, 0, 2, 7)
    assert (b["S_T"], b["B_T"], b["U_T"], b["n_T"]) == (1, 3, 0, 4)
    assert a["name"] == "张甲" and a["windows"] == W1 and a["hall_id"] == "hall-371702001"
    assert a["county_code"] == "371702" and a["township_code"] == "371702001"
    assert a["rate_T"] == pytest.approx(5 / 7) and a["flags"] == "样本不足"
    assert a["ci_low"] < 5 / 7 < a["ci_high"]
    # The window's day bucket starts at midnight, when nobody is on duty: only hour buckets give these figures.
    assert result.input_counts["shift_terminals"] == 1 and result.input_counts["moved_terminals"] == 0
    assert result.input_counts["unstaffed_votes"] == 4
    assert result.windows.set_index("window_id").loc[W1, "n_T"] == 15      # the window keeps every vote
    assert list(result.staff.columns) == STAFF_COLUMNS


def test_a_shift_change_inside_an_hour_is_attributed_at_the_hour(vote_store, tiny_registry):
    tiny_registry.roster += [RosterEntry(W1, "s-001", "张甲", local(8, 3, 8), local(8, 3, 12, 30)),
                             RosterEntry(W1, "s-002", "李乙", local(8, 3, 12, 30), local(8, 3, 18))]
    vote_store.write(votes(D1, local(8, 3, 12, 40), "satisfied", 3) + votes(D1, local(8, 3, 13, 10), "basic", 2))
    result = compute_quarter(vote_store, tiny_registry, None, Q3, now=NOW)
    # 12:40 lies in 乙's shift but in the hour 12:00-13:00, which starts in 甲's: 甲 gets it (documented).
    assert staff(result, "s-001")["S_T"] == 3 and staff(result, "s-002")["n_T"] == 2


def test_a_staff_member_moving_windows_keeps_votes_from_both(vote_store, tiny_registry):
    w_a, w_b = "win-371702100-01", "win-371721101-02"
    tiny_registry.roster += [RosterEntry(w_a, "s-009", "王丙", local(7, 1), local(8, 15)),
                             RosterEntry(w_b, "s-009", "王丙", local(8, 15), None),
                             RosterEntry(w_a, "s-010", "赵丁", local(8, 15), None)]
    vote_store.write(votes("hz-371702100-w01", local(7, 20, 10), "satisfied", 6)
                     + votes("hz-371702100-w01", local(8, 20, 10), "unsatisfied", 2)     # 赵丁's by then
                     + votes("hz-371721101-w02", local(9, 2, 15), "basic", 4))
    result = compute_quarter(vote_store, tiny_registry, None, Q3, now=NOW)
    c = staff(result, "s-009")
    assert (c["S_T"], c["B_T"], c["U_T"]) == (6, 4, 0)
    assert c["windows"] == f"{w_a}, {w_b}"
    # Main window: the longer duty inside Q3 (15 Aug - 1 Oct: 47 days against 45).
    assert c["window_id"] == w_b and c["county_code"] == "371721" and c["hall_id"] == "hall-371721101"
    assert staff(result, "s-010")["U_T"] == 2
    # Shifts that change at China midnight keep day buckets.
    assert result.input_counts["shift_terminals"] == 0
    assert len(result.staff) == 2


def test_votes_with_nobody_on_duty_are_counted_as_unstaffed(vote_store, tiny_registry):
    tiny_registry.roster.append(RosterEntry(W1, "s-001", "张甲", local(7, 1), None))
    vote_store.write(votes(D1, local(8, 3, 9), "satisfied", 3) + votes(D2, local(8, 3, 9), "basic", 5))
    result = compute_quarter(vote_store, tiny_registry, None, Q3, now=NOW)
    assert result.staff["n_T"].sum() == 3
    assert result.input_counts["unstaffed_votes"] == 5
    note = next(n for n in result.notes if "未排班" in n)
    assert note.startswith("5 票") and W2 in note
    assert result.windows.set_index("window_id").loc[W2, "n_T"] == 5       # still counted for the window


def test_without_a_roster_the_staff_frame_is_empty_and_there_is_no_staff_sheet(vote_store, tiny_registry,
                                                                                  center_db):
    vote_store.write(votes(D1, local(8, 3, 9), "satisfied", 3))
    result = compute_quarter(vote_store, tiny_registry, None, Q3, now=NOW)
    assert len(result.staff) == 0 and list(result.staff.columns) == STAFF_COLUMNS
    assert tuple(result.tables()) == TABLES
    assert not any("未排班" in n for n in result.notes) and "unstaffed_votes" not in result.input_counts
    assert "人员" not in openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx"))).sheetnames
    assert "<h2>人员</h2>" not in render_report(result, "html").decode()
    # Published without a staff table (like results published before staff existed): loads with an empty one.
    result_id = publish(center_db, result)
    assert [r["name"] for r in center_db.query("SELECT name FROM quarter_tables WHERE result_id = ?", (result_id,))
            if r["name"] == "staff"] == []
    for again in (load_published(center_db, result_id), recompute_published(center_db, result_id)):
        assert len(again.staff) == 0 and list(again.staff.columns) == STAFF_COLUMNS
        assert again.fingerprint() == result.fingerprint()


def test_publish_load_and_recompute_give_identical_staff_figures(shifts, center_db):
    store, registry = shifts
    result = compute_quarter(store, registry, center_db, Q3, now=NOW)
    result_id = publish(center_db, result)
    stored = load_published(center_db, result_id)
    again = recompute_published(center_db, result_id)
    assert_frame_equal(stored.staff, result.staff)
    assert_frame_equal(again.staff, result.staff)
    assert stored.fingerprint() == result.fingerprint() == again.fingerprint()
    assert publish(center_db, again) == result_id


def test_report_has_a_staff_sheet_with_the_right_numbers(shifts):
    store, registry = shifts
    registry.roster.append(RosterEntry(W2, "s-003", "=HYPERLINK(\"http://x\")", local(7, 1), None))
    store.write(votes(D2, local(8, 5, 10), "satisfied", 2))
    result = compute_quarter(store, registry, None, Q3, now=NOW)
    book = openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx")))
    assert book.sheetnames.index("人员") == book.sheetnames.index("窗口") + 1
    sheet = book["人员"]
    headers = [c.value for c in sheet[1]]
    assert headers[:6] == ["人员编号", "姓名", "窗口", "服务大厅", "县区", "乡镇(街道)"]
    rows = {r[0]: dict(zip(headers, r)) for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert set(rows) == {"s-001", "s-002", "s-003"}
    a = rows["s-001"]
    assert (a["终端评价数 n"], a["满意"], a["基本满意"], a["不满意"]) == (7, 5, 0, 2)
    assert a["满意率"] == pytest.approx(5 / 7) and a["标记"] == "样本不足"
    assert a["县区"] == "牡丹区" and a["服务大厅"] == "371702001 hall" and a["姓名"] == "张甲"
    assert rows["s-002"]["基本满意"] == 3 and rows["s-003"]["满意"] == 2
    assert rows["s-003"]["姓名"] == "'=HYPERLINK(\"http://x\")"                # imported text never runs
    text = render_report(result, "csv").decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text)))
    start = lines.index(["# 人员"])
    assert lines[start + 1][:2] == ["人员编号", "姓名"] and len(lines[start + 2:start + 5]) == 3
    assert any(row[:2] == ["s-003", "'=HYPERLINK(\"http://x\")"] for row in lines[start + 2:start + 5])
    page = render_report(result, "html").decode()
    assert "<h2>人员</h2>" in page and "张甲" in page
