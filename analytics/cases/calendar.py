"""The working-day calendar of the follow-up deadlines: the State Council's 法定节假日 and
调休 make-up days from the maintained ``chinesecalendar`` package, with the admin's
overrides on top.

The package ships each year's schedule once the State Council publishes it (usually in
November of the year before), so a year it does not cover yet counts only weekends until
the package is upgraded or an admin enters that year's days as overrides. :class:`WorkCalendar`
says which years are covered, and the settings page warns about the current and next year.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Iterable

import chinese_calendar

HOLIDAY, WORKDAY = "holiday", "workday"


@dataclass(frozen=True)
class WorkCalendar:
    """Days off and 调休 working days; a weekday not in ``holidays`` and any day in ``workdays`` is a
    working day. ``covered`` are the years whose statutory schedule is known."""

    holidays: frozenset[date]
    workdays: frozenset[date]
    covered: frozenset[int]
    source: str

    def covers(self, year: int) -> bool:
        return year in self.covered


@lru_cache(maxsize=1)
def _statutory() -> tuple[frozenset[date], frozenset[date], frozenset[int], str]:
    holidays = frozenset(chinese_calendar.holidays)
    workdays = frozenset(chinese_calendar.workdays)
    # A year is covered when the package lists at least one of its holidays: every published
    # schedule has 元旦 and 春节.
    covered = frozenset(day.year for day in holidays)
    return holidays, workdays, covered, f"chinesecalendar {chinese_calendar.__version__}"


def work_calendar(overrides: Iterable[dict] = ()) -> WorkCalendar:
    """The statutory calendar with ``overrides`` ({"day": "YYYY-MM-DD", "kind": holiday|workday}) applied:
    an override decides its day whatever the statutory schedule says."""
    holidays, workdays, covered, source = _statutory()
    off = {date.fromisoformat(o["day"]) for o in overrides if o["kind"] == HOLIDAY}
    on = {date.fromisoformat(o["day"]) for o in overrides if o["kind"] == WORKDAY}
    return WorkCalendar(holidays=frozenset((holidays - on) | off), workdays=frozenset((workdays - off) | on),
                        covered=covered, source=source)


def statutory_name(day: date) -> str:
    """The statutory holiday's Chinese name for ``day`` ('' when it is none or not covered)."""
    try:
        on_holiday, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return ""
    if not name:
        return ""
    label = next((h.chinese for h in chinese_calendar.Holiday if h.value == name), str(name))
    return label + ("" if on_holiday else "（调休上班）")
