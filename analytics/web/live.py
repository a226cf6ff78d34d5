"""The live map, the vote feed and its stream.

Live-update design: the collector (another process) writes votes to the store; every
open page holds one Server-Sent-Events stream (/api/v1/stream) whose generator polls
``store.feed(after=cursor)`` every STREAM_POLL_SECONDS and sends each new vote the
user may see as an event whose id is the feed cursor. A stream ends after
STREAM_MAX_SECONDS (freeing its server thread); the browser's EventSource reconnects
by itself with ``Last-Event-ID`` and resumes exactly after the last vote it got.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pandas as pd
from flask import (Blueprint, Response, abort, current_app, jsonify, render_template, request,
                   stream_with_context)

from manyi.exc import StoreError
from manyi.periods import Quarter, day_bounds, to_local, week_bounds
from manyi.protocol import RATING_LABELS

from . import auth
from .auth import login_required, visible_counties
from .context import get_clock, get_db, get_registry, get_store, resources

log = logging.getLogger(__name__)

from analytics.model.attribution import devices_in, locate_all, places
from analytics.model.rates import RATINGS, tally
from analytics.appeals import excluded_votes
from analytics.votes import attributed_counts
from .shared import json_body, json_response, shared_results
from .terminals import _offline_devices
bp = Blueprint("live", __name__)

PERIODS = {"today": "今日", "week": "本周", "quarter": "本季度"}


# --- assets served by the app (no CDN) -------------------------------------------------









# --- results shared by concurrent requests --------------------------------------------------







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


def map_data(store, registry, start, end, visible: set[str] | None, offline_devices: set[str], now=None,
             exclusions=()):
    """County and hall figures for [start, end): two data frames for the map and its table.

    Each vote counts where its terminal stood at the time of the press (the one attribution);
    votes 不予采纳 by an accepted appeal (``exclusions``) are not counted; a hall is drawn
    offline when a terminal standing there now is offline."""
    located = attributed_counts(store, registry, start, end, grain="total", exclusions=exclusions).rows
    counties = pd.DataFrame([(c.code, c.name, c.kind) for c in registry.counties.values()],
                            columns=["code", "name", "kind"])
    if visible is not None:
        counties = counties[counties["code"].isin(visible)]
        located = located[located["county_code"].isin(visible)]
    counties = counties.merge(tally(located, "county_code").rename(columns={"county_code": "code"}),
                              on="code", how="left")
    counties["n"] = counties["n"].fillna(0).astype(int)
    for rating in RATINGS:
        counties[rating] = counties[rating].fillna(0).astype(int)
    townships = registry.townships
    now = now if now is not None else end
    offline_halls = {place["hall_id"] for place in locate_all(places(registry), [(d, now) for d in sorted(offline_devices)])
                     if place is not None}
    hall_rows = []
    for hall in registry.halls.values():
        county_code = hall.county_code or (townships[hall.township_code].county_code
                                           if hall.township_code in townships else None)
        if visible is not None and county_code not in visible:
            continue
        hall_rows.append((hall.id, hall.name, county_code, hall.lon, hall.lat, bool(hall.approximate),
                          hall.id in offline_halls))
    halls = pd.DataFrame(hall_rows, columns=["id", "name", "county_code", "lon", "lat", "approximate", "offline"])
    halls = halls.merge(tally(located, "hall_id").rename(columns={"hall_id": "id"}), on="id", how="left")
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






def _none_if_nan(value):
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _none_if_nan(v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def feed_items(items, registry) -> list[dict]:
    """Feed items with the place of each vote (where its terminal stood then) and labels, as the ticker shows them."""
    located = locate_all(places(registry), [(item.device, item.time) for item in items])
    out = []
    for item, place in zip(items, located):
        county = registry.counties.get(place["county_code"]) if place else None
        hall = registry.halls.get(place["hall_id"]) if place else None
        window = registry.windows.get(place["window_id"]) if place else None
        out.append({
            "cursor": item.cursor, "device": item.device, "seq": item.seq, "rating": item.rating,
            "rating_label": RATING_LABELS.get(item.rating, item.rating),
            "time": to_local(item.time).isoformat(timespec="seconds"),
            "received_at": to_local(item.received_at).isoformat(timespec="seconds"),
            "county_code": place["county_code"] if place else None,
            "county_name": county.name if county else None,
            "hall_name": hall.name if hall else None,
            "window_name": window.name if window else None,
            "flags": sorted(item.flags),
        })
    return out


def visible_items(items, registry, visible: set[str] | None) -> list[dict]:
    """The feed items of the counties the user may see (by where each vote was pressed), cursors sealed."""
    shown = []
    for data in feed_items(items, registry):
        if visible is None or data["county_code"] in visible:
            data["cursor"] = _sealer().seal(data["cursor"])
            shown.append(data)
    return shown


# --- pages ---------------------------------------------------------------------------------

@bp.route("/")
@login_required
def index():
    """The live map page."""
    period = request.args.get("period", "today")
    if period not in PERIODS:
        period = "today"
    return render_template("live.html", period=period, periods=PERIODS)














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








def _map_payload(period: str, with_figure: bool, visible: set[str] | None) -> dict:
    from analytics.output.map_chart import county_map
    now = get_clock().now()
    start, end = period_bounds(period, now)
    store, registry = get_store(), get_registry()
    # Offline means silent for OFFLINE_MINUTES: a status list a few map refreshes old is still right.
    offline = shared_results("offline").get("all", lambda: _offline_devices(store, now),
                                            ttl=5 * float(current_app.config["MAP_CACHE_SECONDS"]))
    counties, halls = map_data(store, registry, start, end, visible, offline, now,
                               excluded_votes(get_db(), start, end))
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
    """The terminals that ever stood in a county the user may see (None: all), so the store reads only those."""
    if visible is None:
        return None
    return devices_in(places(get_registry()), "county_code", visible)


def _open_cursor(token: str | None) -> str | None:
    """The store cursor inside a client's sealed cursor (400 for one this server did not give out)."""
    if token is None:
        return None
    try:
        return _sealer().open(token)
    except ValueError:
        abort(400, description="unknown cursor")


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
    shown = visible_items(items, registry, visible)
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
                    for data in visible_items(items, registry, visible):
                        yield (f"id: {data['cursor']}\nevent: vote\n"
                               f"data: {json.dumps(data, ensure_ascii=False)}\n\n")
                        last_sent = time.monotonic()
                    if items:
                        cursor = items[-1].cursor
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










OPENAPI_PATHS = {}   # filled in by analytics.web.openapi (the core describes its own endpoints there)




# How the audit log names actions and detail keys (stored in English, shown in Chinese).
# A key whose meaning depends on the action: a case's 回访 result, a report's published result.






# Nav entries open to some roles only (the pages' own roles_required checks stay the authority).

# Pages reached from a nav entry without sharing its path prefix.




