"""申诉复核 pages and API: a county files, the city reviews, scoping, audit, and the map without the
不予采纳 votes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from analytics.center.accounts import audit_entries
from analytics.web.context import get_db
from plugin_web import DEVICE_A, DEVICE_B, AuthActions, write_votes


@pytest.fixture
def cases(web_store, clock):
    """牡丹区: 2 不满意 at one window (case 1) and 1 满意; 曹县: 1 不满意 (case 2)."""
    now = clock.now()
    write_votes(web_store, [(DEVICE_A, "unsatisfied", now - timedelta(minutes=6)),
                            (DEVICE_A, "unsatisfied", now - timedelta(minutes=5)),
                            (DEVICE_A, "satisfied", now - timedelta(minutes=3)),
                            (DEVICE_B, "unsatisfied", now - timedelta(minutes=4))])
    return web_store


def _mudan(client):
    counties = client.get("/api/v1/map?period=today").get_json()["counties"]
    return next(c for c in counties if c["code"] == "371702")


def test_county_files_city_reviews_and_the_votes_leave_the_scores(app, client, auth, cases):
    auth.login("county")
    client.get("/cases")                                       # the cases sync from the store
    assert _mudan(client)["n"] == 3
    page = client.get("/cases/1").get_data(as_text=True)
    assert "form-case-appeal" in page and 'value="appeal"' not in page
    r = auth.post("/appeals", {"target_kind": "case", "target_ref": "1", "kind": "mistaken", "reason": "群众误按",
                               "evidence": "窗口录像"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/appeals/1")
    # another county's case: 403, nothing filed
    assert auth.post("/appeals", {"target_kind": "case", "target_ref": "2", "kind": "mistaken",
                                  "reason": "x"}).status_code == 403
    r = auth.post("/appeals", {"target_kind": "case", "target_ref": "1", "kind": "mistaken", "reason": "再次"})
    assert r.status_code == 400 and "已在申诉中" in r.get_data(as_text=True)
    detail = client.get("/appeals/1").get_data(as_text=True)
    assert "待复核" in detail and "form-review" not in detail and "form-withdraw" in detail
    assert auth.post("/appeals/1/review", {"decision": "accepted"}).status_code == 403
    auth.logout()

    auth.login("county2")
    assert client.get("/appeals/1").status_code == 403
    assert client.get("/api/v1/appeals").get_json()["count"] == 0
    auth.logout()

    auth.login("city")
    assert client.get("/api/v1/appeals").get_json()["count"] == 1
    r = auth.post("/appeals/1/review", {"decision": "rejected", "note": ""})
    assert r.status_code == 400 and "驳回申诉必须写明复核意见" in r.get_data(as_text=True)
    assert auth.post("/appeals/1/review", {"decision": "accepted", "note": "属实"}).status_code == 303
    appeal = client.get("/api/v1/appeals/1").get_json()
    assert appeal["status"] == "accepted" and appeal["votes"] == 2 and appeal["reviewed_by"] == "city"
    # the map counts only the 满意 vote now; the votes are still in the store
    assert _mudan(client)["n"] == 1
    assert len(list(cases.votes(app.extensions["manyi"].clock.now() - timedelta(hours=1),
                                app.extensions["manyi"].clock.now(), devices=[DEVICE_A]))) == 3
    # the case may now close as 申诉已采纳
    assert 'value="appeal"' in client.get("/cases/1").get_data(as_text=True)
    assert auth.post("/cases/1/close", {"code": "appeal"}).status_code == 303
    assert client.get("/api/v1/cases/1").get_json()["close_label"] == "申诉已采纳"
    entries = audit_entries(get_db(app), action="appeal.")
    assert sorted(e["action"] for e in entries) == ["appeal.file", "appeal.review"]
    # the audit page names the actions and every detail in Chinese
    from analytics.web.admin import audit_action_label, audit_detail

    with app.test_request_context():
        for entry in entries + audit_entries(get_db(app), action="case."):
            label = audit_action_label(entry["action"])
            text = audit_detail(entry["detail"], entry["action"])
            assert label != entry["action"], entry["action"]
            keys = [part.split("：")[0] for part in text.split("；") if part]
            assert all(not key.isascii() for key in keys), (entry["action"], text)


def test_api_files_with_a_token_and_checks_its_input(app, client, cases, api_token, clock):
    headers = {"Authorization": f"Bearer {api_token('county')}"}
    client.get("/api/v1/cases", headers=headers)
    r = client.post("/api/v1/appeals", json={"target_kind": "vote", "target_ref": f"{DEVICE_A}:1",
                                             "kind": "malicious", "reason": "恶意"}, headers=headers)
    assert r.status_code == 400 and "评价时间" in r.get_json()["message"]
    moment = (clock.now() - timedelta(minutes=6)).isoformat()
    r = client.post("/api/v1/appeals", json={"target_kind": "vote", "target_ref": f"{DEVICE_A}:1", "time": moment,
                                             "kind": "malicious", "reason": "恶意"}, headers=headers)
    assert r.status_code == 200 and r.get_json()["votes"] == 1
    appeal_id = r.get_json()["id"]
    assert client.post(f"/api/v1/appeals/{appeal_id}/review", json={"decision": "accepted"},
                       headers=headers).status_code == 403
    r = client.post(f"/api/v1/appeals/{appeal_id}/withdraw", headers=headers)
    assert r.status_code == 200 and r.get_json()["status"] == "withdrawn"
    assert client.post("/api/v1/appeals", json=["not", "an", "object"], headers=headers).status_code == 400
    r = client.post("/api/v1/appeals", json={"target_kind": "vote", "target_ref": f"{DEVICE_A}:1", "time": "yesterday",
                                             "kind": "malicious", "reason": "恶意"}, headers=headers)
    assert r.status_code == 400


def test_the_assessment_office_reads_but_does_not_file(client, auth, cases):
    auth.login("assessor")
    assert client.get("/appeals").status_code == 200
    assert "form-appeal" not in client.get("/appeals").get_data(as_text=True)
    assert AuthActions(client).post("/appeals", {"target_kind": "case", "target_ref": "1", "kind": "mistaken",
                                                 "reason": "x"}).status_code == 403
