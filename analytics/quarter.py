"""The quarterly computation: gather the inputs, run the model, publish and reload results.

:func:`compute_quarter` reads only aggregated counts from the vote store (never raw
votes, except the handful of one terminal's votes in the hour in which that terminal
was moved to another window), joins them to the registry's assignment history in
pandas, adds the 12333 survey answers and the base scores from the center database,
and runs the pure model (:mod:`analytics.model`).

Bucket choice (docs/model.md): the store is asked for **day** buckets (≈ 500 terminals
× 92 days × 3 ratings ≈ 140 k rows at most, however many votes) for every terminal
whose assignment does not change inside the quarter, and for **hour** buckets only for
the few terminals that were moved during the quarter. A vote belongs to the window its
terminal was assigned to at the time of the press: a day bucket of an unmoved terminal
lies wholly inside one assignment, an hour bucket of a moved terminal is attributed by
its start, and an hour that contains a move not on the hour is replaced by that
terminal's raw votes of that hour, so attribution is exact.

Staff (人员): when the registry has a duty roster, every attributed count row is also
attributed to the staff member on duty at its window at the row's time (a merge on the
window and an interval filter, like the assignment join). A window whose roster changes
inside the quarter at a time that is not China midnight (intraday shifts) has its
terminals read in hour buckets, like moved terminals; a shift that changes inside an hour
is attributed at the hour (the hour's votes go to whoever was on duty at its start).
Votes at a window with nobody on duty are counted as 未排班 in a note, not attributed.

Published results live in the center database (tables ``quarter_results``,
``quarter_tables``, ``quarter_inputs``) with their parameters, per-unit input counts,
computation time, software version and whether the inputs were sample data (the
generated registry and simulated votes: ``QuarterResult.sample``, shown as 模拟数据 in
every report). Publishing the same figures twice returns the first id, also when two
processes publish them at the same moment; a parameter change publishes a new result and
the old one stays.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from manyi import __version__
from manyi.exc import ManyiError
from manyi.periods import Quarter

from .appeals import excluded_votes
from .center import CenterDB, results
from .model.attribution import roster_frame, utc as _utc
from .model.rates import counts_by
from .votes import attributed_counts
from .imports.scores import base_scores
from .imports.survey import survey_counts
from .model import REPORTED_COLUMNS, Params, evaluate, score_reported, triangulate

RATING_COLUMNS = {"satisfied": "S", "basic": "B", "unsatisfied": "U"}
# Survey answers may arrive as protocol ratings or as the Chinese five-level labels.
SURVEY_RATINGS = {
    "satisfied": "S", "basic": "B", "unsatisfied": "U",
    "非常满意": "S", "满意": "S", "基本满意": "B", "不满意": "U", "非常不满意": "U",
}
TABLES = ("counties", "townships", "halls", "windows", "triangulation")
# The staff table (人员) is stored and fingerprinted only when it has rows, so a result
# without a roster keeps the fingerprint and the stored tables it had before staff existed.
STAFF_TABLE = "staff"
STAFF_IDS = ["staff_id", "name", "windows", "window_id", "hall_id", "hall_name", "township_code", "county_code"]
STAFF_COLUMNS = STAFF_IDS + REPORTED_COLUMNS
UNSTAFFED = "未排班"

class ResultNotFound(ManyiError, LookupError):
    """No published quarterly result with that id."""


@dataclass
class QuarterResult:
    """A quarter's figures: scored counties and townships, reported halls, windows and staff, triangulation."""

    quarter: Quarter
    params: Params
    counties: pd.DataFrame
    townships: pd.DataFrame
    halls: pd.DataFrame
    windows: pd.DataFrame
    triangulation: pd.DataFrame
    notes: list[str]
    computed_at: datetime
    version: str
    input_counts: dict
    mu_T: float = math.nan
    mu_P: float = math.nan
    lam: float = 0.0         # the λ actually used
    y_ref: float = math.nan
    result_id: int | None = None
    published_at: datetime | None = None
    extra: dict = field(default_factory=dict)
    sample: bool = False     # computed on sample data (Registry.sample): every report says 模拟数据
    staff: pd.DataFrame = field(default_factory=lambda: empty_staff())  # 人员: empty without a roster
    # the votes 不予采纳 by accepted appeals that the computation left out (appeal_id, device, seq, rating, time);
    # a published result keeps them (quarter_exclusions), so it stays reproducible
    exclusions: list = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by name: the five unit tables, plus ``staff`` when it has rows."""
        out = {name: getattr(self, name) for name in TABLES}
        if len(self.staff):
            out[STAFF_TABLE] = self.staff
        return out

    def fingerprint(self) -> str:
        """sha256 over the exact figures of every table and the city-level numbers."""
        digest = hashlib.sha256()
        for name, frame in self.tables().items():
            digest.update(name.encode())
            digest.update(_frame_to_json(frame).encode())
        digest.update(json.dumps([_num(self.mu_T), _num(self.mu_P), self.lam, _num(self.y_ref)]).encode())
        return digest.hexdigest()


# --- gathering the inputs -----------------------------------------------------------------

def empty_staff() -> pd.DataFrame:
    """The staff table of a result without a roster: no rows, the staff table's columns."""
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in STAFF_IDS})
    for column in REPORTED_COLUMNS:
        frame[column] = pd.Series(dtype="str" if column == "flags" else
                                  "float64" if column in ("x_T", "rate_T", "ci_low", "ci_high") else "int64")
    return frame


