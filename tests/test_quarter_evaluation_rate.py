"""评价率 (evaluation rate) = votes ÷ transactions per window and hall, where transaction counts exist."""

from __future__ import annotations

import io
import math
from datetime import date, datetime, timedelta, timezone

import openpyxl
import pytest

from analytics.quarter import compute_quarter, load_published, publish, recompute_published
from analytics.output.report import render_report
from collector.stores.base import StoredVote
from manyi.periods import CHINA_TZ, Quarter
from manyi.registry import Transaction

Q3 = Quarter(2026, 3)
NOW = datetime(2026, 10, 8, 1, 0, tzinfo=timezone.utc)


def votes(device: str, n: int, start_seq: int = 1) -> list[StoredVote]:
    at = datetime(2026, 8, 3, 10, 0, tzinfo=CHINA_TZ)
    return [StoredVote(device=device, seq=start_seq + i, rating="satisfied", time=at + timedelta(minutes=i),
                       received_at=at, pressed_at=at.isoformat(), clock_ok=True) for i in range(n)]


@pytest.fixture
def counted(vote_store, tiny_registry):
    """40 votes at window 01 and 10 at window 02 of one hall; transactions known for window 01 only."""
    vote_store.write(votes("hz-371702001-w01", 40) + votes("hz-371702001-w02", 10))
    tiny_registry.transactions += [
        Transaction("win-371702001-01", date(2026, 8, 3), 60),
        Transaction("win-371702001-01", date(2026, 9, 30), 20),
        Transaction("win-371702001-01", date(2026, 10, 1), 999),   # Q4: not counted in Q3
        Transaction("win-371702001-01", date(2026, 6, 30), 999),   # Q2: not counted either
    ]
    return vote_store, tiny_registry


def test_window_and_hall_rates_use_only_windows_with_transaction_counts(counted):
    store, registry = counted
    result = compute_quarter(store, registry, None, Q3, now=NOW)
    w = result.windows.set_index("window_id")
    assert w.loc["win-371702001-01", "transactions"] == 80
    assert w.loc["win-371702001-01", "eval_rate"] == pytest.approx(40 / 80)
    assert math.isnan(w.loc["win-371702001-02", "eval_rate"])      # no counts: no rate, not 0
    h = result.halls.set_index("hall_id")
    # The hall's rate is 40/80, not (40 + 10)/80: window 02 has no transaction counts.
    assert h.loc["hall-371702001", "eval_rate"] == pytest.approx(0.5)
    assert h.loc["hall-371702001", "n_T"] == 50


def test_without_transaction_counts_there_is_no_rate_column(vote_store, tiny_registry):
    vote_store.write(votes("hz-371702001-w01", 5))
    result = compute_quarter(vote_store, tiny_registry, None, Q3, now=NOW)
    assert "eval_rate" not in result.windows and "eval_rate" not in result.halls
    sheet = openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx")))["窗口"]
    assert "评价率" not in [c.value for c in sheet[1]]


def test_report_shows_the_rate_and_a_published_quarter_recomputes_it(counted, center_db):
    store, registry = counted
    result = compute_quarter(store, registry, center_db, Q3, now=NOW)
    sheet = openpyxl.load_workbook(io.BytesIO(render_report(result, "xlsx")))["窗口"]
    headers = [c.value for c in sheet[1]]
    assert "办件量" in headers and "评价率" in headers
    rates = [row[headers.index("评价率")] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert 0.5 in rates
    result_id = publish(center_db, result)
    again = recompute_published(center_db, result_id)
    stored = load_published(center_db, result_id)
    for frame in (again.windows, stored.windows):
        assert frame.set_index("window_id").loc["win-371702001-01", "eval_rate"] == pytest.approx(0.5)
