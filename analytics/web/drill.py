"""Drill-down: city → county → township → hall → window → terminal.

Every level shows the daily trend, the distribution of the three ratings, the hour ×
weekday heat map, a comparison with its peers (the units beside it) and, where the
registry has a roster, the votes attributed to each staff member on duty.
Votes are attributed to units where the terminal stood at the time of the press (the one
attribution, analytics.model.attribution), so a terminal moved between windows counts at
each window for its own period.
County staff see only their county (other counties are not shown as peers either).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for

from analytics.output import drill_charts as charts
from analytics.model.rates import satisfaction_rate
from analytics.appeals import excluded_votes
from analytics.votes import attributed_counts
from manyi.periods import local_midnight, to_local

from .auth import check_county, current_user, login_required, visible_counties
from .context import get_clock, get_db, get_registry, get_store
from .tables import cn_time, pct

bp = Blueprint("drill", __name__)
bp.add_app_template_filter(cn_time, "cn_time")
bp.add_app_template_filter(pct, "pct")

LEVELS = ("city", "county", "township", "hall", "window", "terminal")
LEVEL_LABELS = {"city": "全市", "county": "县区", "township": "乡镇（街道）", "hall": "大厅", "window": "窗口",
                "terminal": "终端"}
CHILD = {"city": "county", "county": "township", "township": "hall", "hall": "window", "window": "terminal"}
CITY_CODE = "heze"
STAFF_LEVELS = ("township", "hall", "window", "terminal")


# --- the registry as a tree ---------------------------------------------------------------

def unit_info(reg, level: str, code: str) -> dict:
    """Name, county and parent of a unit; 404 when the registry does not know it."""
    try:
        if level == "city":
            return {"name": "菏泽市", "county": None, "parent": None}
        if level == "county":
            return {"name": reg.counties[code].name, "county": code, "parent": ("city", CITY_CODE)}
        if level == "township":
            town = reg.townships[code]
            return {"name": town.name, "county": town.county_code, "parent": ("county", town.county_code)}
        if level == "hall":
            hall = reg.halls[code]
            parent = ("township", hall.township_code) if hall.township_code else ("county", hall.county_code)
            return {"name": hall.name, "county": hall.county_code, "parent": parent}
        if level == "window":
            win = reg.windows[code]
            hall = reg.halls[win.hall_id]
            return {"name": f"{hall.name} {win.name}", "county": hall.county_code, "parent": ("hall", hall.id)}
        if level == "terminal":
            history = reg.assignments_of(code) if hasattr(reg, "assignments_of") else \
                [a for a in reg.assignments if a.device == code]
            if not history:
                raise KeyError(code)
            loc = reg.current_location(code) or reg.location_of_window(history[-1].window_id)
            return {"name": code, "county": loc.county_code, "parent": ("window", loc.window_id),
                    "hall": loc.hall_id}
    except KeyError:
        pass
    abort(404, description=f"{LEVEL_LABELS.get(level, level)} {code} 不存在")


def breadcrumbs(reg, level: str, code: str) -> list[dict]:
    """From the city down to the unit: [{level, code, name}]."""
    out = []
    current = (level, code)
    while current is not None:
        info = unit_info(reg, *current)
        out.append({"level": current[0], "code": current[1], "name": info["name"]})
        current = info["parent"]
    return out[::-1]


def _windows_in(reg, level: str, code: str) -> set[str]:
    if level == "city":
        return set(reg.windows)
    if level == "window":
        return {code}
    halls = {h.id for h in reg.halls.values()
             if (level == "county" and h.county_code == code) or (level == "township" and h.township_code == code)
             or (level == "hall" and h.id == code)}
    return {w.id for w in reg.windows.values() if w.hall_id in halls}


def _devices_in(reg, level: str, code: str) -> list[str] | None:
    """Devices ever assigned inside the unit (None = all, for the city)."""
    if level == "city":
        return None
    if level == "terminal":
        return [code]
    windows = _windows_in(reg, level, code)
    return sorted({a.device for a in reg.assignments if a.window_id in windows})


def _child_name(reg, level: str, code: str) -> str:
    try:
        return unit_info(reg, level, code)["name"]
    except Exception:  # noqa: BLE001 - abort() raised for an unknown child: show its code
        return code


# --- data of one page -----------------------------------------------------------------------

def period(args, today: date) -> tuple[date, date]:
    """[start, end) days from ?days=N (default 30, ending today) or ?from=&to= (inclusive)."""
    try:
        if args.get("from") or args.get("to"):
            start = date.fromisoformat(args.get("from") or args.get("to"))
            end = date.fromisoformat(args.get("to") or args.get("from")) + timedelta(days=1)
        else:
            days = int(args.get("days", 30))
            if not 1 <= days <= 366:
                raise ValueError
            start, end = today - timedelta(days=days - 1), today + timedelta(days=1)
    except ValueError:
        abort(400, description="时间范围无效：days 应为 1–366，或 from/to 为 YYYY-MM-DD")
    if end <= start or (end - start).days > 366:
        abort(400, description="时间范围无效：截止日期应不早于起始日期，且不超过一年")
    return start, end


COLUMN = {"staff": "staff", "city": "county_code", "county": "county_code", "township": "township_code", "hall": "hall_id",
          "window": "window_id", "terminal": "device"}


def _rows(frame):
    """Attributed count rows as records with ``bucket``, ``rating`` and ``count`` (what the chart helpers read)."""
    return list(frame.rename(columns={"at": "bucket"}).itertuples(index=False))


def _in_unit(frame, level: str, code: str, visible: set[str] | None):
    """The attributed rows of the unit (the city: of the counties the user may see)."""
    if level == "city":
        return frame if visible is None else frame[frame["county_code"].isin(visible)]
    return frame[frame[COLUMN[level]] == code]


def _group(frame, level: str) -> dict[str, dict[str, int]]:
    """Votes by unit code at ``level`` and rating (rows without a unit at that level are left out)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {r: 0 for r in charts.RATINGS})
    frame = frame[frame[COLUMN[level]] != ""]
    for (code, rating), n in frame.groupby([COLUMN[level], "rating"])["count"].sum().items():
        if rating in charts.RATINGS:
            out[code][rating] += int(n)
    return out