def _wide(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """Count rows summed per ``key``: key, S_T, B_T, U_T, excluded_T."""
    unknown = ~rows["rating"].isin(list(RATING_COLUMNS))
    if unknown.any():
        raise ManyiError(f"vote store returned unknown ratings {sorted(set(rows.loc[unknown, 'rating']))}")
    return counts_by(rows, key).rename(columns={**{r: c + "_T" for r, c in RATING_COLUMNS.items()},
                                                "excluded": "excluded_T"})


def _shown(items: list[str]) -> str:
    return "、".join(items[:10]) + (" 等" if len(items) > 10 else "")


def gather_votes(store, registry, quarter: Quarter, exclusions=()) -> tuple[pd.DataFrame, dict, list[str], pd.DataFrame]:
    """Vote counts of the quarter through the one attribution (analytics.votes): (per window
    window_id, S_T, B_T, U_T, excluded_T; input counts; notes; per staff member on duty).
    ``exclusions``: the 不予采纳 votes of accepted appeals (counted as excluded)."""
    staffed = len(getattr(registry, "roster", [])) > 0
    got = attributed_counts(store, registry, quarter.start, quarter.end, grain="total", staff=staffed,
                            exclusions=exclusions)
    rows, attributed, notes = pd.concat([got.rows, got.orphans], ignore_index=True), got.rows, []
    if got.overlaps:
        notes.append(f"终端 {'、'.join(got.overlaps[:10])} 的窗口分配时段重叠：重叠时段的票只计入最早的分配。")
    unregistered = int(got.orphans["count"].sum() + got.orphans["excluded"].sum())
    if unregistered:
        devices = sorted(set(got.orphans["device"]))
        notes.append(f"{unregistered} 票来自当时未登记到窗口的终端（{len(devices)} 台：{_shown(devices)}），未计入任何单位。")
    wide = _wide(attributed, "window_id")
    per_staff = pd.DataFrame(columns=["staff_id", "S_T", "B_T", "U_T", "excluded_T"])
    unstaffed_votes = 0
    if staffed:
        per_staff = _wide(got.staffed, "staff_id") if len(got.staffed) else per_staff
        nobody = got.unstaffed
        unstaffed_votes = int(nobody["count"].sum() + nobody["excluded"].sum())
        if unstaffed_votes:
            windows = sorted(set(nobody.loc[(nobody["count"] + nobody["excluded"]) > 0, "window_id"]))
            notes.append(f"{unstaffed_votes} 票投票时所在窗口无人排班（{UNSTAFFED}，{len(windows)} 个窗口：{_shown(windows)}），"
                         "计入窗口及以上单位，未计入任何人员。")
    totals = callable(getattr(store, "totals", None))
    info = {
        "votes": int(rows["count"].sum()),
        "excluded": int(rows["excluded"].sum()),
        "unregistered_votes": unregistered,
        "count_rows": got.info["count_rows"],
        "moved_terminals": got.info["moved_terminals"],
        "raw_votes_read": got.info["raw_votes_read"],
        "buckets": ("按季度合计（季度内移动过的终端按小时，移动所在小时逐票）" if totals
                    else "按日（季度内移动过的终端按小时，移动所在小时逐票）"),
    }
    if got.info["appealed_votes"]:
        appeals = sorted({v["appeal_id"] for v in exclusions})
        info["appealed_votes"] = got.info["appealed_votes"]
        notes.append(f"{got.info['appealed_votes']} 票经申诉复核不予采纳（申诉 {_shown([f'#{a}' for a in appeals])}），"
                     "计入排除票，不参与评分。")
    if staffed:
        info.update(shift_terminals=got.info["shift_terminals"], unstaffed_votes=unstaffed_votes)
        info["buckets"] = (("按季度合计（换班窗口的终端按日；" if totals else "按日（")
                           + "季度内移动过的终端及有日内换班窗口的终端按小时，移动所在小时逐票；换班按整点归属）")
    return wide, info, notes, per_staff


def staff_frame(registry, quarter: Quarter, per_staff: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Staff on the roster during the quarter with their counts and their main window's units.

    ``windows`` is the registry's window frame (window_id, name, hall_id, hall_name,
    township_code, county_code). A staff member's main window is the one they were on
    duty at longest inside the quarter (ties: the smaller window id); their name is the
    one of their latest roster entry; ``windows`` lists every window they sat at.
    """
    roster = roster_frame(registry)
    s_utc, e_utc = _utc(quarter.start), _utc(quarter.end)
    roster = roster[(roster["valid_from"] < e_utc) & (roster["valid_to"] > s_utc)]
    if not len(roster):
        return pd.DataFrame(columns=STAFF_IDS + ["S_T", "B_T", "U_T", "excluded_T"])
    roster = roster.assign(duty=roster["valid_to"].clip(upper=e_utc) - roster["valid_from"].clip(lower=s_utc))
    duty = roster.groupby(["staff_id", "window_id"], as_index=False)["duty"].sum()
    main = duty.sort_values(["staff_id", "duty", "window_id"], ascending=[True, False, True])
    main = main.drop_duplicates("staff_id")
    sat: dict[str, list[str]] = {}
    ordered = duty.sort_values(["staff_id", "window_id"])
    for staff_id, window_id in zip(ordered["staff_id"].tolist(), ordered["window_id"].tolist()):
        sat.setdefault(staff_id, []).append(window_id)
    listed = {staff_id: ", ".join(windows) for staff_id, windows in sat.items()}
    names = roster.sort_values(["staff_id", "valid_from"]).drop_duplicates("staff_id", keep="last")
    frame = main[["staff_id", "window_id"]].merge(names[["staff_id", "staff_name"]], on="staff_id")
    frame = frame.rename(columns={"staff_name": "name"}).assign(windows=frame["staff_id"].map(listed))
    units = windows[["window_id", "hall_id", "hall_name", "township_code", "county_code"]]
    frame = frame.merge(units, on="window_id", how="left")
    frame = _attach(frame, per_staff, "staff_id", ["S_T", "B_T", "U_T", "excluded_T"])
    for column in STAFF_IDS:
        frame[column] = frame[column].fillna("").astype("str")
    return frame[STAFF_IDS + ["S_T", "B_T", "U_T", "excluded_T"]].sort_values("staff_id", ignore_index=True)


def registry_frames(registry) -> dict[str, pd.DataFrame]:
    """The registry's units as frames: counties, townships, halls, windows (with their parents' codes)."""
    counties = pd.DataFrame([(c.code, c.name, c.kind) for c in registry.counties.values()],
                            columns=["code", "name", "kind"], dtype="str")
    townships = pd.DataFrame([(t.code, t.name, t.county_code) for t in registry.townships.values()],
                             columns=["code", "name", "county_code"], dtype="str")
    county_of = dict(zip(townships["code"], townships["county_code"]))
    # A county-level hall (政务服务中心) has no township: it counts for its county only.
    hall_county = {h.id: (getattr(h, "county_code", "") or county_of.get(h.township_code, ""))
                   for h in registry.halls.values()}
    halls = pd.DataFrame([(h.id, h.name, h.township_code or "", hall_county[h.id]) for h in registry.halls.values()],
                         columns=["hall_id", "name", "township_code", "county_code"], dtype="str")
    hall_of = {h.id: h for h in registry.halls.values()}
    windows = pd.DataFrame(
        [(w.id, w.name, w.hall_id, hall_of[w.hall_id].name if w.hall_id in hall_of else "",
          (hall_of[w.hall_id].township_code or "") if w.hall_id in hall_of else "", hall_county.get(w.hall_id, ""))
         for w in registry.windows.values()],
        columns=["window_id", "name", "hall_id", "hall_name", "township_code", "county_code"], dtype="str")
    return {"counties": counties.sort_values("code", ignore_index=True),
            "townships": townships.sort_values("code", ignore_index=True),
            "halls": halls.sort_values("hall_id", ignore_index=True),
            "windows": windows.sort_values("window_id", ignore_index=True)}


def with_transactions(windows: pd.DataFrame, transactions: dict[str, int]) -> pd.DataFrame:
    """Add the quarter's transaction counts per window (and the votes they cover), when there are any."""
    if not transactions:
        return windows
    windows = windows.copy()
    windows["transactions"] = windows["window_id"].map(transactions).astype(float)
    votes = windows["S_T"] + windows["B_T"] + windows["U_T"]
    windows["tx_votes"] = votes.where(windows["transactions"].notna(), 0).astype(int)
    return windows


