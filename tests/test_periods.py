"""Quarter and day boundaries are in China time (UTC+8)."""

from datetime import datetime, timezone

import pytest

from manyi.periods import CHINA_TZ, Quarter, parse_china_time


def test_quarter_bounds_are_china_time():
    q = Quarter.parse("2026Q3")
    assert q.start == datetime(2026, 7, 1, tzinfo=CHINA_TZ)
    assert q.end == datetime(2026, 10, 1, tzinfo=CHINA_TZ)
    assert str(q) == "2026Q3" and str(q.next()) == "2026Q4" and str(Quarter(2026, 1).previous()) == "2025Q4"


def test_vote_late_on_30_september_utc_belongs_to_q4():
    late_utc = datetime(2026, 9, 30, 16, 30, tzinfo=timezone.utc)  # 00:30 on 1 October in Heze
    assert Quarter.containing(late_utc) == Quarter(2026, 4)
    assert Quarter.containing(datetime(2026, 9, 30, 15, 59, 59, tzinfo=timezone.utc)) == Quarter(2026, 3)


@pytest.mark.parametrize("text", ["2026Q5", "26Q1", "Q3-2026", ""])
def test_bad_quarters_are_refused(text):
    with pytest.raises(ValueError):
        Quarter.parse(text)


def test_times_written_without_an_offset_are_china_time():
    assert parse_china_time("2026-03-01") == datetime(2026, 3, 1, tzinfo=CHINA_TZ)
    assert parse_china_time("2026-03-01 14:30") == datetime(2026, 3, 1, 14, 30, tzinfo=CHINA_TZ)
    moment = parse_china_time("2026-02-28T16:00:00Z")                 # an offset is respected
    assert moment == datetime(2026, 3, 1, tzinfo=CHINA_TZ) and moment.utcoffset().total_seconds() == 8 * 3600
    with pytest.raises(ValueError):
        parse_china_time("2026-02-30")
