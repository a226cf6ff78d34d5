"""Rankings page and API: every role, county scoping, sorting, published results, export."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from analytics import quarter as q
from analytics.web.context import get_db, get_registry, get_store
from plugin_web import DEVICE_A, DEVICE_B, write_votes

ROLES = ("admin", "city", "assessor", "county", "county2")


@pytest.fixture
def votes(web_store, clock):
    now = clock.now()
    write_votes(web_store, [(DEVICE_A, "satisfied", now - timedelta(minutes=m)) for m in range(1, 40)]
                + [(DEVICE_A, "unsatisfied", now - timedelta(minutes=50))])
    write_votes(web_store, [(DEVICE_B, "unsatisfied", now - timedelta(minutes=m)) for m in range(1, 6)]
                + [(DEVICE_B, "satisfied", now - timedelta(minutes=m)) for m in range(10, 40)])
    return web_store


@pytest.mark.parametrize("user", ROLES)
def test_rankings_for_every_role(client, auth, votes, user):
    auth.login(user)
    page = client.get("/rankings?quarter=2026Q4")
    assert page.status_code == 200
    rows = client.get("/api/v1/rankings?quarter=2026Q4").get_json()["rows"]
    codes = [r["code"] for r in rows]
    if user == "county":
        assert codes == ["371702"]
    elif user == "county2":
        assert codes == ["371721"]
    else:
        assert len(codes) == 11
    towns = client.get("/api/v1/rankings?quarter=2026Q4&level=township").get_json()["rows"]
    if user.startswith("county"):
        assert {t["county_code"] for t in towns} == {"371702" if user == "county" else "371721"}
    else:
        assert len({t["county_code"] for t in towns}) == 11
    csv = client.get("/rankings/export.csv?quarter=2026Q4").get_data().decode("utf-8-sig").strip().splitlines()
    assert csv[0].startswith("名次,代码,名称") and len(csv) == 1 + len(codes)


def test_figures_and_sorting(client, auth, votes):
    auth.login("city")
    rows = client.get("/api/v1/rankings?quarter=2026Q4&sort=n_T&order=desc").get_json()["rows"]
    assert [r["code"] for r in rows[:2]] == ["371702", "371721"]
    mudan = rows[0]
    assert mudan["n_T"] == 40 and mudan["rate_T"] == pytest.approx(39 / 40)
    assert mudan["ci_low"] < mudan["rate_T"] < mudan["ci_high"]
    asc = client.get("/api/v1/rankings?quarter=2026Q4&sort=rate_T").get_json()["rows"]
    rated = [r for r in asc if r["rate_T"] is not None]
    assert [r["code"] for r in rated] == ["371721", "371702"]
    assert all(r["rate_T"] is None for r in asc[len(rated):])          # units without votes last
    html = client.get("/rankings?quarter=2026Q4&sort=n_T&order=desc").get_data(as_text=True)
    assert "sorted-desc" in html and "牡丹区" in html
    assert client.get("/api/v1/rankings?sort=evil").status_code == 400
    assert client.get("/api/v1/rankings?quarter=2026Q9").status_code == 400
    assert client.get("/api/v1/rankings?level=hall").status_code == 400


def test_published_result_and_xlsx_export(client, app, auth, votes, clock):
    with app.app_context():
        result = q.compute_quarter(get_store(), get_registry(), get_db(), "2026Q4", now=clock.now())
        rid = q.publish(get_db(), result)
    auth.login("assessor")
    data = client.get(f"/api/v1/rankings?result={rid}").get_json()
    assert data["result_id"] == rid and data["quarter"] == "2026Q4"
    assert f"已发布结果 #{rid}" in client.get(f"/rankings?result={rid}").get_data(as_text=True)
    assert client.get("/api/v1/rankings?result=424242").status_code == 404
    book = load_workbook(io.BytesIO(client.get(f"/rankings/export.xlsx?result={rid}").get_data()))
    assert book.active.max_row == 12 and book.active["C1"].value == "名称"
    assert client.get("/rankings/export.doc").status_code == 404


def test_anonymous(client):
    assert client.get("/rankings").status_code == 302
    assert client.get("/api/v1/rankings").status_code == 401