def _summary(code: str, name: str, counts: dict, level: str) -> dict:
    n = sum(counts.values())
    return {"level": level, "code": code, "name": name, "n": n, **counts, "rate": satisfaction_rate(counts)}


def drill_data(store, reg, level: str, code: str, start: date, end: date, visible: set[str] | None) -> dict:
    """Everything one drill-down page shows, as plain data (the API returns it as JSON)."""
    info = unit_info(reg, level, code)
    t0, t1 = local_midnight(start), local_midnight(end)
    # Peers are the units under the same parent, so read the parent's terminals once. Which
    # unit a vote belongs to is decided per vote by where its terminal stood then (the one
    # attribution), so a moved terminal counts at each place for its own time there.
    parent = info["parent"]
    # A township usually has one hall: a hall is compared with the halls of its county.
    if level == "hall" and info["county"]:
        parent = ("county", info["county"])
    scope = parent if parent is not None else (level, code)
    scope_devices = _devices_in(reg, *scope)
    appealed = excluded_votes(get_db(), t0, t1)          # 不予采纳: counted as excluded, not scored
    day = attributed_counts(store, reg, t0, t1, grain="day", devices=scope_devices, exclusions=appealed).rows
    unit = _in_unit(day, level, code, visible)
    unit_counts = charts.totals(_rows(unit))
    daily = charts.daily_counts(_rows(unit), start, end)

    # Peers: the siblings of the unit (county users only see their own county).
    peers = []
    if parent is not None:
        for peer_code, counts in _group(day, level).items():
            if level == "county" and visible is not None and peer_code not in visible:
                continue
            peers.append(_summary(peer_code, _child_name(reg, level, peer_code), counts, level))
        if code not in {p["code"] for p in peers}:
            peers.append(_summary(code, info["name"], {r: 0 for r in charts.RATINGS}, level))
        peers.sort(key=lambda p: (p["rate"] is None, -(p["rate"] or 0)))
        if len(peers) < 2:
            peers = []                     # a unit alone among its peers is not compared with itself

    # Children: the units one level down, with their figures.
    children = []
    child_level = CHILD.get(level)
    if child_level:
        by_child = {lvl: _group(unit, lvl) for lvl in {child_level, "hall"}}
        for child_code in _child_codes(reg, level, code):
            if level == "city" and visible is not None and child_code not in visible:
                continue
            lvl = _child_level(reg, level, child_code)
            counts = by_child.get(lvl, by_child[child_level]).get(child_code, {r: 0 for r in charts.RATINGS})
            children.append(_summary(child_code, _child_name(reg, lvl, child_code), counts, lvl))

    # Hour × weekday and staff: hour buckets of the unit's own terminals.
    staff_level = level in STAFF_LEVELS
    hourly = attributed_counts(store, reg, t0, t1, grain="hour", devices=_devices_in(reg, level, code),
                               staff=staff_level, exclusions=appealed)
    cells = charts.hour_weekday_counts(_rows(_in_unit(hourly.rows, level, code, visible)))
    staff_rows = []
    if staff_level and hourly.staffed is not None and len(hourly.staffed):
        on_duty = _in_unit(hourly.staffed, level, code, visible)
        names = dict(zip(on_duty["staff_id"], on_duty["staff_name"]))
        for staff_id, counts in _group(on_duty.assign(staff=on_duty["staff_id"]), "staff").items():
            staff_rows.append({"staff_id": staff_id, "name": names[staff_id], **counts,
                               "n": sum(counts.values()), "rate": satisfaction_rate(counts)})
    staff_rows.sort(key=lambda s: -s["n"])

    return {
        "level": level, "level_label": LEVEL_LABELS[level], "code": code, "name": info["name"],
        "county_code": info["county"], "start": start.isoformat(), "end": (end - timedelta(days=1)).isoformat(),
        "breadcrumbs": breadcrumbs(reg, level, code),
        "totals": {**unit_counts, "n": sum(unit_counts.values()), "rate": satisfaction_rate(unit_counts)},
        "daily": [{"day": d.isoformat(), **c} for d, c in sorted(daily.items())],
        "heat": [{"weekday": wd, "hour": h, **c} for (wd, h), c in sorted(cells.items())],
        "peers": peers, "children": children, "child_level": child_level, "staff": staff_rows,
    }