def phone_counts(survey: pd.DataFrame, townships: pd.DataFrame, counties: pd.DataFrame):
    """Phone answers per county and per township, plus (answers, unmatched answers, notes).

    A township-level answer counts for the township and for its county; a county-level
    answer only for the county (it says nothing about any one township).
    """
    cols = ["S_P", "B_P", "U_P"]
    empty_t = pd.DataFrame(columns=["code"] + cols)
    notes: list[str] = []
    if survey is None or len(survey) == 0:
        return empty_t, empty_t.copy(), 0, 0, notes
    frame = survey.copy()
    frame["code"] = frame["code"].astype(str)
    frame["n"] = pd.to_numeric(frame["n"]).astype("int64")
    frame["col"] = frame["rating"].astype(str).str.strip().map(SURVEY_RATINGS)
    bad = frame["col"].isna()
    if bad.any():
        raise ManyiError(f"survey counts hold unknown ratings {sorted(set(frame.loc[bad, 'rating']))}")
    frame["col"] = frame["col"] + "_P"
    county_of = dict(zip(townships["code"], townships["county_code"]))
    is_t = frame["level"] == "township"
    t_rows = frame[is_t & frame["code"].isin(county_of)]
    c_rows = frame[~is_t & frame["code"].isin(set(counties["code"]))]
    unmatched = int(frame["n"].sum() - t_rows["n"].sum() - c_rows["n"].sum())
    if unmatched:
        codes = sorted(set(frame["code"]) - set(t_rows["code"]) - set(c_rows["code"]))
        notes.append(f"{unmatched} 条电话回访答复的单位代码不在区划登记中（{'、'.join(codes[:10])}），未计入。")

    def wide(rows: pd.DataFrame) -> pd.DataFrame:
        out = rows.pivot_table(index="code", columns="col", values="n", aggfunc="sum", fill_value=0)
        out = out.reindex(columns=cols, fill_value=0).astype("int64").reset_index()
        out.columns.name = None
        return out

    town = wide(t_rows)
    both = pd.concat([c_rows, t_rows.assign(code=t_rows["code"].map(county_of))])
    return wide(both), town, int(frame["n"].sum()), unmatched, notes


