"""The indicators of every unit of a level for a period: read, attribute, compute.

Reads the votes through the one attribution (analytics.votes), the 12333 answers given in
the period, the follow-up cases opened in it and the registry's transaction counts, and
hands them to the pure :func:`analytics.model.indicators.indicators`. The pages, the API,
the monthly bulletin and the upward export all call :func:`unit_indicators`.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from manyi.periods import to_local
from manyi.registry import OpeningHours

from .cases.rules import outcome
from .center import cases as stored_cases
from .center import imports as stored_imports
from .model.attribution import attribute, places, window_places
from .model.heze import Params
from .model.indicators import indicators
from .model.rates import counts_by
from .appeals import excluded_votes
from .votes import attributed_counts, exclusion_rows

LEVELS = ("city", "county", "township", "hall", "window")
COLUMN = {"county": "county_code", "township": "township_code", "hall": "hall_id", "window": "window_id"}
CITY = "city"
PHONE = {"satisfied": "S", "basic": "B", "unsatisfied": "U", "excluded": "excluded"}


def _code_column(frame: pd.DataFrame, level: str) -> pd.Series:
    return pd.Series(CITY, index=frame.index) if level == "city" else frame[COLUMN[level]]


def _terminal_counts(rows: pd.DataFrame, level: str) -> pd.DataFrame:
    rows = rows.assign(code=_code_column(rows, level))
    rows = rows[rows["code"] != ""]
    wide = counts_by(rows, "code").rename(columns={"satisfied": "S", "basic": "B", "unsatisfied": "U"})
    return wide.assign(channel="terminal")


def _phone_counts(db, registry, level: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Answers per unit: a township's answers count for it and its county (and the city); a county's for it."""
    columns = ["code", "S", "B", "U", "excluded", "channel"]
    if db is None or level not in ("city", "county", "township"):
        return pd.DataFrame(columns=columns)
    rows = pd.DataFrame(stored_imports.survey_counts_between(db, to_local(start).isoformat(), to_local(end).isoformat()),
                        columns=["level", "code", "county_code", "rating", "n"])
    if level == "township":
        rows = rows[rows["level"] == "township"]
    elif level == "county":
        rows = rows.assign(code=rows["county_code"])
    else:
        rows = rows.assign(code=CITY)
    rows = rows[rows["rating"].isin(list(PHONE))]
    if not len(rows):
        return pd.DataFrame(columns=columns)
    wide = rows.pivot_table(index="code", columns="rating", values="n", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=list(PHONE), fill_value=0).rename(columns=PHONE)
    return wide.astype("int64").reset_index().assign(channel="phone")[columns]


