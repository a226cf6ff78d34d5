"""Calendar periods in China Standard Time (Asia/Shanghai, UTC+8, no daylight saving).

A quarter ``2026Q3`` runs from 2026-07-01T00:00+08:00 up to (not including)
2026-10-01T00:00+08:00. Everything that buckets votes by quarter, month, week or day
uses these functions, so that a vote at 23:30 UTC on 30 September counts in Q4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
_QUARTER_RE = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*$")


def to_local(moment: datetime) -> datetime:
    """The same instant in China Standard Time (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(CHINA_TZ)


def parse_china_time(text: str) -> datetime:
    """Parse ISO 8601 as people write it here: without a UTC offset the time is China time
    (``2026-03-01`` is 00:00 China time); the result is in China time. Raise ValueError."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA_TZ)
    return value.astimezone(CHINA_TZ)


def local_midnight(day: date) -> datetime:
    """00:00 China time of ``day`` as an aware datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)


@dataclass(frozen=True, order=True)
class Quarter:
    """A calendar quarter in China time."""

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> "Quarter":
        """Parse ``2026Q3`` (also ``2026-Q3``, ``2026q3``); raise ValueError otherwise."""
        match = _QUARTER_RE.match(str(text))
        if not match:
            raise ValueError(f"quarter {text!r} is not of the form 2026Q3")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def containing(cls, moment: datetime) -> "Quarter":
        """The quarter (China time) that contains ``moment``."""
        local = to_local(moment)
        return cls(local.year, (local.month - 1) // 3 + 1)

    @property
    def start(self) -> datetime:
        """First instant of the quarter, aware, China time."""
        return datetime(self.year, 3 * self.number - 2, 1, tzinfo=CHINA_TZ)

    @property
    def end(self) -> datetime:
        """First instant after the quarter, aware, China time."""
        return self.next().start

    def next(self) -> "Quarter":
        """The following quarter."""
        return Quarter(self.year + (self.number == 4), self.number % 4 + 1)

    def previous(self) -> "Quarter":
        """The preceding quarter."""
        return Quarter(self.year - (self.number == 1), (self.number - 2) % 4 + 1)

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in China time."""
    start = local_midnight(day)
    return start, start + timedelta(days=1)


def week_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of the Monday-based week containing ``day``, China time."""
    monday = day - timedelta(days=day.weekday())
    start = local_midnight(monday)
    return start, start + timedelta(days=7)


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month, China time."""
    start = datetime(year, month, 1, tzinfo=CHINA_TZ)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=CHINA_TZ)
    return start, end


_MONTH_RE = re.compile(r"^\s*(\d{4})\s*-\s*(\d{1,2})\s*$")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month in China time (the period of the monthly bulletin and the upward export)."""

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> "Month":
        """Parse ``2026-11`` (also ``2026-1``); raise ValueError otherwise."""
        match = _MONTH_RE.match(str(text))
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ValueError(f"month {text!r} is not of the form 2026-11")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def containing(cls, moment: datetime) -> "Month":
        """The month (China time) that contains ``moment``."""
        local = to_local(moment)
        return cls(local.year, local.month)

    @property
    def start(self) -> datetime:
        """First instant of the month, aware, China time."""
        return month_bounds(self.year, self.number)[0]

    @property
    def end(self) -> datetime:
        """First instant after the month, aware, China time."""
        return month_bounds(self.year, self.number)[1]

    def next(self) -> "Month":
        """The following month."""
        return Month(self.year + (self.number == 12), self.number % 12 + 1)

    def previous(self) -> "Month":
        """The preceding month."""
        return Month(self.year - (self.number == 1), (self.number - 2) % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year}-{self.number:02d}"