def _attach(units: pd.DataFrame, counts: pd.DataFrame, key: str, columns) -> pd.DataFrame:
    out = units.merge(counts, on=key, how="left") if len(counts) else units.copy()
    for column in columns:
        if column not in out:
            out[column] = 0
        out[column] = out[column].fillna(0).astype("int64")
    return out


def compute_quarter(store, registry, db: CenterDB | None, quarter: Quarter | str, params: Params | None = None, *,
                    survey: pd.DataFrame | None = None, scores: pd.DataFrame | None = None,
                    now: datetime | None = None, exclusions: list | None = None) -> QuarterResult:
    """Compute a quarter from the vote store's counts, the registry, the survey and the base scores.

    ``survey`` (level, code, rating, n) and ``scores`` (level, code, score) default to the
    center database's imports (analytics.imports.survey / analytics.imports.scores); pass frames to try
    figures without importing. ``now`` is the computation time (default: the system clock).
    ``exclusions`` (the votes 不予采纳 by accepted appeals) default to the center database's.
    """
    quarter = Quarter.parse(quarter) if isinstance(quarter, str) else quarter
    params = params or Params()
    units = registry_frames(registry)
    if exclusions is None:
        exclusions = excluded_votes(db, quarter.start, quarter.end)
    per_window, info, notes, per_staff = gather_votes(store, registry, quarter, exclusions)
    t_cols = ["S_T", "B_T", "U_T", "excluded_T"]

    windows = _attach(units["windows"], per_window, "window_id", t_cols)
    windows = with_transactions(windows, registry.transactions_by_window(quarter.start.date(), quarter.end.date()))
    halls = _attach(units["halls"], windows.groupby("hall_id")[t_cols].sum().reset_index(), "hall_id", t_cols)
    if "transactions" in windows:
        tx = windows.groupby("hall_id").agg(transactions=("transactions", lambda v: v.sum(min_count=1)),
                                            tx_votes=("tx_votes", "sum")).reset_index()
        halls = halls.merge(tx, on="hall_id", how="left")
    town_T = halls.groupby("township_code")[t_cols].sum().reset_index().rename(columns={"township_code": "code"})
    county_T = halls.groupby("county_code")[t_cols].sum().reset_index().rename(columns={"county_code": "code"})
    lost = int(windows[t_cols[:3]].sum().sum() - county_T.loc[county_T["code"].isin(units["counties"]["code"]),
                                                               t_cols[:3]].sum().sum())
    if lost:
        notes.append(f"{lost} 票所在窗口的服务大厅未归属任何已登记乡镇/县区，未计入县区与乡镇得分。")

    if survey is None:
        survey = survey_counts(db, quarter) if db is not None else None
    county_P, town_P, answers, unmatched, survey_notes = phone_counts(survey, units["townships"], units["counties"])
    notes += survey_notes

    if scores is None:
        scores = base_scores(db, quarter) if db is not None else pd.DataFrame(columns=["level", "code", "score"])
    scores = scores.copy()
    scores["code"] = scores["code"].astype(str)
    G = {level: dict(zip(rows["code"], pd.to_numeric(rows["score"]).astype(float)))
         for level, rows in scores.groupby("level")} if len(scores) else {}

    p_cols = ["S_P", "B_P", "U_P"]
    counties_in = _attach(_attach(units["counties"], county_T, "code", t_cols), county_P, "code", p_cols)
    counties_in["G"] = counties_in["code"].map(G.get("county", {})).astype(float)
    towns_in = _attach(_attach(units["townships"], town_T, "code", t_cols), town_P, "code", p_cols)
    towns_in["G"] = towns_in["code"].map(G.get("township", {})).astype(float)

    info.update(survey_answers=answers, survey_unmatched=unmatched,
                base_scores=int(len(scores)), terminals=len(set(a.device for a in registry.assignments)))
    staff = staff_frame(registry, quarter, per_staff, units["windows"])
    computed_at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    result = _run_model(quarter, params, counties_in, towns_in, halls, windows, notes, info, computed_at, __version__,
                        sample=bool(getattr(registry, "sample", False)), staff=staff)
    result.exclusions = list(exclusions)
    return result


