"""Live map, vote feed and stream, terminals, audit log and user administration.

Live-update design: the collector (another process) writes votes to the store; every
open page holds one Server-Sent-Events stream (/api/v1/stream) whose generator polls
``store.feed(after=cursor)`` every STREAM_POLL_SECONDS and sends each new vote the
user may see as an event whose id is the feed cursor. A stream ends after
STREAM_MAX_SECONDS (freeing its server thread); the browser's EventSource reconnects
by itself with ``Last-Event-ID`` and resumes exactly after the last vote it got.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from flask import (Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request,
                   send_file, stream_with_context, url_for)

from manyi.exc import StoreError
from manyi.periods import Quarter, day_bounds, to_local, week_bounds
from manyi.protocol import BASIC, RATING_LABELS, RATINGS, SATISFIED, UNSATISFIED

from . import auth
from analytics import accounts
from analytics.center import accounts as accounts_db

from .auth import audit, check_county, current_user, login_required, roles_required, visible_counties
from .context import county_of, get_clock, get_db, get_registry, get_store, resources

log = logging.getLogger(__name__)
bp = Blueprint("live", __name__)

PERIODS = {"today": "今日", "week": "本周", "quarter": "本季度"}
W_S, W_B, W_U = 100.0, 60.0, 0.0     # the Heze model's default weights (analytics.model.Params)
EMPTY_TOPOJSON = {"type": "Topology", "objects": {}, "arcs": []}


# --- assets served by the app (no CDN) -------------------------------------------------

def plotly_js_path() -> Path:
    """plotly.min.js as shipped inside the installed plotly package."""
    import plotly
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@bp.route("/assets/plotly.min.js")
def plotly_js():
    """plotly.js from the plotly package, so the map works with no internet."""
    return send_file(plotly_js_path(), mimetype="text/javascript", max_age=86400)


@bp.route("/favicon.ico")
def favicon():
    """The tab icon (browsers ask for /favicon.ico by themselves)."""
    return send_file(Path(__file__).parent / "static" / "favicon.svg", mimetype="image/svg+xml", max_age=86400)


@bp.route("/assets/topojson/<name>.json")
def topojson(name: str):
    """An empty base map for plotly's geo subplot: the counties' own polygons are the map."""
    return jsonify(EMPTY_TOPOJSON)


# --- results shared by concurrent requests --------------------------------------------------

class SharedResults:
    """Expensive results shared by concurrent requests (the live map, live rankings).

    An entry is fresh while its version equals the caller's and it is younger than the
    caller's ``ttl``. A stale entry is recomputed by one request at a time (single flight):
    the requests arriving meanwhile get the previous value instead of queueing behind the
    computation (at most ``grace`` seconds older than fresh), and requests with nothing to
    show yet wait for it. ``ttl`` <= 0 turns sharing off: every request computes its own.
    """

    def __init__(self, grace: float = 60.0, max_entries: int = 64):
        self.grace = grace
        self.max_entries = max_entries    # e.g. one per quarter asked for: the oldest idle ones are dropped
        self.lock = threading.Lock()
        self.entries: dict = {}       # key -> _Shared

    def get(self, key, compute, *, ttl: float, version=None):
        """The shared value of ``key``, computing it with ``compute()`` when it is missing or stale."""
        if ttl <= 0:
            return compute()
        while True:
            now = time.monotonic()
            with self.lock:
                entry = self.entries.get(key)
                if entry is None:
                    self._evict()
                    entry = self.entries[key] = _Shared()
                has_value = entry.stamp is not None
                if has_value and entry.version == version and now - entry.stamp < ttl:
                    return entry.value
                if entry.running is None:
                    entry.running = running = threading.Event()
                    break
                if has_value and now - entry.stamp < ttl + self.grace:
                    return entry.value            # someone is recomputing it: the previous value will do
                waiting = entry.running
            waiting.wait(timeout=self.grace)
        try:
            value = compute()
        except BaseException:
            with self.lock:
                entry.running = None
                if entry.stamp is None:           # e.g. a bad parameter: keep no empty entry
                    self.entries.pop(key, None)
            running.set()
            raise
        with self.lock:
            entry.value, entry.version, entry.stamp, entry.running = value, version, time.monotonic(), None
        running.set()
        return value

    def _evict(self) -> None:
        idle = [(entry.stamp, key) for key, entry in self.entries.items()
                if entry.running is None and entry.stamp is not None]
        for _, key in sorted(idle)[:max(0, len(self.entries) + 1 - self.max_entries)]:
            del self.entries[key]

    def clear(self) -> None:
        """Forget every shared result."""
        with self.lock:
            self.entries.clear()


class _Shared:
    __slots__ = ("value", "version", "stamp", "running")

    def __init__(self):
        self.value = self.version = self.stamp = self.running = None


def shared_results(name: str) -> SharedResults:
    """The app's SharedResults called ``name`` (one per kind of result)."""
    res = resources()
    registry = res.__dict__.setdefault("shared_results", {})
    with res.lock:
        return registry.setdefault(name, SharedResults())


