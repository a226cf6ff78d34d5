"""Alerts page and API: live list per county, rules editor for admin/city, CSRF, validation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from analytics import alerts as al
from analytics.center.accounts import audit_entries
from analytics.web.context import get_db
from plugin_web import DEVICE_A, DEVICE_B, write_votes

ROLES = ("admin", "city", "assessor", "county", "county2")


@pytest.fixture
def burst_a(web_store, clock):
    """Three unsatisfied votes within 20 minutes at one 牡丹区 window: fires the default burst rule."""
    write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now() - timedelta(minutes=m)) for m in (20, 10, 1)])
    return web_store


def test_anonymous_refused(client):
    assert client.get("/alerts").status_code == 302
    assert client.get("/api/v1/alerts").status_code == 401
    assert client.get("/api/v1/alert-rules").status_code == 401


@pytest.mark.parametrize("user", ROLES)
def test_every_role_sees_its_alerts(client, auth, burst_a, user):
    auth.login(user)
    page = client.get("/alerts")
    assert page.status_code == 200
    alerts = client.get("/api/v1/alerts").get_json()["alerts"]
    if user == "county2":
        assert alerts == []
    else:
        assert len(alerts) == 1 and alerts[0]["county_code"] == "371702"
        assert "30 分钟内 3 次不满意" in page.get_data(as_text=True)
    assert len(client.get("/api/v1/alert-rules").get_json()["rules"]) == 3
    assert ("new-burst" in page.get_data(as_text=True)) == (user in ("admin", "city"))


def test_below_threshold_no_alert_then_one_more_vote_fires(client, auth, web_store, clock):
    write_votes(web_store, [(DEVICE_B, "unsatisfied", clock.now() - timedelta(minutes=m)) for m in (45, 20)])
    auth.login("county2")
    assert client.get("/api/v1/alerts").get_json()["alerts"] == []
    # a third vote 31 minutes after the first: still only two within 30 minutes
    write_votes(web_store, [(DEVICE_B, "unsatisfied", clock.now() - timedelta(minutes=14))])
    assert client.get("/api/v1/alerts").get_json()["alerts"] == []
    write_votes(web_store, [(DEVICE_B, "unsatisfied", clock.now() - timedelta(minutes=10))])
    data = client.get("/api/v1/alerts?after=0").get_json()
    assert len(data["alerts"]) == 1
    # polling after the last id returns nothing new, and nothing is raised twice
    assert client.get(f"/api/v1/alerts?after={data['last_id']}").get_json()["alerts"] == []
    assert client.get("/api/v1/alerts?after=x").status_code == 400


def test_ack_scoped_and_audited(client, auth, burst_a):
    auth.login("county2")
    assert auth.post("/alerts/1/ack").status_code == 403
    auth.logout()
    auth.login("county")
    assert client.post("/alerts/1/ack").status_code == 400              # no CSRF token
    assert auth.post("/alerts/1/ack").status_code == 303
    assert client.get("/api/v1/alerts").get_json()["alerts"][0]["ack_by"] == "county"
    assert auth.post("/alerts/99/ack").status_code == 404
    assert [e["action"] for e in audit_entries(get_db(client.application), action="alert.")] == ["alert.ack"]


def test_rules_editor(client, auth, web_store, clock):
    auth.login("county")
    assert auth.post("/alerts/rules", {"name": "x", "kind": "burst", "n": "2", "minutes": "5"}).status_code == 403
    auth.logout()
    auth.login("assessor")
    assert auth.post("/alerts/rules", {"name": "x", "kind": "burst", "n": "2", "minutes": "5"}).status_code == 403
    auth.logout()
    auth.login("city")
    r = auth.post("/alerts/rules", {"name": "两次即报", "kind": "burst", "n": "2", "minutes": "5", "enabled": "1"})
    assert r.status_code == 303
    r = auth.post("/alerts/rules", {"name": "坏规则", "kind": "low_rate", "threshold": "85", "min_votes": "5",
                                    "level": "galaxy"})
    assert r.status_code == 400 and "level" in r.get_data(as_text=True)
    assert client.post("/alerts/rules", data={"name": "x", "kind": "burst", "n": "2", "minutes": "5"}).status_code == 400
    rules = client.get("/api/v1/alert-rules").get_json()["rules"]
    new = [r for r in rules if r["name"] == "两次即报"][0]
    assert new["params"] == {"n": 2, "minutes": 5}
    # the new rule fires on two votes within 5 minutes
    write_votes(web_store, [(DEVICE_B, "unsatisfied", clock.now() - timedelta(minutes=m)) for m in (3, 1)])
    alerts = client.get("/api/v1/alerts").get_json()["alerts"]
    assert [a["rule_name"] for a in alerts] == ["两次即报"]
    # disable it (checkbox absent) and change it
    r = auth.post(f"/alerts/rules/{new['id']}", {"name": "两次即报", "kind": "burst", "n": "4", "minutes": "5"})
    assert r.status_code == 303
    changed = [r for r in client.get("/api/v1/alert-rules").get_json()["rules"] if r["id"] == new["id"]][0]
    assert changed["enabled"] is False and changed["params"]["n"] == 4
    assert auth.post(f"/alerts/rules/{new['id']}/delete").status_code == 303
    assert auth.post(f"/alerts/rules/{new['id']}/delete").status_code == 404
    actions = {e["action"] for e in audit_entries(get_db(client.application), action="settings.alert")}
    assert actions == {"settings.alert_rule", "settings.alert_rule.delete"}


def test_low_rate_rule_through_the_api(client, auth, web_store, clock):
    db = get_db(client.application)
    for rule in al.list_rules(db):
        al.delete_rule(db, rule.id)
    al.save_rule(db, name="县区低于85%", kind="low_rate", params={"threshold": 0.85, "min_votes": 10, "level": "county"})
    # 曹县 today: 17 satisfied + 3 unsatisfied spread over the morning = 85%: no alert
    start = clock.now() - timedelta(hours=1)
    write_votes(web_store, [(DEVICE_B, "satisfied", start + timedelta(minutes=i)) for i in range(17)]
                + [(DEVICE_B, "unsatisfied", start + timedelta(minutes=20 * i)) for i in range(3)])
    auth.login("admin")
    assert client.get("/api/v1/alerts").get_json()["alerts"] == []
    write_votes(web_store, [(DEVICE_B, "unsatisfied", clock.now())])        # 17/21 = 81%
    (alert,) = client.get("/api/v1/alerts").get_json()["alerts"]
    assert alert["scope_name"] == "曹县" and alert["n"] == 21


def test_api_token_scoping(client, burst_a, api_token):
    headers = {"Authorization": f"Bearer {api_token('county2')}"}
    assert client.get("/api/v1/alerts", headers=headers).get_json()["alerts"] == []
    assert client.post("/api/v1/alerts/1/ack", headers=headers).status_code == 403
    headers = {"Authorization": f"Bearer {api_token('county')}"}
    assert client.post("/api/v1/alerts/1/ack", headers=headers).get_json()["ack_by"] == "county"


def test_feature_api_paths_are_in_the_openapi_document(client, auth):
    auth.login("admin")
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/cases", "/api/v1/cases/{case_id}", "/api/v1/cases/{case_id}/{action}", "/api/v1/alerts",
                 "/api/v1/alerts/{alert_id}/ack", "/api/v1/alert-rules", "/api/v1/drill", "/api/v1/drill/{level}/{code}",
                 "/api/v1/rankings", "/api/v1/imports", "/api/v1/imports/{kind}"):
        assert path in paths, path
    # every /api/v1 rule of the feature blueprints is documented
    rules = {r.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
             for r in client.application.url_map.iter_rules()
             if r.endpoint.split(".")[0] in ("cases", "alerts", "drill", "rankings", "imports")
             and r.rule.startswith("/api/v1")}
    assert rules <= set(paths), rules - set(paths)
