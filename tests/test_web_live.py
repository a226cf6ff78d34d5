"""Live map, vote feed, SSE stream and terminals: data, scoping by county, escaping."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from datetime import datetime, timedelta

import pytest

from analytics.web import create_app
from analytics.web.context import get_store
from collector.stores.base import StoredVote, TerminalStatus
from manyi.periods import CHINA_TZ
from manyi.protocol import format_timestamp
from plugin_web import DEVICE_A, DEVICE_B, AuthActions, write_votes

HOSTILE = '<script>alert("x")</script>'


def _client(app, username):
    client = app.test_client()
    AuthActions(client).login(username)
    return client


@pytest.fixture
def votes(web_store, clock):
    """Today: 牡丹区 3 satisfied, 1 basic, 1 unsatisfied; 曹县 2 unsatisfied; last Friday: 曹县 1 satisfied."""
    now = clock.now()
    write_votes(web_store, [(DEVICE_A, "satisfied", now - timedelta(minutes=20 - i)) for i in range(3)])
    write_votes(web_store, [(DEVICE_A, "basic", now - timedelta(minutes=10)),
                            (DEVICE_A, "unsatisfied", now - timedelta(minutes=9)),
                            (DEVICE_B, "unsatisfied", now - timedelta(minutes=8)),
                            (DEVICE_B, "unsatisfied", now - timedelta(minutes=7))])
    write_votes(web_store, [(DEVICE_B, "satisfied", now - timedelta(days=3))])


def test_map_figures_for_today(app, votes):
    data = _client(app, "city").get("/api/v1/map?period=today").json
    by_code = {c["code"]: c for c in data["counties"]}
    assert len(by_code) == 11                                   # 9 counties + 2 development zones
    mudan = by_code["371702"]
    assert (mudan["n"], mudan["satisfied"], mudan["basic"], mudan["unsatisfied"]) == (5, 3, 1, 1)
    assert mudan["score"] == pytest.approx((3 * 100 + 60) / 5)
    assert mudan["rate"] == pytest.approx(0.8)
    assert by_code["371721"]["n"] == 2 and by_code["371721"]["score"] == 0
    assert by_code["371723"]["n"] == 0 and by_code["371723"]["score"] is None
    assert data["start"] == "2026-11-23T00:00:00+08:00"


def test_map_periods_use_china_calendar(app, votes):
    client = _client(app, "city")
    week = {c["code"]: c["n"] for c in client.get("/api/v1/map?period=week&figure=0").json["counties"]}
    quarter = {c["code"]: c["n"] for c in client.get("/api/v1/map?period=quarter&figure=0").json["counties"]}
    assert week["371721"] == 2                 # Monday: last Friday is another week
    assert quarter["371721"] == 3
    assert client.get("/api/v1/map?period=year").status_code == 400


def test_map_figure_is_an_offline_choropleth_with_attribution(app, votes):
    figure = _client(app, "admin").get("/api/v1/map").json["figure"]
    kinds = [t["type"] for t in figure["data"]]
    assert "choropleth" in kinds and "scattergeo" in kinds
    scored = next(t for t in figure["data"] if t["type"] == "choropleth" and t.get("name") == "满意度")
    assert set(scored["locations"]) == {"371702", "371721"}
    assert scored["geojson"]["features"]                      # polygons inline, nothing fetched
    assert figure["layout"]["geo"]["fitbounds"] == "geojson"
    assert "mapbox" not in json.dumps(figure["layout"])
    assert any("OpenStreetMap" in a["text"] for a in figure["layout"]["annotations"])


def test_county_user_sees_only_its_county_on_the_map(app, votes):
    data = _client(app, "county").get("/api/v1/map").json
    assert [c["code"] for c in data["counties"]] == ["371702"]
    assert {h["county_code"] for h in data["halls"]} == {"371702"}
    locations = {loc for t in data["figure"]["data"] if t["type"] == "choropleth" for loc in t["locations"]}
    assert locations == {"371702"}


def test_feed_returns_recent_votes_with_places_and_cursor(app, votes):
    client = _client(app, "city")
    data = client.get("/api/v1/feed?limit=3").json
    assert [i["rating"] for i in data["items"]] == ["unsatisfied", "unsatisfied", "satisfied"]
    first = client.get("/api/v1/feed?limit=50").json["items"][0]
    assert first["county_name"] == "牡丹区" and first["hall_name"] and first["window_name"]
    assert first["rating_label"] == "满意" and first["time"].endswith("+08:00")
    assert client.get(f"/api/v1/feed?after={data['cursor']}").json["items"] == []
    assert client.get("/api/v1/feed?limit=abc").status_code == 400


def test_feed_is_scoped_by_county(app, votes):
    mine = _client(app, "county").get("/api/v1/feed").json["items"]
    assert {i["device"] for i in mine} == {DEVICE_A}
    theirs = _client(app, "county2").get("/api/v1/feed").json["items"]
    assert {i["device"] for i in theirs} == {DEVICE_B}


def _events(body: str) -> list[dict]:
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if fields.get("event") == "vote":
            events.append({"id": fields["id"], **json.loads(fields["data"])})
    return events


def test_stream_sends_votes_after_the_cursor(app, votes):
    client = _client(app, "city")
    items = client.get("/api/v1/feed?limit=50").json["items"]
    response = client.get(f"/api/v1/stream?after={items[-3]['cursor']}")
    assert response.mimetype == "text/event-stream"
    events = _events(response.get_data(as_text=True))
    assert [e["seq"] for e in events] == [i["seq"] for i in items[-2:]]
    assert [e["id"] for e in events] == [e["cursor"] for e in events]
    resumed = _events(client.get("/api/v1/stream", headers={"Last-Event-ID": events[0]["id"]}).get_data(as_text=True))
    assert [e["seq"] for e in resumed] == [items[-1]["seq"]]


def test_cursors_are_sealed_and_reveal_no_count(app, votes, web_store, clock):
    """A cursor is opaque: a new one each time, nothing of the store's row ids, and a forged one is refused."""
    client = _client(app, "county2")
    first, again = client.get("/api/v1/feed").json["cursor"], client.get("/api/v1/feed").json["cursor"]
    assert first != again and not first.isdigit()
    for n in range(1, 40):
        assert str(n) not in (first, again)
    assert client.get("/api/v1/feed?after=5").status_code == 400          # a raw store cursor is refused
    tampered = first[:-2] + ("AA" if first[-2:] != "AA" else "BB")
    assert client.get(f"/api/v1/feed?after={tampered}").status_code == 400