# --- data helpers ------------------------------------------------------------------------

def period_bounds(period: str, now):
    """[start, end) of today, this week or this quarter in China time."""
    day = to_local(now).date()
    if period == "today":
        return day_bounds(day)
    if period == "week":
        return week_bounds(day)
    if period == "quarter":
        quarter = Quarter.containing(now)
        return quarter.start, quarter.end
    abort(400, description=f"period must be one of {', '.join(PERIODS)}")


def counts_frame(rows) -> pd.DataFrame:
    """Count rows as a data frame: device, rating, count, excluded."""
    frame = pd.DataFrame([(r.device, r.rating, r.count, r.excluded) for r in rows],
                         columns=["device", "rating", "count", "excluded"])
    return frame


def current_locations(registry) -> dict[str, tuple[str, str]]:
    """device -> (county_code, hall_id) of every terminal's current location, kept with the
    registry object until its assignments change (a move or a retirement)."""
    key = (len(registry.assignments), sum(1 for a in registry.assignments if a.valid_to is None),
           len(registry.windows), len(registry.halls))
    cached = registry.__dict__.get("_web_current_locations")
    if cached is None or cached[0] != key:
        mapping = {}
        for device in {a.device for a in registry.assignments}:
            location = registry.current_location(device)
            if location is not None:
                mapping[device] = (location.county_code, location.hall_id)
        cached = registry.__dict__["_web_current_locations"] = (key, mapping)
    return cached[1]


def _locations(registry, devices) -> pd.DataFrame:
    where = current_locations(registry)
    rows = [(device, *where[device]) for device in devices if device in where]
    return pd.DataFrame(rows, columns=["device", "county_code", "hall_id"])


