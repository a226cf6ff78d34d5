"""Votes as every page sees them: read from the vote store at a grain fine enough for the
one attribution (analytics.model.attribution) to be exact, then attributed.

The store is asked for the coarsest buckets that lie wholly inside one assignment:

- ``grain="total"`` (stores with period totals, like SQLiteStore): one row per terminal
  and rating for the whole period, stamped at its start; ``"day"``: day buckets (China
  days); ``"hour"``: hour buckets;
- a terminal whose assignment begins or ends inside the period (it was moved, installed or
  retired) is read by the hour, and in an hour that contains such a change not on the hour
  by its raw votes, so its votes count where it stood at each press;
- with ``staff=True``, terminals of windows whose duty roster changes inside the period are
  read by the day (the change at China midnight) or by the hour (an intraday shift, which is
  attributed at the hour).

:func:`attributed_counts` returns :class:`Attributed`: the rows with their window, hall,
township and county (and staff), and what could not be attributed.

Votes 不予采纳 by an accepted appeal (analytics.appeals.excluded_votes) are passed as
``exclusions``: each adds a row at the vote's own time that moves it from ``count`` to
``excluded`` (count −1, excluded +1), so every page that scores leaves it out and still
counts it as excluded, while the vote store stays untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .model import attribution as attr

GRAINS = ("total", "day", "hour")


@dataclass
class Attributed:
    """Count rows with their place (and staff), and what could not be attributed."""

    rows: pd.DataFrame                    # device, at, rating, count, excluded, rid, window_id, hall_id, township_code, county_code
    orphans: pd.DataFrame                 # rows of a terminal not assigned to any window at that time
    overlaps: list[str]                   # terminals with overlapping assignments (counted once, at the earliest)
    info: dict = field(default_factory=dict)
    staffed: pd.DataFrame | None = None   # rows with staff_id, staff_name (staff=True)
    unstaffed: pd.DataFrame | None = None  # attributed rows at a window with nobody on duty (staff=True)

    def by(self, column: str, value) -> pd.DataFrame:
        """The attributed rows whose ``column`` is ``value``."""
        return self.rows[self.rows[column] == value]


def rows_frame(rows) -> pd.DataFrame:
    """Store CountRows as a frame: device, at (UTC), rating, count, excluded."""
    frame = pd.DataFrame([(r.device, r.bucket, r.rating, r.count, r.excluded) for r in rows], columns=attr.ROW_COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], utc=True).astype("datetime64[us, UTC]")
    frame["count"] = frame["count"].astype("int64")
    frame["excluded"] = frame["excluded"].astype("int64")
    return frame


def _totals_frame(rows, at) -> pd.DataFrame:
    """Period totals (device, rating, kept, excluded) as count rows stamped at ``at``."""
    frame = pd.DataFrame.from_records(rows, columns=["device", "rating", "count", "excluded"])
    frame.insert(1, "at", pd.Series(at, index=frame.index, dtype="datetime64[us, UTC]"))
    frame["count"] = frame["count"].astype("int64")
    frame["excluded"] = frame["excluded"].astype("int64")
    return frame


def _roster_windows(roster: pd.DataFrame, s_utc, e_utc, intraday: bool) -> list[str]:
    """Windows whose roster changes inside the period (only at a time that is not China midnight if ``intraday``)."""
    if not len(roster):
        return []
    times = pd.concat([roster[["window_id", "valid_from"]].rename(columns={"valid_from": "t"}),
                       roster[["window_id", "valid_to"]].rename(columns={"valid_to": "t"})])
    times = times[(times["t"] > s_utc) & (times["t"] < e_utc)]
    if intraday:
        local = times["t"].dt.tz_convert("Asia/Shanghai")
        times = times[local != local.dt.normalize()]
    return sorted(set(times["window_id"]))


def exclusion_rows(exclusions, start, end, devices=None) -> pd.DataFrame:
    """Count rows that take the appealed votes of [start, end) out of the scores (module doc)."""
    s_utc, e_utc = attr.utc(start), attr.utc(end)
    frame = pd.DataFrame([(v["device"], v["time"], v["rating"]) for v in exclusions or ()],
                         columns=["device", "at", "rating"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True).astype("datetime64[us, UTC]")
    keep = (frame["at"] >= s_utc) & (frame["at"] < e_utc)
    if devices is not None:
        keep &= frame["device"].isin(set(devices))
    frame = frame[keep]
    return frame.assign(count=pd.Series(-1, index=frame.index, dtype="int64"),
                        excluded=pd.Series(1, index=frame.index, dtype="int64"))[attr.ROW_COLUMNS]


def read_counts(store, registry, start, end, *, grain: str = "day", devices=None, staff: bool = False,
                exclusions=None):
    """(count rows, info) of [start, end) read at ``grain``, finer where attribution needs it (module doc)."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {GRAINS}, not {grain!r}")
    s_utc, e_utc = attr.utc(start), attr.utc(end)
    places = attr.places(registry)
    wanted = None if devices is None else set(devices)
    moved = attr.moved_devices(places, start, end)
    during = (places["valid_from"] < e_utc) & (places["valid_to"] > s_utc)
    roster = attr.roster_frame(registry) if staff else None
    shift_devices: set[str] = set()
    daily: set[str] = set()
    if staff:
        shift_devices = set(places.loc[during & places["window_id"].isin(_roster_windows(roster, s_utc, e_utc, True)),
                                       "device"]) - moved
        daily = set(places.loc[during & places["window_id"].isin(_roster_windows(roster, s_utc, e_utc, False)),
                               "device"]) - moved - shift_devices
    hourly = moved | shift_devices
    if grain == "hour":
        hourly |= set(places["device"]) if wanted is None else wanted
    if wanted is not None:
        hourly &= wanted
        daily &= wanted
    totals = getattr(store, "totals", None)
    parts = []
    if grain == "total" and callable(totals):
        base = _totals_frame(totals(start, end), s_utc)
        base = base[~base["device"].isin(hourly | daily)]
        if wanted is not None:
            base = base[base["device"].isin(wanted)]
        parts.append(base)
        if daily:
            parts.append(rows_frame(store.counts(start, end, "day", devices=sorted(daily))))
        buckets = "按期合计"
    elif grain in ("total", "day"):
        if wanted is None:
            base = rows_frame(store.counts(start, end, "day"))
        else:
            base = rows_frame(store.counts(start, end, "day", devices=sorted(wanted))) if wanted else rows_frame([])
        parts.append(base[~base["device"].isin(hourly)])
        buckets = "按日"
    else:
        buckets = "按小时"
    n_rows = sum(len(p) for p in parts)
    raw_votes = 0
    if hourly:
        hour = rows_frame(store.counts(start, end, "hour", devices=sorted(hourly)))
        n_rows += len(hour)
        cut = attr.cuts(places, start, end, hourly)
        if len(cut):
            key = pd.MultiIndex.from_frame(hour[["device", "at"]])
            hour = hour[~key.isin(pd.MultiIndex.from_arrays([cut["device"], cut["hour"]]))]
            exact = []
            for device, h in zip(cut["device"], cut["hour"]):
                for vote in store.votes(h.to_pydatetime(), (h + pd.Timedelta(hours=1)).to_pydatetime(), devices=[device]):
                    exact.append((vote.device, vote.time, vote.rating, 0 if vote.excluded else 1, int(vote.excluded)))
            raw_votes = len(exact)
            if exact:
                extra = pd.DataFrame(exact, columns=attr.ROW_COLUMNS)
                extra["at"] = pd.to_datetime(extra["at"], utc=True).astype("datetime64[us, UTC]")
                parts.append(extra)
        parts.append(hour)
    appealed = exclusion_rows(exclusions, start, end, wanted)
    if len(appealed):
        parts.append(appealed)
    rows = pd.concat(parts, ignore_index=True) if parts else rows_frame([])
    info = {"count_rows": n_rows, "moved_terminals": len(moved if wanted is None else moved & wanted),
            "raw_votes_read": raw_votes, "buckets": buckets, "shift_terminals": len(shift_devices),
            "appealed_votes": len(appealed)}
    return rows, info


def attributed_counts(store, registry, start, end, *, grain: str = "day", devices=None,
                      staff: bool = False, exclusions=None) -> Attributed:
    """The votes of [start, end) with the place (and, with ``staff``, the staff member) of each press;
    ``exclusions`` are the 不予采纳 votes of accepted appeals."""
    rows, info = read_counts(store, registry, start, end, grain=grain, devices=devices, staff=staff,
                             exclusions=exclusions)
    attributed, orphans, overlaps = attr.attribute(rows, attr.places(registry))
    out = Attributed(attributed, orphans, overlaps, info)
    if staff:
        out.staffed, out.unstaffed = attr.attribute_staff(attributed, attr.roster_frame(registry))
    return out