def test_stream_delivers_a_vote_written_while_it_is_open(app, web_store, clock):
    client = _client(app, "city")
    # The stream resumes after the feed's cursor of an earlier vote, so a stream that takes longer than
    # the writer's 0.3 s to start (a busy machine) still owes exactly the vote written after it.
    write_votes(web_store, [(DEVICE_A, "satisfied", clock.now())])
    cursor = client.get("/api/v1/feed").json["cursor"]
    writer = threading.Timer(0.3, lambda: write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now())]))
    writer.start()
    started = time.monotonic()
    body = client.get("/api/v1/stream", query_string={"after": cursor}).get_data(as_text=True)
    writer.join()
    events = _events(body)
    assert [(e["device"], e["rating"]) for e in events] == [(DEVICE_A, "unsatisfied")]
    assert time.monotonic() - started < 3
    assert body.startswith("retry: 2000")


def test_stream_hides_other_counties(app, votes, web_store, clock):
    client = _client(app, "county2")
    cursor = client.get("/api/v1/feed").json["cursor"]
    write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now())])
    body = client.get(f"/api/v1/stream?after={cursor}").get_data(as_text=True)
    assert _events(body) == []
    assert DEVICE_A not in body


def test_a_county_ticker_starts_with_its_own_newest_votes(app, web_store, clock):
    """The feed without a cursor reads the county's terminals, however many city votes came after."""
    write_votes(web_store, [(DEVICE_B, "unsatisfied", clock.now())])
    write_votes(web_store, [(DEVICE_A, "satisfied", clock.now()) for _ in range(600)])
    items = _client(app, "county2").get("/api/v1/feed?limit=5").json["items"]
    assert [i["device"] for i in items] == [DEVICE_B]