def _appealed(registry, exclusions, level: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Votes 不予采纳 by accepted appeals, per unit where their terminal stood."""
    rows, _, _ = attribute(exclusion_rows(exclusions, start, end), places(registry))
    rows = rows.assign(code=_code_column(rows, level))
    return rows.groupby("code").size().rename("appealed").reset_index()


def _cases(db, level: str, start: datetime, end: datetime, now: datetime) -> pd.DataFrame:
    columns = ["code", "closed", "called_back", "on_time", "due", "overdue"]
    if db is None:
        return pd.DataFrame(columns=columns)
    rows = stored_cases.case_rows(db, first_from=start, first_before=end, limit=1_000_000)
    out = []
    for case in rows:
        code = CITY if level == "city" else case[COLUMN[level]]
        if code:
            out.append({"code": code, **outcome(case, now)})
    return pd.DataFrame(out, columns=columns)


def _transactions(registry, attributed: pd.DataFrame, level: str, start: datetime, end: datetime) -> pd.DataFrame:
    per_window = registry.transactions_by_window(to_local(start).date(), to_local(end).date())
    if not per_window:
        return pd.DataFrame(columns=["code", "transactions", "tx_votes"])
    places = window_places(registry)
    places = places[places["window_id"].isin(per_window)]
    tx = places.assign(transactions=places["window_id"].map(per_window), code=_code_column(places, level))
    voted = attributed[attributed["window_id"].isin(per_window)]
    voted = voted.assign(code=_code_column(voted, level)).groupby("code")["count"].sum()
    out = tx.groupby("code")["transactions"].sum().to_frame()
    out["tx_votes"] = voted.reindex(out.index).fillna(0)
    return out.astype("int64").reset_index()


HALF_HOUR = pd.Timedelta(minutes=30)


def _availability(store, registry, db, level: str, start: datetime, end: datetime, now: datetime) -> pd.DataFrame | None:
    """Per unit: terminal-hours in opening hours up to ``now``, and those in which the terminal was heard.

    An hour is an opening hour of a hall when the hall is open at its middle (China time) and
    its day is not on the holiday list; each terminal-hour counts at the hall where the
    terminal stood then (the one attribution)."""
    columns = ["code", "open_hours", "heard_hours"]
    stop = min(pd.Timestamp(end), pd.Timestamp(now)).tz_convert("UTC")
    first = pd.Timestamp(start).tz_convert("UTC").ceil("h")
    if stop <= first:
        return pd.DataFrame(columns=columns)
    hours = pd.date_range(first, stop - pd.Timedelta(hours=1), freq="h").floor("h")
    hours = hours[hours + pd.Timedelta(hours=1) <= stop]
    if not len(hours):
        return pd.DataFrame(columns=columns)
    holidays = set()
    if db is not None:
        from analytics.cases import calendar

        holidays = calendar(db).holidays
    workday = np.array([to_local(h.to_pydatetime()).date() not in holidays for h in hours])
    # which hours each distinct opening-hours text is open (few texts: most halls share one)
    specs = sorted({hall.opening_hours for hall in registry.halls.values()})
    mids = [(h + HALF_HOUR).to_pydatetime() for h in hours]
    hours_of = {spec: OpeningHours.parse(spec) for spec in specs}
    open_matrix = np.array([[hours_of[spec].is_open(m) for m in mids] for spec in specs]) & workday
    spec_of_hall = {hall.id: specs.index(hall.opening_hours) for hall in registry.halls.values()}
    devices = registry.devices()
    frame = pd.DataFrame({"device": np.repeat(devices, len(hours)),
                          "at": pd.Series(np.tile(hours.to_numpy(), len(devices)), dtype="datetime64[us, UTC]"),
                          "rating": "", "count": 1, "excluded": 0})
    located, _, _ = attribute(frame, places(registry))
    spec_index = located["hall_id"].map(spec_of_hall)
    located = located[spec_index.notna()]
    hour_index = ((located["at"] - hours[0]) // pd.Timedelta(hours=1)).to_numpy()
    located = located[open_matrix[spec_index[spec_index.notna()].astype(int).to_numpy(), hour_index]]
    heard = pd.DataFrame(store.heard_hours(first.to_pydatetime(), stop.to_pydatetime()), columns=["device", "at"])
    if not len(heard):
        return None                               # nothing heard from any terminal: not measured, not 0 %
    heard["at"] = pd.to_datetime(heard["at"], utc=True).astype("datetime64[us, UTC]")
    located = located.merge(heard.assign(heard=1), on=["device", "at"], how="left")
    located = located.assign(heard=located["heard"].fillna(0), code=_code_column(located, level))
    located = located[located["code"] != ""]
    out = located.groupby("code").agg(open_hours=("heard", "size"), heard_hours=("heard", "sum"))
    return out.astype("int64").reset_index()[columns]


def unit_names(registry, level: str) -> pd.DataFrame:
    """Every unit of ``level``: code, name, county_code (the city: one row)."""
    if level == "city":
        return pd.DataFrame([(CITY, "全市", "")], columns=["code", "name", "county_code"])
    if level == "county":
        rows = [(c.code, c.name, c.code) for c in registry.counties.values()]
    elif level == "township":
        rows = [(t.code, t.name, t.county_code) for t in registry.townships.values()]
    elif level == "hall":
        towns = registry.townships
        rows = [(h.id, h.name, h.county_code or (towns[h.township_code].county_code
                                                 if h.township_code in towns else "")) for h in registry.halls.values()]
    else:
        places = window_places(registry).set_index("window_id")
        rows = [(w.id, f"{registry.halls[w.hall_id].name} {w.name}" if w.hall_id in registry.halls else w.name,
                 places.loc[w.id, "county_code"]) for w in registry.windows.values()]
    return pd.DataFrame(rows, columns=["code", "name", "county_code"])


def unit_indicators(store, registry, db, level: str, start: datetime, end: datetime, *, now: datetime,
                    params: Params = Params(), channels=("terminal", "phone"), availability: bool = True) -> pd.DataFrame:
    """The indicators of every unit of ``level`` in [start, end), one row per unit and channel, with names
    (``availability=False`` leaves terminal availability out, as not measured: it is the costly one)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    exclusions = excluded_votes(db, start, end)
    attributed = attributed_counts(store, registry, start, end, grain="total", exclusions=exclusions).rows
    parts = []
    if "terminal" in channels:
        names = unit_names(registry, level)
        counted = _terminal_counts(attributed, level).merge(_appealed(registry, exclusions, level, start, end),
                                                            on="code", how="left")
        # every unit appears, with zero votes where it had none
        parts.append(names[["code"]].merge(counted, on="code", how="left").assign(channel="terminal"))
    if "phone" in channels:
        parts.append(_phone_counts(db, registry, level, start, end))
    votes = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else \
        pd.DataFrame(columns=["code", "S", "B", "U", "excluded", "channel"])
    table = indicators(votes, _cases(db, level, start, end, now), _transactions(registry, attributed, level, start, end),
                       params, _availability(store, registry, db, level, start, end, now)
                       if availability and "terminal" in channels else None)
    return unit_names(registry, level).merge(table, on="code", how="right")
