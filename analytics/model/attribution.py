"""The one attribution: a vote belongs to the window its terminal was assigned to at the
time of the press, to that window's hall, township and county, and to the staff member on
duty at that window then.

Pure: frames in, frames out. Every page and report (map, drill-down, rankings, alerts,
cases, the quarterly computation) attributes through :func:`attribute`;
analytics.votes reads the store at a grain fine enough for it to be exact (a terminal
moved inside the period is read by the hour, and by the vote in the hour of a move that is
not on the hour).

Rows are count rows: ``device``, ``at`` (aware UTC; the start of a bucket that lies wholly
inside one assignment, or a vote's time), ``rating``, ``count``, ``excluded``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FAR_FUTURE = pd.Timestamp("2262-01-01", tz="UTC")
PLACE_COLUMNS = ["window_id", "hall_id", "township_code", "county_code"]
ROW_COLUMNS = ["device", "at", "rating", "count", "excluded"]


def utc(moment) -> pd.Timestamp:
    """An aware (or naive = UTC) moment as a UTC Timestamp."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _utc_column(moments) -> pd.Series:
    """Aware (or naive = UTC) datetimes, None = open end, as one datetime64[us, UTC] column."""
    stamps = {}
    for moment in set(moments):     # few distinct instants: convert each once
        stamps[moment] = utc(moment) if moment is not None else FAR_FUTURE
    return pd.Series([stamps[m] for m in moments], dtype="datetime64[us, UTC]")


def assignment_frame(registry) -> pd.DataFrame:
    """The registry's assignment history: device, window_id, valid_from, valid_to (UTC; open end = far future)."""
    rows = registry.assignments
    return pd.DataFrame({"device": pd.Series([a.device for a in rows], dtype=object),
                         "window_id": pd.Series([a.window_id for a in rows], dtype=object),
                         "valid_from": _utc_column([a.valid_from for a in rows]),
                         "valid_to": _utc_column([a.valid_to for a in rows])})


def roster_frame(registry) -> pd.DataFrame:
    """The duty roster: window_id, staff_id, staff_name, valid_from, valid_to (UTC; open end = far future)."""
    rows = getattr(registry, "roster", [])
    return pd.DataFrame({"window_id": pd.Series([r.window_id for r in rows], dtype=object),
                         "staff_id": pd.Series([r.staff_id for r in rows], dtype=object),
                         "staff_name": pd.Series([r.staff_name for r in rows], dtype=object),
                         "valid_from": _utc_column([r.valid_from for r in rows]),
                         "valid_to": _utc_column([r.valid_to for r in rows])})


def window_places(registry) -> pd.DataFrame:
    """Every window with its hall, township ('' for a county-level hall) and county."""
    towns = registry.townships
    rows = []
    for window in registry.windows.values():
        hall = registry.halls.get(window.hall_id)
        township = (hall.township_code or "") if hall else ""
        county = ((getattr(hall, "county_code", "") or "") if hall else "") or (
            towns[township].county_code if township in towns else "")
        rows.append((window.id, window.hall_id if hall else "", township, county))
    return pd.DataFrame(rows, columns=PLACE_COLUMNS, dtype=object)


def places(registry) -> pd.DataFrame:
    """Where each terminal stood when: device, valid_from, valid_to and the place columns.

    Kept with the registry object until its assignments, windows or halls change (a move or a
    retirement changes the registry in place).
    """
    key = (hash(tuple((a.device, a.window_id, a.valid_from, a.valid_to) for a in registry.assignments)),
           hash(tuple((w.id, w.hall_id) for w in registry.windows.values())),
           hash(tuple((h.id, h.township_code, getattr(h, "county_code", "")) for h in registry.halls.values())))
    cached = registry.__dict__.get("_attribution_places")
    if cached is not None and cached[0] == key:
        return cached[1]
    frame = assignment_frame(registry).merge(window_places(registry), on="window_id", how="left")
    for column in PLACE_COLUMNS[1:]:
        frame[column] = frame[column].fillna("")
    registry.__dict__["_attribution_places"] = (key, frame)
    return frame


def moved_devices(place_frame: pd.DataFrame, start, end) -> set[str]:
    """Terminals whose assignment begins or ends inside [start, end)."""
    s, e = utc(start), utc(end)
    inside = lambda col: (place_frame[col] > s) & (place_frame[col] < e)  # noqa: E731
    return set(place_frame.loc[inside("valid_from") | inside("valid_to"), "device"])