def _status(device, now, online=True, **kw):
    return TerminalStatus(device=device, online=online, last_seen=now, status_at=now, firmware="1.2.0",
                          outbox_depth=kw.pop("outbox_depth", 0), reported_last_seq=kw.pop("reported_last_seq", None),
                          repeats_ignored=3, clock_ok=kw.pop("clock_ok", True), **kw)


def test_terminals_health_silent_offline_gaps(app, web_store, clock):
    clock.set(datetime(2026, 11, 23, 11, 0, tzinfo=CHINA_TZ))              # Monday, halls open since 09:00
    now = clock.now()
    quiet, busy, gone = DEVICE_A, "hz-371702001-w02", "hz-371702002-w01"
    old = now - timedelta(hours=2)
    stored = [StoredVote(quiet, seq, "satisfied", old, old, format_timestamp(old), True) for seq in (1, 2, 5)]
    web_store.write(stored, statuses=[_status(quiet, now, reported_last_seq=6, outbox_depth=1),
                                      _status(busy, now), _status(gone, now, online=False, clock_ok=False)])
    write_votes(web_store, [(busy, "satisfied", now - timedelta(minutes=5))])
    data = _client(app, "city").get("/api/v1/terminals").json
    rows = {r["device"]: r for r in data["terminals"]}
    assert rows[quiet]["online"] and rows[quiet]["silent"]
    assert rows[quiet]["gaps"] == ["3–4"] and rows[quiet]["missing"] == 2
    assert (rows[quiet]["max_seq"], rows[quiet]["reported_last_seq"], rows[quiet]["outbox_depth"]) == (5, 6, 1)
    assert rows[quiet]["firmware"] == "1.2.0" and rows[quiet]["repeats_ignored"] == 3
    assert rows[busy]["online"] and not rows[busy]["silent"]
    assert not rows[gone]["online"] and not rows[gone]["silent"] and rows[gone]["clock_ok"] is False
    never = next(r for r in data["terminals"] if not r["known"])
    assert never["online"] is False
    assert data["summary"]["silent"] == 1 and data["summary"]["offline"] == 1
    assert data["summary"]["total"] == len(data["terminals"])


def test_terminal_silent_only_while_the_hall_is_open(app, web_store, clock):
    clock.set(datetime(2026, 11, 22, 11, 0, tzinfo=CHINA_TZ))              # Sunday: closed
    web_store.write(statuses=[_status(DEVICE_A, clock.now())])
    rows = {r["device"]: r for r in _client(app, "city").get("/api/v1/terminals").json["terminals"]}
    assert rows[DEVICE_A]["online"] and not rows[DEVICE_A]["silent"]


def test_terminals_show_the_collectors_burst_flags(app, web_store, clock):
    now = clock.now()
    write_votes(web_store, [(DEVICE_A, "satisfied", now - timedelta(seconds=60 - 5 * i)) for i in range(6)],
                flags={"burst"})
    rows = {r["device"]: r for r in _client(app, "admin").get("/api/v1/terminals").json["terminals"]}
    assert [f["pattern"] for f in rows[DEVICE_A]["findings"]] == ["burst"]
    page = _client(app, "admin").get("/terminals?problems=1").get_data(as_text=True)
    assert DEVICE_A in page and "同一按键连续快速按压" in page


def test_terminals_are_scoped_by_county(app, web_store, clock):
    web_store.write(statuses=[_status(DEVICE_A, clock.now()), _status(DEVICE_B, clock.now())])
    client = _client(app, "county")
    data = client.get("/api/v1/terminals").json
    assert {r["county_code"] for r in data["terminals"]} == {"371702"}
    assert client.get("/api/v1/terminals?county=371721").status_code == 403
    assert {r["county_code"] for r in client.get("/api/v1/terminals?county=371702").json["terminals"]} == {"371702"}
    page = client.get("/terminals").get_data(as_text=True)
    assert DEVICE_A in page and DEVICE_B not in page
    assert DEVICE_B in _client(app, "city").get("/terminals").get_data(as_text=True)