def _run_model(quarter, params, counties_in, towns_in, halls, windows, notes, info, computed_at, version, *,
               sample=False, staff=None):
    out = evaluate(counties_in.drop(columns=["kind"], errors="ignore"), towns_in, params)
    counties = out.counties
    if "kind" in counties_in:
        counties.insert(2, "kind", counties_in["kind"].to_numpy())
    return QuarterResult(
        quarter=quarter, params=params, counties=counties, townships=out.townships,
        halls=score_reported(halls, params), windows=score_reported(windows, params),
        triangulation=triangulate(counties_in, params), notes=list(notes) + out.notes,
        computed_at=computed_at, version=version, input_counts=info,
        mu_T=out.mu_T, mu_P=out.mu_P, lam=out.lam, y_ref=out.y_ref, sample=sample,
        staff=score_reported(staff, params) if staff is not None and len(staff) else empty_staff(),
    )


# --- publishing ---------------------------------------------------------------------------

def _num(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _frame_to_json(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    data = [[None if pd.isna(v) else (bool(v) if isinstance(v, (bool, np.bool_)) else v) for v in frame[c].tolist()]
            for c in columns]
    return json.dumps({"columns": columns, "dtypes": [str(frame[c].dtype) for c in columns], "data": data},
                      ensure_ascii=False, allow_nan=False)


def _frame_from_json(text: str) -> pd.DataFrame:
    spec = json.loads(text)
    series = {c: pd.Series(values, dtype=dtype) for c, dtype, values in zip(spec["columns"], spec["dtypes"], spec["data"])}
    return pd.DataFrame(series, columns=spec["columns"])


def _params_json(params: Params) -> str:
    return json.dumps(params.to_dict(), sort_keys=True)


def publish(db: CenterDB, result: QuarterResult, *, now: datetime | None = None) -> int:
    """Store ``result``; return its id. The same quarter, parameters and figures again: the existing id.

    The look-up of an identical result and the insert are one write transaction (BEGIN
    IMMEDIATE), so two processes publishing the same figures at once get the same id.
    """
    params = _params_json(result.params)
    fingerprint = result.fingerprint()
    published_at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    summary = json.dumps({"mu_T": _num(result.mu_T), "mu_P": _num(result.mu_P), "lam": result.lam,
                          "y_ref": _num(result.y_ref), "notes": result.notes, "input_counts": result.input_counts,
                          "sample": bool(result.sample)},
                         ensure_ascii=False, sort_keys=True)
    inputs = [(level, r.code, int(r.S_T), int(r.B_T), int(r.U_T), int(r.excluded_T),
               int(r.S_P), int(r.B_P), int(r.U_P), None if pd.isna(r.G) else float(r.G))
              for level, frame in (("county", result.counties), ("township", result.townships))
              for r in frame.itertuples(index=False)]
    result_id, stamp = results.insert_result(
        db, quarter=str(result.quarter), params=params, fingerprint=fingerprint,
        computed_at=result.computed_at.isoformat(), published_at=published_at.isoformat(), version=result.version,
        summary=summary, tables={name: _frame_to_json(frame) for name, frame in result.tables().items()},
        inputs=inputs, exclusions=result.exclusions)
    result.result_id = result_id
    result.published_at = datetime.fromisoformat(stamp)
    return result_id


def published(db: CenterDB, quarter: Quarter | str | None = None) -> list[dict]:
    """Published results (newest first), optionally of one quarter: id, quarter, params, computed_at, ..."""
    out = []
    for row in results.list_results(db, None if quarter is None else str(quarter)):
        summary = json.loads(row["summary"])
        out.append({"id": row["id"], "quarter": row["quarter"], "params": json.loads(row["params"]),
                    "fingerprint": row["fingerprint"], "computed_at": row["computed_at"],
                    "published_at": row["published_at"], "version": row["version"],
                    "notes": summary["notes"], "input_counts": summary["input_counts"],
                    "sample": bool(summary.get("sample", False))})
    return out


def load_published(db: CenterDB, result_id: int) -> QuarterResult:
    """The published result ``result_id`` exactly as it was stored; ResultNotFound otherwise."""
    row = results.result_row(db, result_id)
    if row is None:
        raise ResultNotFound(f"no published quarterly result with id {result_id}")
    summary = json.loads(row["summary"])
    tables = {name: _frame_from_json(data) for name, data in results.result_tables(db, row["id"]).items()}
    # Results published before staff existed (or without a roster) have no staff table.
    tables.setdefault(STAFF_TABLE, empty_staff())
    nan = lambda v: math.nan if v is None else v  # noqa: E731
    return QuarterResult(
        quarter=Quarter.parse(row["quarter"]), params=Params.from_dict(json.loads(row["params"])),
        notes=summary["notes"], computed_at=datetime.fromisoformat(row["computed_at"]), version=row["version"],
        input_counts=summary["input_counts"], mu_T=nan(summary["mu_T"]), mu_P=nan(summary["mu_P"]),
        lam=summary["lam"], y_ref=nan(summary["y_ref"]), result_id=row["id"],
        published_at=datetime.fromisoformat(row["published_at"]),
        sample=bool(summary.get("sample", False)),  # results published before the flag existed: False
        exclusions=results.result_exclusions(db, row["id"]), **tables)


def recompute_published(db: CenterDB, result_id: int, params: Params | None = None) -> QuarterResult:
    """Re-run the model on a published result's stored inputs (and its parameters unless given)."""
    stored = load_published(db, result_id)
    params = params or stored.params
    inputs = pd.DataFrame(results.result_inputs(db, result_id))
    def units(level: str, frame: pd.DataFrame, ids) -> pd.DataFrame:
        own = inputs[inputs["level"] == level].drop(columns=["level"])
        return frame[ids].merge(own, on="code", how="left")
    counties_in = units("county", stored.counties, ["code", "name", "kind"] if "kind" in stored.counties else ["code", "name"])
    towns_in = units("township", stored.townships, ["code", "name", "county_code"])
    keep = lambda f: f.drop(columns=[c for c in ("n_T", "x_T", "rate_T", "ci_low", "ci_high", "flags", "eval_rate")  # noqa: E731
                                     if c in f])
    notes = [n for n in stored.notes if "λ 取 0" not in n and "没有终端评价" not in n]
    return _run_model(stored.quarter, params, counties_in, towns_in, keep(stored.halls), keep(stored.windows),
                      notes, dict(stored.input_counts), stored.computed_at, stored.version, sample=stored.sample,
                      staff=keep(stored.staff))