def _child_level(reg, level: str, child_code: str) -> str:
    if level == "county" and child_code in reg.halls:
        return "hall"                      # a county-level hall sits directly under its county
    return CHILD[level]


def _child_codes(reg, level: str, code: str) -> list[str]:
    if level == "city":
        return list(reg.counties)
    if level == "county":
        towns = [t.code for t in reg.townships.values() if t.county_code == code]
        county_halls = [h.id for h in reg.halls.values() if h.county_code == code and not h.township_code]
        return towns + county_halls
    if level == "township":
        return [h.id for h in reg.halls.values() if h.township_code == code]
    if level == "hall":
        return [w.id for w in reg.windows.values() if w.hall_id == code]
    if level == "window":
        return sorted({a.device for a in reg.assignments if a.window_id == code})
    return []


def figures(data: dict) -> dict[str, str]:
    """The page's plotly figures as JSON strings (drawn by static/drill.js)."""
    daily = {date.fromisoformat(d["day"]): {r: d[r] for r in charts.RATINGS} for d in data["daily"]}
    cells = {(c["weekday"], c["hour"]): {r: c[r] for r in charts.RATINGS} for c in data["heat"]}
    out = {"trend": charts.trend_figure(daily), "distribution": charts.distribution_figure(data["totals"]),
           "heat": charts.heatmap_figure(cells)}
    if data["peers"]:
        out["peers"] = charts.peers_figure(data["peers"], highlight=data["code"])
    return {name: fig.to_json() for name, fig in out.items()}


# --- routes ---------------------------------------------------------------------------------

def _load(level: str, code: str) -> dict:
    if level not in LEVELS:
        abort(404, description=f"未知层级 {level}")
    reg = get_registry()
    info = unit_info(reg, level, code)
    if level != "city":
        check_county(info["county"])
    start, end = period(request.args, to_local(get_clock().now()).date())
    return drill_data(get_store(), reg, level, code, start, end, visible_counties())


@bp.route("/drill")
@login_required
def city():
    """The city page; county staff go straight to their county."""
    user = current_user()
    if user.role == "county":
        # Only the period parameters are carried over (url_for's own _external/_scheme and level/code are not).
        keep = {k: v for k, v in request.args.items() if k in ("days", "from", "to")}
        return redirect(url_for("drill.unit", level="county", code=user.county_code, **keep))
    data = _load("city", CITY_CODE)
    return render_template("drill/unit.html", data=data, figures=figures(data), args=request.args)


@bp.route("/drill/<level>/<code>")
@login_required
def unit(level: str, code: str):
    """One unit's page: figures, children, peers, staff."""
    data = _load(level, code)
    return render_template("drill/unit.html", data=data, figures=figures(data), args=request.args)


@bp.route("/api/v1/drill")
@login_required
def api_city():
    """The city level as JSON (county staff: only their county is included)."""
    return jsonify(_load("city", CITY_CODE))


@bp.route("/api/v1/drill/<level>/<code>")
@login_required
def api_unit(level: str, code: str):
    """One unit as JSON: totals, daily, heat (weekday 0=Monday × hour), peers, children, staff."""
    return jsonify(_load(level, code))


_PERIOD_PARAMS = [{"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 366}},
                  {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                  {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}}]
OPENAPI_PATHS = {
    "/api/v1/drill": {"get": {"summary": "全市逐级查看数据", "tags": ["drill"], "parameters": _PERIOD_PARAMS,
                              "responses": {"200": {"description": "drill data"}}}},
    "/api/v1/drill/{level}/{code}": {"get": {
        "summary": "某一单位（县区/乡镇/大厅/窗口/终端）的趋势、分布、时段热力、同级比较与人员归属", "tags": ["drill"],
        "parameters": [{"name": "level", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": list(LEVELS[1:])}},
                       {"name": "code", "in": "path", "required": True, "schema": {"type": "string"}},
                       *_PERIOD_PARAMS],
        "responses": {"200": {"description": "drill data"}, "403": {"description": "其他县区"},
                      "404": {"description": "不存在"}}}},
}