def _scores(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per ``key``: S, B, U, n, score (weighted mean, 0–100) and rate ((S+B)/n)."""
    if frame.empty:
        return pd.DataFrame(columns=[key, SATISFIED, BASIC, UNSATISFIED, "n", "score", "rate"])
    table = frame.pivot_table(index=key, columns="rating", values="count", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=list(RATINGS), fill_value=0)
    table["n"] = table[list(RATINGS)].sum(axis=1)
    n = table["n"].where(table["n"] > 0)
    table["score"] = (W_S * table[SATISFIED] + W_B * table[BASIC] + W_U * table[UNSATISFIED]) / n
    table["rate"] = (table[SATISFIED] + table[BASIC]) / n
    return table.reset_index()


def map_data(store, registry, start, end, visible: set[str] | None, offline_devices: set[str]):
    """County and hall figures for [start, end): two data frames for the map and its table."""
    totals = getattr(store, "totals", None)
    if callable(totals):        # period sums straight from the store (SQLiteStore): one row per terminal × rating
        frame = pd.DataFrame.from_records(totals(start, end), columns=["device", "rating", "count", "excluded"])
    else:
        frame = counts_frame(store.counts(start, end, bucket="day"))
    located = frame.merge(_locations(registry, frame["device"].unique()), on="device", how="inner")
    counties = pd.DataFrame([(c.code, c.name, c.kind) for c in registry.counties.values()],
                            columns=["code", "name", "kind"])
    if visible is not None:
        counties = counties[counties["code"].isin(visible)]
        located = located[located["county_code"].isin(visible)]
    counties = counties.merge(_scores(located, "county_code").rename(columns={"county_code": "code"}),
                              on="code", how="left")
    counties["n"] = counties["n"].fillna(0).astype(int)
    for rating in RATINGS:
        counties[rating] = counties[rating].fillna(0).astype(int)
    townships = registry.townships
    hall_rows = []
    offline_halls = {registry.current_location(d).hall_id for d in offline_devices
                     if registry.current_location(d) is not None}
    for hall in registry.halls.values():
        county_code = hall.county_code or (townships[hall.township_code].county_code
                                           if hall.township_code in townships else None)
        if visible is not None and county_code not in visible:
            continue
        hall_rows.append((hall.id, hall.name, county_code, hall.lon, hall.lat, bool(hall.approximate),
                          hall.id in offline_halls))
    halls = pd.DataFrame(hall_rows, columns=["id", "name", "county_code", "lon", "lat", "approximate", "offline"])
    halls = halls.merge(_scores(located, "hall_id").rename(columns={"hall_id": "id"}), on="id", how="left")
    halls["n"] = halls["n"].fillna(0).astype(int)
    return counties.sort_values("code").reset_index(drop=True), halls


def _geojson() -> dict:
    res = resources()
    if getattr(res, "geojson", None) is None:
        path = current_app.config.get("COUNTIES_GEOJSON")
        if not path:
            from manyi.registry import COUNTIES_GEOJSON
            path = COUNTIES_GEOJSON
        res.geojson = json.loads(Path(path).read_text(encoding="utf-8"))
    return json.loads(json.dumps(res.geojson))      # a copy: chart builders may annotate it


def _params():
    from analytics.inspect import InspectParams
    config = current_app.config
    return InspectParams(silent_minutes=float(config["SILENT_MINUTES"]), offline_minutes=float(config["OFFLINE_MINUTES"]))


def _offline_devices(store, now) -> set[str]:
    from analytics.inspect import is_online
    params = _params()
    # A terminal known only from its votes (no status yet) is not marked offline on the map.
    return {s.device for s in store.terminals() if s.online is not None and not is_online(s, now, params)}


def _none_if_nan(value):
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _none_if_nan(v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def feed_item(item, registry) -> dict:
    """A feed item with its place and labels, as the ticker shows it."""
    location = registry.current_location(item.device)
    county = registry.counties.get(location.county_code) if location else None
    hall = registry.halls.get(location.hall_id) if location else None
    window = registry.windows.get(location.window_id) if location else None
    return {
        "cursor": item.cursor, "device": item.device, "seq": item.seq, "rating": item.rating,
        "rating_label": RATING_LABELS.get(item.rating, item.rating),
        "time": to_local(item.time).isoformat(timespec="seconds"),
        "received_at": to_local(item.received_at).isoformat(timespec="seconds"),
        "county_code": location.county_code if location else None,
        "county_name": county.name if county else None,
        "hall_name": hall.name if hall else None,
        "window_name": window.name if window else None,
        "flags": sorted(item.flags),
    }


def _visible_item(item, visible: set[str] | None) -> bool:
    return visible is None or county_of(item.device) in visible


# --- pages ---------------------------------------------------------------------------------

@bp.route("/")
@login_required
def index():
    """The live map page."""
    period = request.args.get("period", "today")
    if period not in PERIODS:
        period = "today"
    return render_template("live.html", period=period, periods=PERIODS)


@bp.route("/terminals")
@login_required
def terminals():
    """Terminal health and inspection flags."""
    data = terminals_data()
    problem_only = request.args.get("problems") == "1"
    rows = [r for r in data["terminals"] if not problem_only or _has_problem(r)]
    return render_template("terminals.html", rows=rows, summary=data["summary"], problem_only=problem_only,
                           params=data["params"])


def _has_problem(row: dict) -> bool:
    return (not row["online"]) or row["silent"] or bool(row["gaps"]) or bool(row["findings"]) or row["clock_ok"] is False


@bp.route("/audit")
@roles_required("auditor")
def audit_page():
    """The audit log (the audit administrator only; nobody can change it)."""
    entries = accounts_db.audit_entries(get_db(), limit=request.args.get("limit", 300, type=int),
                                 action=request.args.get("action") or None, username=request.args.get("user") or None)
    return render_template("audit.html", entries=entries, action=request.args.get("action", ""),
                           user=request.args.get("user", ""))


@bp.route("/admin/users")
@roles_required("admin", "security")
def users():
    """The accounts and API tokens (system and security administrators)."""
    return render_template("admin_users.html", users=accounts_db.list_users(get_db()), counties=get_registry().counties,
                           roles=accounts.BUSINESS_ROLES, form={})


@bp.route("/admin/users", methods=["POST"])
@roles_required("admin")
def add_user():
    """Add an account of a business role (system administrator); the three administrators'
    accounts are made on the server only (``manyi user add``)."""
    db, registry, form = get_db(), get_registry(), request.form
    try:
        if form.get("role", "") not in accounts.BUSINESS_ROLES:
            raise accounts.AuthError("管理员账户（系统、安全、审计）只能在服务器上用 manyi user add 创建")
        accounts_db.create_user(db, form.get("username", ""), form.get("password", ""), form.get("role", ""),
                         form.get("county_code") or None, registry=registry, now=get_clock().now())
    except accounts.AuthError as exc:
        flash(f"未能添加用户：{exc}", "error")
        return render_template("admin_users.html", users=accounts_db.list_users(db), counties=registry.counties,
                               roles=accounts.BUSINESS_ROLES, form=form), 400
    audit("user.add", {"username": form.get("username"), "role": form.get("role"),
                       "county_code": form.get("county_code") or None})
    flash(f"已添加用户 {form.get('username')}")
    return redirect(url_for("live.users"))


@bp.route("/admin/users/<username>/<action>", methods=["POST"])
@roles_required("admin")
def user_action(username: str, action: str):
    """Disable, enable or reset the password of an account of a business role (system administrator)."""
    db = get_db()
    try:
        if action not in ("disable", "enable", "password"):
            abort(404)
        target = accounts_db.get_user(db, username)
        if target is None:
            raise accounts.AuthError(f"用户 {username} 不存在")
        if target.role in accounts.ADMIN_ROLES:
            raise accounts.AuthError("管理员账户只能在服务器上用 manyi user 命令管理")
        if action == "disable":
            accounts_db.set_disabled(db, username, True)
        elif action == "enable":
            accounts_db.set_disabled(db, username, False)
        else:
            accounts_db.set_password(db, username, request.form.get("password", ""))
    except accounts.AuthError as exc:
        flash(f"操作失败：{exc}", "error")
        return redirect(url_for("live.users"))
    audit(f"user.{action}", {"username": username})
    flash(f"已完成：{AUDIT_ACTIONS.get('user.' + action, action)} {username}")
    return redirect(url_for("live.users"))


# --- API -----------------------------------------------------------------------------------

@bp.route("/api/v1/map")
@login_required
def api_map():
    """County and hall figures for a period, with the ready-to-draw plotly figure."""
    period = request.args.get("period", "today")
    with_figure = request.args.get("figure", "1") != "0"
    visible = visible_counties()
    # Every open map page redraws after new votes: users of the same scope share one result for a few seconds.
    # While one request recomputes an expired result, the others get the previous one.
    # The JSON text is shared, not just the figures: serialising a province's figure costs more than serving it.
    key = (period, with_figure, None if visible is None else tuple(sorted(visible)))
    body = shared_results("map").get(key, lambda: json_body(_map_payload(period, with_figure, visible)),
                                     ttl=float(current_app.config["MAP_CACHE_SECONDS"]))
    return json_response(body)


class JsonBody:
    """A JSON text ready to send, and its gzip form (made once, on first demand)."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self._gzip: bytes | None = None

    def gzipped(self) -> bytes:
        """The text compressed with gzip (level 6)."""
        if self._gzip is None:
            self._gzip = gzip.compress(self.raw, compresslevel=6, mtime=0)
        return self._gzip


def json_body(data) -> JsonBody:
    """``data`` as the app's JSON provider writes it for jsonify (same settings)."""
    return JsonBody((current_app.json.dumps(data) + "\n").encode("utf-8"))


def json_response(body: JsonBody) -> Response:
    """A JSON response from a ready-made body; gzip-compressed when the client accepts it and it is big."""
    if len(body.raw) >= 4096 and "gzip" in request.accept_encodings:
        response = Response(body.gzipped(), mimetype=current_app.json.mimetype)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(body.raw, mimetype=current_app.json.mimetype)
    response.vary.add("Accept-Encoding")
    return response


def _map_payload(period: str, with_figure: bool, visible: set[str] | None) -> dict:
    from analytics.charts import county_map
    now = get_clock().now()
    start, end = period_bounds(period, now)
    store, registry = get_store(), get_registry()
    # Offline means silent for OFFLINE_MINUTES: a status list a few map refreshes old is still right.
    offline = shared_results("offline").get("all", lambda: _offline_devices(store, now),
                                            ttl=5 * float(current_app.config["MAP_CACHE_SECONDS"]))
    counties, halls = map_data(store, registry, start, end, visible, offline)
    return dict(period=period, period_label=PERIODS[period], start=start.isoformat(), end=end.isoformat(),
                generated_at=to_local(now).isoformat(timespec="seconds"), counties=_records(counties),
                halls=_records(halls), figure=county_map(counties, _geojson(), halls) if with_figure else None)


def _sealer():
    app = current_app
    sealer = app.extensions.get("manyi_cursor_sealer")
    if sealer is None:
        from .cursors import CursorSealer
        sealer = app.extensions["manyi_cursor_sealer"] = CursorSealer(app.config["SECRET_KEY"])
    return sealer


def _visible_devices(visible: set[str] | None) -> list[str] | None:
    """The terminals the user may see (None: all), so the store reads only those."""
    if visible is None:
        return None
    return [device for device in get_registry().devices() if county_of(device) in visible]


def _open_cursor(token: str | None) -> str | None:
    """The store cursor inside a client's sealed cursor (400 for one this server did not give out)."""
    if token is None:
        return None
    try:
        return _sealer().open(token)
    except ValueError:
        abort(400, description="unknown cursor")


def _client_item(item, registry) -> dict:
    data = feed_item(item, registry)
    data["cursor"] = _sealer().seal(item.cursor)
    return data


@bp.route("/api/v1/feed")
@login_required
def api_feed():
    """Recent votes (oldest first) after an optional cursor, limited to the user's counties.

    Cursors are sealed (analytics/web/cursors.py): they reveal nothing of the votes of
    counties the user may not see."""
    try:
        limit = max(1, min(int(request.args.get("limit", 50)), 500))
    except ValueError:
        abort(400, description="limit must be an integer")
    visible, registry = visible_counties(), get_registry()
    after = _open_cursor(request.args.get("after") or None)
    try:
        items = get_store().feed(after=after, limit=limit, devices=_visible_devices(visible))
    except ValueError as exc:
        abort(400, description=str(exc))
    shown = [_client_item(i, registry) for i in items if _visible_item(i, visible)]
    cursor = _sealer().seal(items[-1].cursor) if items else request.args.get("after") or None
    return jsonify(items=shown, cursor=cursor)


@bp.route("/api/v1/stream")
@login_required
def api_stream():
    """Server-Sent Events: one ``vote`` event per new vote (id = sealed feed cursor), keep-alive comments.

    One account or token holds at most STREAM_MAX_PER_ACCOUNT streams and the server at most
    STREAM_MAX_TOTAL: a further one gets 429 with Retry-After, and threads stay free for others."""
    store, registry, visible = get_store(), get_registry(), visible_counties()
    app = current_app._get_current_object()
    poll = float(app.config["STREAM_POLL_SECONDS"])
    max_seconds = float(app.config["STREAM_MAX_SECONDS"])
    devices = _visible_devices(visible)
    token = request.headers.get("Last-Event-ID") or request.args.get("after") or None
    cursor = None
    if token is not None:
        try:
            cursor = _sealer().open(token)
            store.feed(after=cursor, limit=1, devices=devices)
        except ValueError:
            # A cursor of another store or server key: start from now rather than fail forever.
            log.warning("event stream: unknown cursor, starting from the latest vote")
            cursor = None
    if cursor is None:
        latest = store.feed(after=None, limit=1, devices=devices)
        cursor = latest[-1].cursor if latest else None
    slots, key = app.extensions["manyi_streams"], auth.principal()
    refused = slots.acquire(key)
    if refused:
        message = ("此账户打开的实时连接过多，请关闭其他页面" if refused == "account"
                   else "服务器实时连接已满，请稍后重试")
        response = jsonify(error="too_many_streams", message=message)
        response.status_code = 429
        response.headers["Retry-After"] = "10"
        return response
    stopping = resources().stopping
    released = threading.Event()

    def release():
        # Once, from whichever comes first: the generator's end or the response's close (a client
        # that goes away before the first event never starts the generator).
        if not released.is_set():
            released.set()
            slots.release(key)

    def events():
        nonlocal cursor
        try:
            yield "retry: 2000\n\n"
            started = last_sent = time.monotonic()
            with app.app_context():
                while time.monotonic() - started < max_seconds and not stopping.is_set():
                    try:
                        items = store.feed(after=cursor, limit=200, devices=devices)
                    except StoreError as exc:
                        # End this stream; the browser reconnects after `retry` and resumes at its cursor.
                        log.warning("event stream: store unavailable, ending the stream: %s", exc)
                        return
                    for item in items:
                        cursor = item.cursor
                        if _visible_item(item, visible):
                            data = _client_item(item, registry)
                            yield (f"id: {data['cursor']}\nevent: vote\n"
                                   f"data: {json.dumps(data, ensure_ascii=False)}\n\n")
                            last_sent = time.monotonic()
                    # Every 5 s: a client that went away is noticed at the next write, and its slot freed.
                    if time.monotonic() - last_sent > 5:
                        yield ": keep-alive\n\n"
                        last_sent = time.monotonic()
                    if len(items) < 200:
                        stopping.wait(poll)
        finally:
            release()

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.call_on_close(release)
    return response


def terminals_data() -> dict:
    """Rows of every terminal the user may see, with inspection findings, and a summary."""
    from analytics.inspect import find_bursts, find_count_patterns, terminal_rows
    store, registry, now = get_store(), get_registry(), get_clock().now()
    visible, params = visible_counties(), _params()
    statuses = store.terminals()
    rows = terminal_rows(statuses, store.gaps(), registry, now, params, devices=registry.devices())
    if visible is not None:
        rows = [r for r in rows if r["county_code"] in visible]
    devices = {r["device"] for r in rows}
    findings = find_count_patterns(store.counts(now - timedelta(days=14), now, bucket="day", devices=devices), params)
    findings += find_bursts(store.votes(now - timedelta(days=1), now, devices=devices), params)
    by_device: dict[str, list] = {}
    for finding in findings:
        by_device.setdefault(finding.device, []).append(finding.to_dict())
    for row in rows:
        row["findings"] = by_device.get(row["device"], [])
    summary = {
        "total": len(rows),
        "online": sum(r["online"] for r in rows),
        "offline": sum(r["known"] and not r["online"] for r in rows),
        "never_seen": sum(not r["known"] for r in rows),
        "silent": sum(r["silent"] for r in rows),
        "with_gaps": sum(bool(r["gaps"]) for r in rows),
        "flagged": sum(bool(r["findings"]) for r in rows),
    }
    return {"generated_at": to_local(now).isoformat(timespec="seconds"), "summary": summary, "terminals": rows,
            "params": {"silent_minutes": params.silent_minutes, "offline_minutes": params.offline_minutes}}


@bp.route("/api/v1/terminals")
@login_required
def api_terminals():
    """Terminal health and inspection flags as JSON."""
    county = request.args.get("county")
    data = terminals_data()
    if county:
        check_county(county)
        data["terminals"] = [r for r in data["terminals"] if r["county_code"] == county]
    return jsonify(data)


@bp.route("/api/v1/audit")
@roles_required("auditor")
def api_audit():
    """The newest audit entries (the audit administrator)."""
    return jsonify(entries=accounts_db.audit_entries(get_db(), limit=request.args.get("limit", 200, type=int),
                                              action=request.args.get("action") or None,
                                              username=request.args.get("user") or None))


@bp.route("/api/v1/me")
@login_required
def api_me():
    """Who the request is authenticated as, and what it may see."""
    user = current_user()
    visible = visible_counties()
    return jsonify(username=user.username, role=user.role, county_code=user.county_code,
                   visible_counties=None if visible is None else sorted(visible))


OPENAPI_PATHS = {}   # filled in by analytics.web.openapi (the core describes its own endpoints there)


def init_app(app) -> None:
    """Template helpers shared by every page."""
    app.jinja_env.globals.update(rating_labels=RATING_LABELS, periods=PERIODS)
    from .tables import cn_time
    app.jinja_env.filters.setdefault("cn_time", cn_time)
    app.jinja_env.filters["audit_action"] = audit_action_label
    app.jinja_env.filters["audit_detail"] = audit_detail

    @app.context_processor
    def nav():
        rules = {rule.rule for rule in app.url_map.iter_rules()}
        items = [("/", "实时地图"), ("/rankings", "排名"), ("/drill", "逐级查看"), ("/cases", "不满意督办"),
                 ("/terminals", "终端状态"), ("/alerts", "告警"), ("/imports", "导入与报表")]
        user = current_user()
        if user is not None and user.role in auth.ROLE_ENDPOINTS:
            items = []                     # the security and audit administrators see no data pages
        if user is not None and user.role in accounts.ADMIN_ROLES:
            items += [("/audit", "审计日志"), ("/admin/users", "用户管理")]
        if user is not None:
            items += [("/account", "修改密码")]
        # A link the user's role cannot open (403) is left out of the navigation.
        items = [(path, label) for path, label in items
                 if user is None or user.role in NAV_ROLES.get(path, (user.role,))]
        return {"nav_items": [(path, label) for path, label in items if path in rules], "nav_active": nav_active,
                "sample_data": _sample_data()}


# How the audit log names actions and detail keys (stored in English, shown in Chinese).
AUDIT_ACTIONS = {
    "login": "登录", "login.failed": "登录失败", "login.locked": "登录锁定", "logout": "退出",
    "user.add": "添加用户", "user.disable": "停用用户", "user.enable": "启用用户", "user.password": "重置密码",
    "user.token": "生成API令牌", "token.add": "生成API令牌", "token.revoke": "吊销API令牌",
    "account.password": "修改本人密码", "account.password_failed": "修改本人密码失败", "report.download": "下载季度报告", "rankings.export": "导出排名",
    "case.export": "导出督办件", "case.assign": "督办指派", "case.note": "督办备注", "case.callback": "督办回访",
    "case.close": "督办办结", "alert.ack": "确认告警", "settings.alert_rule": "修改告警规则",
    "settings.alert_rule.delete": "删除告警规则", "settings.followup": "修改督办设置",
    "settings.holiday.add": "添加节假日", "settings.holiday.delete": "删除节假日",
    "import.survey": "导入12333回访", "import.scores": "导入综合考核得分",
    "import.survey.failed": "导入12333回访失败", "import.scores.failed": "导入综合考核得分失败",
}
AUDIT_KEYS = {
    "username": "用户", "role": "角色", "county_code": "县区", "county": "县区", "quarter": "季度", "format": "格式",
    "result": "发布编号", "file": "文件", "case": "督办件", "rows_read": "读取", "imported": "导入", "rejected": "拒收",
    "error": "错误", "reason": "原因", "fmt": "格式", "rule": "规则", "alert": "告警", "day": "日期", "name": "名称",
    "assignee": "指派给", "text": "内容", "note": "备注", "rows": "行数", "level": "级别", "token": "令牌编号",
    "kind": "类型", "params": "参数", "enabled": "启用", "deadline_days": "办理时限（工作日）",
    "group_minutes": "合并时间窗（分钟）", "truncated": "内容（已截断）",
}
# A key whose meaning depends on the action: a case's 回访 result, a report's published result.
AUDIT_KEYS_BY_ACTION = {("case.", "result"): "回访结果"}


def audit_action_label(action: str | None) -> str:
    """Template filter: the Chinese name of an audit action, with the stored code for anything unknown."""
    return AUDIT_ACTIONS.get(action or "", action or "—")


def audit_detail(detail, action: str | None = None) -> str:
    """Template filter: an audit detail dict as ``键：值；…`` in Chinese (empty values left out)."""
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    roles = accounts.ROLE_LABELS
    parts = []
    for key, value in detail.items():
        if value is None or value == "":
            continue
        if key == "role":
            value = roles.get(value, value)
        elif key in ("county_code", "county") and value in get_registry().counties:
            value = f"{get_registry().counties[value].name}（{value}）"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        label = next((text for (prefix, name), text in AUDIT_KEYS_BY_ACTION.items()
                      if name == key and (action or "").startswith(prefix)), None)
        parts.append(f"{label or AUDIT_KEYS.get(key, key)}：{value}")
    return "；".join(parts) or "—"


# Nav entries open to some roles only (the pages' own roles_required checks stay the authority).
NAV_ROLES = {"/imports": ("admin", "assessment"), "/audit": ("auditor",), "/admin/users": ("admin", "security")}

# Pages reached from a nav entry without sharing its path prefix.
NAV_ALIASES = {"/reports": "/imports"}


def nav_active(path: str) -> bool:
    """True when the nav entry ``path`` is the current page or one of its sub-pages (/cases/12 -> /cases)."""
    current = request.path
    for prefix, target in NAV_ALIASES.items():
        if current == prefix or current.startswith(prefix + "/"):
            current = target
    if path == "/":
        return current == "/"
    return current == path or current.startswith(path.rstrip("/") + "/")


def _sample_data() -> bool:
    """True when the registry in use is the generated sample: every page then says the data is simulated."""
    try:
        return bool(getattr(get_registry(), "sample", False))
    except Exception:       # noqa: BLE001 - a page (e.g. the error page) must render even if the registry cannot load
        log.exception("control center: cannot load the registry to tell whether it is sample data")
        return False