def cuts(place_frame: pd.DataFrame, start, end, devices=None) -> pd.DataFrame:
    """(device, hour) of the hours inside [start, end) that contain a move not on the hour."""
    s, e = utc(start), utc(end)
    frame = place_frame if devices is None else place_frame[place_frame["device"].isin(devices)]
    times = pd.concat([frame[["device", "valid_from"]].rename(columns={"valid_from": "t"}),
                       frame[["device", "valid_to"]].rename(columns={"valid_to": "t"})])
    times = times[(times["t"] > s) & (times["t"] < e)]
    times = times.assign(hour=times["t"].dt.floor("h"))
    return times.loc[times["t"] != times["hour"], ["device", "hour"]].drop_duplicates(ignore_index=True)


def attribute(rows: pd.DataFrame, place_frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(attributed rows with the place columns, rows of no assignment, devices with overlapping assignments).

    Overlapping assignments (rejected when a registry is loaded): the vote counts once, at
    the earliest one.
    """
    rows = rows.reset_index(drop=True)
    rows = rows.assign(rid=np.arange(len(rows)))
    joined = rows.merge(place_frame, on="device", how="left")
    hit = joined["window_id"].notna() & (joined["valid_from"] <= joined["at"]) & (joined["at"] < joined["valid_to"])
    attributed = joined[hit]
    overlaps: list[str] = []
    if attributed["rid"].duplicated().any():
        overlaps = sorted(set(attributed.loc[attributed["rid"].duplicated(), "device"]))
        attributed = attributed.sort_values(["rid", "valid_from"]).drop_duplicates("rid")
    orphans = rows[~rows["rid"].isin(attributed["rid"])].drop(columns=["rid"])
    attributed = attributed.sort_values("rid").drop(columns=["valid_from", "valid_to"]).reset_index(drop=True)
    return attributed, orphans, overlaps


def attribute_staff(attributed: pd.DataFrame, roster: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(attributed rows with staff_id and staff_name of whoever was on duty, rows at a window with nobody on duty).

    ``attributed`` must carry ``rid`` (from :func:`attribute`). Overlapping roster entries
    (rejected when a registry is loaded): the earliest entry counts.
    """
    if not len(roster):
        return attributed.iloc[0:0].assign(staff_id="", staff_name=""), attributed
    joined = attributed.merge(roster[["window_id", "staff_id", "staff_name", "valid_from", "valid_to"]],
                              on="window_id", how="left")
    hit = joined["staff_id"].notna() & (joined["valid_from"] <= joined["at"]) & (joined["at"] < joined["valid_to"])
    on_duty = joined[hit].sort_values(["rid", "valid_from"]).drop_duplicates("rid")
    nobody = attributed[~attributed["rid"].isin(on_duty["rid"])]
    return on_duty.drop(columns=["valid_from", "valid_to"]), nobody


def locate_all(place_frame: pd.DataFrame, votes) -> list[dict | None]:
    """The place (window_id, hall_id, township_code, county_code) of each (device, time), or None:
    :func:`attribute` on one row per vote."""
    votes = list(votes)
    if not votes:
        return []
    rows = pd.DataFrame({"device": [d for d, _ in votes],
                         "at": pd.Series([utc(t) for _, t in votes], dtype="datetime64[us, UTC]"),
                         "rating": "", "count": 1, "excluded": 0})
    attributed, _, _ = attribute(rows, place_frame)
    found = {rid: place for rid, *place in attributed[["rid", *PLACE_COLUMNS]].itertuples(index=False)}
    return [dict(zip(PLACE_COLUMNS, found[i])) if i in found else None for i in range(len(votes))]


def locate_one(place_frame: pd.DataFrame, device: str, at) -> dict | None:
    """The place of one vote, or None."""
    return locate_all(place_frame, [(device, at)])[0]


def devices_in(place_frame: pd.DataFrame, column: str, codes) -> list[str]:
    """Terminals that ever stood in one of ``codes`` of ``column`` (e.g. county_code)."""
    return sorted(set(place_frame.loc[place_frame[column].isin(set(codes)), "device"]))
