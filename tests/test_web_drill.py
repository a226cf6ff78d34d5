"""Drill-down pages, API and chart builders: levels, attribution, staff, county scoping, escaping."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

import pytest

from analytics.output import drill_charts as charts
from followup_fixtures import HOSTILE, HOSTILE_HALL, small_registry
from plugin_web import DEVICE_A, DEVICE_B, PASSWORD, write_votes

ROLES = ("admin", "city", "assessor", "county", "county2")


@pytest.fixture
def votes(web_store, clock):
    now = clock.now()
    write_votes(web_store, [(DEVICE_A, "unsatisfied", now - timedelta(hours=1)),
                            (DEVICE_A, "satisfied", now - timedelta(days=1)),
                            (DEVICE_A, "basic", now - timedelta(days=2)),
                            (DEVICE_B, "satisfied", now - timedelta(minutes=5))])
    return web_store


def units(client):
    """(level, code) of every level down to DEVICE_A, discovered through the API."""
    out = [("county", "371702"), ("township", "371702001")]
    d = client.get("/api/v1/drill/township/371702001").get_json()
    hall = d["children"][0]["code"]
    win = client.get(f"/api/v1/drill/hall/{hall}").get_json()["children"][0]["code"]
    return out + [("hall", hall), ("window", win), ("terminal", DEVICE_A)]


@pytest.mark.parametrize("user", ROLES)
def test_every_level_for_every_role(client, auth, votes, user):
    auth.login("admin")
    levels = units(client)
    auth.logout()
    auth.login(user)
    city = client.get("/drill")
    if user.startswith("county"):
        assert city.status_code == 302 and "/drill/county/" in city.headers["Location"]
    else:
        assert city.status_code == 200 and 'id="chart-trend"' in city.get_data(as_text=True)
    allowed = user != "county2"
    for level, code in levels:
        page = client.get(f"/drill/{level}/{code}")
        api = client.get(f"/api/v1/drill/{level}/{code}")
        assert page.status_code == api.status_code == (200 if allowed else 403), (level, code)
        if allowed:
            data = api.get_json()
            assert data["totals"]["n"] == 3 and data["totals"]["unsatisfied"] == 1
            assert data["breadcrumbs"][-1]["code"] == code
    # every user may open its own county; county2's is 曹县
    own = "371721" if user == "county2" else "371702"
    assert client.get(f"/api/v1/drill/county/{own}").status_code == 200


def test_city_api_is_scoped(client, auth, votes, clock):
    auth.login("county2")
    data = client.get("/api/v1/drill").get_json()
    assert [c["code"] for c in data["children"]] == ["371721"]
    assert data["totals"]["n"] == 1
    county = client.get("/api/v1/drill/county/371721").get_json()
    assert county["peers"] == []          # other counties are not shown, and a county is not compared with itself
    auth.logout()
    auth.login("city")
    data = client.get("/api/v1/drill").get_json()
    assert data["totals"]["n"] == 4 and len(data["children"]) == 11
    county = client.get("/api/v1/drill/county/371702").get_json()
    assert {p["code"] for p in county["peers"]} >= {"371702", "371721"}
    hall = client.get("/api/v1/drill/hall/hall-371702001").get_json()     # the only hall of its township
    assert hall["peers"] == []                                # no other hall of 牡丹区 has votes yet
    write_votes(votes, [("hz-371702002-w01", "basic", clock.now() - timedelta(minutes=3))])
    hall = client.get("/api/v1/drill/hall/hall-371702001").get_json()
    assert {p["code"] for p in hall["peers"]} == {"hall-371702001", "hall-371702002"}   # the county's halls


def test_trend_heat_and_staff(client, auth, votes, clock):
    auth.login("admin")
    data = client.get("/api/v1/drill/terminal/" + DEVICE_A, query_string={"days": 7}).get_json()
    assert len(data["daily"]) == 7 and data["end"] == "2026-11-23"
    assert [d["day"] for d in data["daily"] if d["satisfied"]] == ["2026-11-22"]
    # the unsatisfied vote: Monday 08:30 China time
    assert {(c["weekday"], c["hour"]) for c in data["heat"] if c["unsatisfied"]} == {(0, 8)}
    assert sum(s["n"] for s in data["staff"]) == 3 and data["staff"][0]["name"]


def test_period_validation_and_unknown_units(client, auth, votes):
    auth.login("admin")
    assert client.get("/api/v1/drill/county/371702?days=0").status_code == 400
    assert client.get("/api/v1/drill/county/371702?from=2026-11-30&to=2026-11-01").status_code == 400
    assert client.get("/api/v1/drill/county/371702?from=2026-11-20&to=2026-11-23").get_json()["totals"]["n"] == 3
    assert client.get("/api/v1/drill/county/999999").status_code == 404
    assert client.get("/api/v1/drill/planet/1").status_code == 404
    assert client.get("/api/v1/drill/terminal/hz-000000000-w99").status_code == 404
    assert client.get("/api/v1/drill/county/371702").status_code == 200


def test_token_api_scoping(client, votes, api_token):
    headers = {"Authorization": f"Bearer {api_token('county')}"}
    assert client.get("/api/v1/drill/county/371721", headers=headers).status_code == 403
    assert client.get("/api/v1/drill/county/371702", headers=headers).get_json()["totals"]["n"] == 3


def test_hostile_names_are_escaped(tmp_path, clock):
    from analytics.web import create_app
    from analytics.center.accounts import create_user
    from analytics.web.context import get_db, get_store, resources
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}",
                      "CENTER_DB": str(tmp_path / "c.db"), "REGISTRY": small_registry(hostile=True), "CLOCK": clock,
                      "BACKGROUND_WORKERS": False, "SESSION_COOKIE_SECURE": False})
    try:
        create_user(get_db(app), "admin", PASSWORD, "admin")
        write_votes(get_store(app), [("hz-371702001-w01", "unsatisfied", clock.now() - timedelta(minutes=m))
                                     for m in (3, 2, 1)])
        client = app.test_client()
        token = client.get("/login").get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
        client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
        for url in ("/drill/county/371702", "/drill/township/371702001", "/drill/hall/h-371702001", "/cases",
                    "/cases/1", "/rankings?level=township", "/alerts"):
            page = client.get(url)
            assert page.status_code == 200, url
            html = page.get_data(as_text=True)
            assert HOSTILE not in html and HOSTILE_HALL not in html, url
            assert "&lt;script&gt;" in html or "&lt;img" in html, url
        assert "&lt;img src=x onerror=alert(1)&gt;大厅" in client.get("/alerts").get_data(as_text=True)
        rows = list(csv.reader(io.StringIO(client.get("/cases/export.csv").get_data().decode("utf-8-sig"))))
        assert rows[1][4] == HOSTILE                                   # data stays data in a download
        data = client.get("/api/v1/drill/county/371702").get_json()
        assert data["children"][0]["name"] == HOSTILE                  # JSON keeps the text, JS uses textContent
        fig = json.loads(charts.peers_figure([{"code": "t", "name": HOSTILE, "n": 1, "rate": 0.5}]).to_json())
        assert "<script>" not in json.dumps(fig["data"][0]["y"])
    finally:
        resources(app).close()


def test_chart_builders():
    rows_day = charts.daily_counts([], date(2026, 11, 1), date(2026, 11, 8))
    assert len(rows_day) == 7
    fig = charts.trend_figure(rows_day)
    assert [t.name for t in fig.data] == ["满意", "基本满意", "不满意", "满意率 %"]
    dist = charts.distribution_figure({"satisfied": 8, "basic": 1, "unsatisfied": 1})
    assert list(dist.data[0].values) == [8, 1, 1]
    heat = charts.heatmap_figure({(0, 9): {"satisfied": 1, "basic": 0, "unsatisfied": 1}}, value="unsatisfied")
    assert heat.data[0].z[0][9] == 50.0 and heat.data[0].z[1][9] is None
    peers = charts.peers_figure([{"code": "a", "name": "甲", "n": 10, "rate": 0.9},
                                 {"code": "b", "name": "乙", "n": 10, "rate": 0.7},
                                 {"code": "c", "name": "丙", "n": 0, "rate": None}], highlight="a")
    assert list(peers.data[0].y) == ["乙", "甲"] and peers.data[0].marker.color[1] == "#1565c0"
    from analytics.model import satisfaction_rate
    assert satisfaction_rate({"satisfied": 1, "basic": 1, "unsatisfied": 2}) == 0.5 and satisfaction_rate({}) is None
