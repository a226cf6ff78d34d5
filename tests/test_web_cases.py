"""不满意督办 pages and API: every route for every role, county scoping, CSRF, validation, export, audit."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from analytics import cases as fu
from analytics.center.accounts import audit_entries
from analytics.web.context import get_db
from plugin_web import DEVICE_A, DEVICE_B, write_votes

ROLES = ("admin", "city", "assessor", "county", "county2")


@pytest.fixture
def two_cases(web_store, clock):
    """One unsatisfied vote in 牡丹区 (case 1) and one in 曹县 (case 2)."""
    write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now() - timedelta(minutes=5)),
                            (DEVICE_B, "unsatisfied", clock.now() - timedelta(minutes=4))])
    return web_store


def case_ids(client, **params):
    data = client.get("/api/v1/cases", query_string=params).get_json()
    return sorted(c["id"] for c in data["cases"])


def test_anonymous_is_sent_to_login(client):
    assert client.get("/cases").status_code == 302
    assert client.get("/api/v1/cases").status_code == 401
    assert client.get("/cases/settings").status_code == 302


@pytest.mark.parametrize("user, visible", [("admin", [1, 2]), ("city", [1, 2]), ("assessor", [1, 2]),
                                            ("county", [1]), ("county2", [2])])
def test_list_is_scoped_by_county(client, auth, two_cases, user, visible):
    auth.login(user)
    page = client.get("/cases")
    assert page.status_code == 200
    assert case_ids(client) == visible
    html = page.get_data(as_text=True)
    assert ('data-case="2"' in html) == (2 in visible)


@pytest.mark.parametrize("user", ROLES)
def test_detail_and_export_for_every_role(client, auth, two_cases, user):
    auth.login(user)
    own = 2 if user == "county2" else 1
    other = 1 if user == "county2" else 2
    assert client.get(f"/cases/{own}").status_code == 200
    assert client.get(f"/api/v1/cases/{own}").get_json()["id"] == own
    expected_other = 403 if user.startswith("county") else 200
    assert client.get(f"/cases/{other}").status_code == expected_other
    assert client.get(f"/api/v1/cases/{other}").status_code == expected_other
    assert client.get("/cases/999").status_code == 404
    csv = client.get("/cases/export.csv")
    assert csv.status_code == 200 and csv.headers["Content-Type"] == "text/csv; charset=utf-8"   # one charset
    text = csv.get_data().decode("utf-8-sig")
    assert text.splitlines()[0].startswith("编号,状态")
    assert len(text.strip().splitlines()) == 1 + (1 if user.startswith("county") else 2)
    xlsx = client.get("/cases/export.xlsx")
    book = load_workbook(io.BytesIO(xlsx.get_data()))
    assert book.active.max_row == 1 + (1 if user.startswith("county") else 2)
    assert client.get("/cases/export.pdf").status_code == 404


def test_county_user_cannot_act_on_other_county(client, auth, two_cases, clock):
    auth.login("county")
    assert auth.post("/cases/2/close", {"reason": "x"}).status_code == 403
    assert client.post("/api/v1/cases/2/close", json={"reason": "x"},
                       headers={"X-CSRF-Token": auth.csrf()}).status_code == 403
    assert client.get("/cases", query_string={"county": "371721"}).status_code == 403
    assert fu.get_case(get_db(client.application), 2, clock.now())["status"] == "open"


def test_assessment_office_reads_but_does_not_act(client, auth, two_cases):
    auth.login("assessor")
    assert "form-close" not in client.get("/cases/1").get_data(as_text=True)
    assert auth.post("/cases/1/note", {"text": "看过"}).status_code == 403


def test_open_assign_callback_close_with_audit(client, auth, two_cases, clock):
    auth.login("county")
    page = client.get("/cases/1").get_data(as_text=True)
    assert "form-close" in page and "东城街道" in page
    # The assignee is picked from the accounts that may act on the case's county (牡丹区).
    assert '<option>county</option>' in page and '<option>city</option>' in page
    assert '<option>county2</option>' not in page and '<option>admin</option>' not in page
    r = auth.post("/cases/1/assign", {"assignee": "county2"})
    assert r.status_code == 400 and "不是可处理该县区督办件的有效账号" in r.get_data(as_text=True)
    r = auth.post("/cases/1/assign", {"assignee": "county"})
    assert r.status_code == 303
    assert auth.post("/cases/1/note", {"text": "已约谈窗口人员"}).status_code == 303
    r = auth.post("/cases/1/close", {"code": "revisited", "reason": "已整改"})
    assert r.status_code == 400 and "尚无接通的回访结果" in r.get_data(as_text=True)
    assert auth.post("/cases/1/callback", {"result": "不满意", "note": "等候太久"}).status_code == 303
    assert "form-revisit" not in client.get("/cases/1").get_data(as_text=True)
    assert auth.post("/cases/1/rectify", {"note": "增开窗口"}).status_code == 303
    page = client.get("/cases/1").get_data(as_text=True)
    assert "form-rectify" not in page and "form-revisit" in page and 'data-stage="revisit"' in page
    assert auth.post("/cases/1/revisit", {"result": "满意", "note": "群众认可"}).status_code == 303
    assert auth.post("/cases/1/close", {"code": "revisited", "reason": "已整改并回访"}).status_code == 303
    case = client.get("/api/v1/cases/1").get_json()
    assert case["status"] == "closed" and case["assignee"] == "county" and case["callback_result"] == "不满意"
    assert case["revisit_result"] == "满意" and case["close_code"] == "revisited"
    assert [n["kind"] for n in case["notes"]] == ["assign", "note", "callback", "rectify", "revisit", "close"]
    actions = [e["action"] for e in audit_entries(get_db(client.application), action="case.")]
    assert set(actions) == {"case.assign", "case.note", "case.callback", "case.rectify", "case.revisit", "case.close"}
    # a closed case accepts no more changes
    r = auth.post("/cases/1/assign", {"assignee": "city"})
    assert r.status_code == 403 or r.status_code == 400
    assert client.get("/cases", query_string={"status": "closed"}).status_code == 200
    assert case_ids(client, status="closed") == [1]


def test_post_without_csrf_token_is_refused(client, auth, two_cases):
    auth.login("admin")
    r = client.post("/cases/1/close", data={"reason": "无令牌"})
    assert r.status_code == 400
    r = client.post("/api/v1/cases/1/close", json={"reason": "无令牌"})
    assert r.status_code == 400
    assert client.get("/api/v1/cases/1").get_json()["status"] == "open"


def test_form_validation_shows_message(client, auth, two_cases):
    auth.login("city")
    r = auth.post("/cases/1/close", {"code": "other", "reason": "   "})
    assert r.status_code == 400 and "必须写明办结说明" in r.get_data(as_text=True)
    r = auth.post("/cases/1/callback", {"result": "<b>好</b>"})
    assert r.status_code == 400 and "回访结果应为" in r.get_data(as_text=True)
    assert auth.post("/cases/1/explode", {}).status_code == 404
    assert client.get("/cases", query_string={"from": "2026/11/01"}).status_code == 400
    assert client.get("/cases", query_string={"status": "weird"}).status_code == 400


def test_api_with_token_acts_without_csrf(client, app, two_cases, api_token):
    headers = {"Authorization": f"Bearer {api_token('county2')}"}
    assert client.get("/api/v1/cases", headers=headers).get_json()["count"] == 1
    assert client.post("/api/v1/cases/1/close", json={"reason": "x"}, headers=headers).status_code == 403
    r = client.post("/api/v1/cases/2/assign", json={"assignee": "county2"}, headers=headers)
    assert r.status_code == 200 and r.get_json()["assignee"] == "county2"
    r = client.post("/api/v1/cases/2/close", json={"code": "other", "reason": ""}, headers=headers)
    assert r.status_code == 400 and "办结说明" in r.get_json()["message"]
    r = client.post("/api/v1/cases/2/callback", json={"result": "未接通"}, headers=headers)
    r = client.post("/api/v1/cases/2/close", json={"code": "unreachable", "reason": "多次未接通"}, headers=headers)
    assert r.status_code == 200 and r.get_json()["close_label"] == "无法联系：多次未接通"


def test_overdue_cases_stand_out_and_filter(client, auth, web_store, clock):
    # A vote 10 days ago (2026-11-13, Friday): contact within 1 working day -> end of Monday 16 Nov;
    # fix within 3 -> end of Wednesday 18 Nov.
    write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now() - timedelta(days=10))])
    write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now())])
    auth.login("admin")
    html = client.get("/cases").get_data(as_text=True)
    assert 'class="overdue status-open"' in html
    assert case_ids(client, overdue="1") == [1]
    assert case_ids(client, overdue="0") == [2]
    case = client.get("/api/v1/cases/1").get_json()
    assert case["deadline"].startswith("2026-11-19T00:00:00+08:00")
    assert case["contact_deadline"].startswith("2026-11-17T00:00:00+08:00")
    assert case["overdue_stages"] == ["联系", "整改"]
    assert "超期" in client.get("/cases/1").get_data(as_text=True)


def test_settings_and_holidays(client, auth, web_store, clock):
    auth.login("county")
    assert client.get("/cases/settings").status_code == 403
    auth.logout()
    auth.login("admin")
    assert client.get("/cases/settings").status_code == 200
    page = client.get("/cases/settings").get_data(as_text=True)
    assert "chinesecalendar" in page and "calendar-missing-2026" not in page
    assert "2027 年的法定节假日尚未收录" in page       # the package (1.11) has no 2027 schedule yet
    r = auth.post("/cases/settings", {"what": "settings", "contact_days": "2", "deadline_days": "5",
                                      "revisit_days": "3", "group_minutes": "10"})
    assert r.status_code == 303
    settings = fu.get_settings(get_db(client.application))
    assert (settings["contact_days"], settings["deadline_days"], settings["revisit_days"]) == (2, 5, 3)
    r = auth.post("/cases/settings", {"what": "settings", "deadline_days": "-3", "group_minutes": "10"})
    assert r.status_code == 400 and "deadline_days" in r.get_data(as_text=True)
    assert auth.post("/cases/settings", {"what": "holiday", "day": "2026-11-24", "kind": "holiday",
                                         "name": "测试假日"}).status_code == 303
    assert auth.post("/cases/settings", {"what": "holiday", "day": "24/11/2026"}).status_code == 400
    assert "测试假日" in client.get("/cases/settings").get_data(as_text=True)
    assert auth.post("/cases/settings", {"what": "holiday", "day": "2026-10-10", "kind": "holiday",
                                         "name": "取消调休"}).status_code == 303
    assert "法定：国庆节（调休上班）" in client.get("/cases/settings").get_data(as_text=True)
    assert auth.post("/cases/settings", {"what": "holiday_delete", "day": "2026-10-10"}).status_code == 303
    # Monday 23 Nov + 5 working days with Tuesday off: Wed Thu Fri Mon Tue -> due end of 1 Dec.
    write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now())])
    assert client.get("/api/v1/cases/1").get_json()["deadline"] == "2026-12-02T00:00:00+08:00"
    assert auth.post("/cases/settings", {"what": "holiday_delete", "day": "2026-11-24"}).status_code == 303
    assert fu.list_holidays(get_db(client.application)) == []
    assert {e["action"] for e in audit_entries(get_db(client.application), action="settings.")} == {
        "settings.followup", "settings.holiday.add", "settings.holiday.delete"}
    r = client.post("/cases/settings", data={"what": "settings", "deadline_days": "1", "group_minutes": "1"})
    assert r.status_code == 400        # no CSRF token


def test_votes_within_group_time_join_one_case(client, auth, web_store, clock):
    write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now() - timedelta(minutes=50)),
                            (DEVICE_A, "unsatisfied", clock.now() - timedelta(minutes=30)),
                            (DEVICE_A, "unsatisfied", clock.now() - timedelta(minutes=10))])
    auth.login("admin")
    data = client.get("/api/v1/cases").get_json()
    assert data["count"] == 1 and data["cases"][0]["vote_count"] == 3