def test_live_page_renders_for_every_role(app):
    for username in ("admin", "city", "assessor", "county", "county2"):
        page = _client(app, username).get("/?period=week").get_data(as_text=True)
        assert 'id="map"' in page and "/assets/plotly.min.js" in page and 'data-period="week"' in page
        assert "OpenStreetMap" in page


@pytest.fixture
def hostile_app(tmp_path, heze, clock):
    """An app whose registry names a hall and a county with HTML."""
    registry = copy.deepcopy(heze)
    location = registry.current_location(DEVICE_A)
    hall = registry.halls[location.hall_id]
    registry.halls[hall.id] = dataclasses.replace(hall, name=HOSTILE)
    registry.counties["371702"] = dataclasses.replace(registry.counties["371702"], name=HOSTILE)
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "CENTER_DB": str(tmp_path / "c.db"),
                      "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}", "REGISTRY": registry, "CLOCK": clock,
                      "SESSION_COOKIE_SECURE": False, "STREAM_MAX_SECONDS": 0.3})
    from analytics.center.accounts import create_user
    from analytics.web.context import get_db
    create_user(get_db(app), "admin", "long-enough-1", "admin")
    write_votes(get_store(app), [(DEVICE_A, "unsatisfied", clock.now())])
    web_store = get_store(app)
    web_store.write(statuses=[_status(DEVICE_A, clock.now())])
    return app


def test_hostile_registry_names_are_escaped(hostile_app):
    client = hostile_app.test_client()
    AuthActions(client).login("admin", "long-enough-1")
    page = client.get("/terminals").get_data(as_text=True)
    assert HOSTILE not in page and "&lt;script&gt;" in page
    figure = json.dumps(client.get("/api/v1/map").json["figure"], ensure_ascii=False)
    assert "<script>" not in figure and "&lt;script&gt;" in figure
    # JSON carries the raw name; the page inserts it with textContent only.
    item = client.get("/api/v1/feed").json["items"][0]
    assert item["hall_name"] == HOSTILE
    live_js = client.get("/static/live.js").get_data(as_text=True)
    assert "innerHTML" not in live_js and "insertAdjacentHTML" not in live_js


def test_map_results_are_shared_briefly_per_scope(app, votes, web_store, clock):
    app.config["MAP_CACHE_SECONDS"] = 60
    city = _client(app, "city")
    first = city.get("/api/v1/map?figure=0").json
    write_votes(web_store, [(DEVICE_A, "satisfied", clock.now())])
    assert city.get("/api/v1/map?figure=0").json == first          # within the cache time
    county = _client(app, "county").get("/api/v1/map?figure=0").json
    assert [c["code"] for c in county["counties"]] == ["371702"]     # another scope, its own result
    assert county["counties"][0]["n"] == 6
    app.config["MAP_CACHE_SECONDS"] = 0
    assert {c["code"]: c["n"] for c in city.get("/api/v1/map?figure=0").json["counties"]}["371702"] == 6


def test_bad_cursors(app, votes):
    client = _client(app, "city")
    response = client.get("/api/v1/feed?after=not-a-cursor")
    assert response.status_code == 400 and "cursor" in response.json["message"]
    # The stream starts from the newest vote instead of failing on every reconnect.
    response = client.get("/api/v1/stream", headers={"Last-Event-ID": "garbage"})
    assert response.status_code == 200 and _events(response.get_data(as_text=True)) == []


def test_store_failure_is_a_503(app, web_store):
    client = _client(app, "city")
    web_store.close()                                    # the store is gone (e.g. the disk failed)
    response = client.get("/api/v1/feed")
    assert response.status_code == 503 and response.json["error"] == "store_unavailable"
    page = client.get("/terminals")
    assert page.status_code == 503 and "数据存储暂不可用" in page.get_data(as_text=True)
