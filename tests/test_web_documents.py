"""The bulletin page and downloads, the indicators API and the upward API: roles, scoping, audit."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from analytics.center.accounts import audit_entries, create_token
from analytics.web.context import get_db
from plugin_web import DEVICE_A, DEVICE_B, write_votes


@pytest.fixture
def votes(web_store, clock):
    now = clock.now()                        # Monday 2026-11-23 09:30 China time
    write_votes(web_store, [(DEVICE_A, "satisfied", now - timedelta(minutes=m)) for m in range(1, 31)]
                + [(DEVICE_B, "unsatisfied", now - timedelta(minutes=m)) for m in range(1, 6)])
    return web_store


@pytest.mark.parametrize("user,status", [("admin", 200), ("city", 200), ("assessor", 200), ("county", 403),
                                         ("security", 403), ("auditor", 403)])
def test_the_bulletin_page_is_for_city_wide_roles(client, auth, user, status):
    auth.login(user)
    page = client.get("/bulletins")
    assert page.status_code == status
    if status == 200:
        text = page.get_data(as_text=True)
        assert "月度通报" in text and "2026年10月" in text and 'href="/bulletins"' in text     # in the navigation
        assert ('id="upward"' in text) == (user in ("admin", "assessor"))        # links only for who may use them


def test_a_bulletin_downloads_as_xlsx_and_html_and_is_audited(client, auth, votes):
    from openpyxl import load_workbook

    auth.login("assessor")
    response = client.get("/bulletins/download?month=2026-11&format=xlsx")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(response.data))
    assert [c.value for c in book["县区排名"][2]][:3] == ["名次", "代码", "名称"]
    page = client.get("/bulletins/2026-11.html")
    assert page.status_code == 200 and "2026年11月 人社服务满意度评价月度通报" in page.get_data(as_text=True)
    assert client.get("/bulletins/2026-11.docx").status_code == 404
    assert client.get("/bulletins/2026-13.html").status_code == 400
    actions = [(e["action"], e["detail"].get("format")) for e in audit_entries(get_db(client.application))]
    assert ("bulletin.download", "xlsx") in actions and ("bulletin.download", "html") in actions


def test_indicators_api_scopes_county_users(client, auth, votes):
    auth.login("county")                                   # 牡丹区
    data = client.get("/api/v1/indicators?level=county&month=2026-11").get_json()
    assert {r["code"] for r in data["rows"]} == {"371702"}
    row = next(r for r in data["rows"] if r["channel"] == "terminal")
    assert (row["n"], row["rate"], row["score"]) == (30, 1.0, 100.0) and data["labels"]["bad_rate"] == "差评率"
    assert client.get("/api/v1/indicators?level=city").status_code == 403
    auth.logout()
    auth.login("city")
    rows = client.get("/api/v1/indicators?level=county&month=2026-11").get_json()["rows"]
    cao = next(r for r in rows if r["code"] == "371721" and r["channel"] == "terminal")
    assert (cao["n"], cao["bad_rate"]) == (5, 1.0) and len({r["code"] for r in rows}) == 11


def test_the_province_pulls_the_upward_export_with_a_token(client, votes):
    app = client.application
    token = create_token(get_db(app), "assessor", "province")
    headers = {"Authorization": f"Bearer {token}"}
    document = client.get("/api/v1/upward?month=2026-11", headers=headers)
    assert document.status_code == 200 and document.mimetype == "application/json"
    data = json.loads(document.data)
    assert data["provisional"] is True and data["rows"][0]["n"] == 35          # November is not over yet
    csv = client.get("/api/v1/upward?month=2026-11&format=csv", headers=headers)
    assert csv.data.decode("utf-8-sig").startswith("region_code,level,name")
    assert client.get("/api/v1/upward?format=xml", headers=headers).status_code == 400
    city_token = create_token(get_db(app), "county", "nope")
    assert client.get("/api/v1/upward", headers={"Authorization": f"Bearer {city_token}"}).status_code == 403
