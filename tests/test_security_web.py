"""Security of the control center, with the route list generated from the app's url_map.

Every rule of ``create_app().url_map`` is either in PUBLIC (with the reason it may be
public) or in ACCESS (the roles that may use it); a new route in neither fails
``test_every_route_is_classified``, and every generated test (anonymous, role, CSRF,
headers, reflected XSS) covers it by itself. Existing tests this file builds on and does
not repeat: tests/test_web_auth.py (login, open redirect, lock-out per name/address/worker,
CSRF on forms, cookie flags, tokens, hostile user names), test_web_cases.py,
test_web_drill.py and test_web_live.py (county scoping and escaping per feature).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook

from analytics.web import create_app
from analytics.center.accounts import audit_entries, create_token, create_user, set_password
from analytics.web.context import get_db, get_store, resources
from analytics.web.cursors import CursorSealer
from plugin_web import DEVICE_A, DEVICE_B, FAST_HASH, PASSWORD, USERS, AuthActions, write_votes

# Routes anyone may use without logging in, and why.
PUBLIC = {
    "auth.login": "the login form itself (POST is CSRF-checked and rate limited)",
    "auth.logout": "POST only and CSRF-checked; ending an anonymous session is harmless",
    "static": "CSS, JavaScript and icons: no data",
    "assets.plotly_js": "the plotly library file from the installed package",
    "assets.favicon": "the tab icon",
    "assets.topojson": "a constant, empty base map (the name is never used to open a file)",
    "openapi.openapi_json": "the API description: paths and parameters, no data",
}
ALL_USERS = frozenset(USERS)
EVERYONE = ALL_USERS - {"security", "auditor"}     # the users who see data (三员分立: not those two)
# endpoint -> the users (see plugin_web.USERS) that may use it; every other logged-in user gets 403.
ACCESS = {
    "live.index": EVERYONE, "terminals.terminals": EVERYONE, "live.api_map": EVERYONE, "live.api_feed": EVERYONE,
    "live.api_stream": EVERYONE, "terminals.api_terminals": EVERYONE, "auth.api_me": ALL_USERS,
    "admin.audit_page": {"auditor"}, "admin.api_audit": {"auditor"}, "admin.users": {"admin", "security"}, "admin.add_user": {"admin"},
    "admin.user_action": {"admin"}, "auth.revoke_token_view": {"security"}, "auth.issue_token_view": {"security"},
    "auth.account": ALL_USERS,
    "alerts.index": EVERYONE, "alerts.api_alerts": EVERYONE, "alerts.api_rules": EVERYONE, "alerts.ack": EVERYONE,
    "alerts.api_ack": EVERYONE, "alerts.save_rule": {"admin", "city"}, "alerts.delete_rule": {"admin", "city"},
    "cases.index": EVERYONE, "cases.detail": EVERYONE, "cases.export": EVERYONE, "cases.api_list": EVERYONE,
    "cases.api_detail": EVERYONE, "cases.act": {"admin", "city", "county"},
    "cases.api_act": {"admin", "city", "county"},
    "cases.settings": {"admin", "city"},
    "appeals.index": EVERYONE, "appeals.detail": EVERYONE, "appeals.act": {"admin", "city", "county"},
    "appeals.file": {"admin", "city", "county"}, "appeals.api_file": {"admin", "city", "county"},
    "appeals.api_appeals": EVERYONE, "appeals.api_detail": EVERYONE, "appeals.api_act": {"admin", "city", "county"},
    "drill.city": EVERYONE, "drill.unit": EVERYONE, "drill.api_city": EVERYONE, "drill.api_unit": EVERYONE,
    "rankings.index": EVERYONE, "rankings.export": EVERYONE, "rankings.api_rankings": EVERYONE,
    "imports.index": {"admin", "assessor"}, "imports.upload": {"admin", "assessor"},
    "imports.template": {"admin", "assessor"}, "imports.api_history": {"admin", "assessor"},
    "imports.api_upload": {"admin", "assessor"}, "imports.report": {"admin", "city", "assessor"},
    "documents.bulletins": {"admin", "city", "assessor"}, "documents.bulletin": {"admin", "city", "assessor"},
    "documents.bulletin_form": {"admin", "city", "assessor"}, "documents.api_indicators": EVERYONE,
    "documents.api_upward": {"admin", "assessor"}, "documents.bulletin_file": {"admin", "city", "assessor"},
}
# Values for the URL variables: everything points into 牡丹区 (371702), the county of user "county".
SAMPLE_VALUES = {"case_id": 1, "alert_id": 1, "appeal_id": 1, "rule_id": 999, "token_id": 999, "username": "nobody", "level": "county",
                 "code": "371702", "kind": "survey", "fmt": "csv", "name": "world_110m", "filename": "app.css",
                 "month": "2026-10"}
SAMPLE_ACTIONS = {"admin.user_action": "enable", "cases.act": "note", "cases.api_act": "note",
                  "appeals.act": "withdraw", "appeals.api_act": "withdraw"}
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
FORMULA = '=HYPERLINK("http://evil.example","点我")'
EVIL_USER = '<b>x</b><img/src=x/onerror=alert(3)>'       # user names have no spaces
EVIL_FILE = '<img src=x onerror=alert(4)>.csv'              # file names have no slashes


def rules(app):
    """(endpoint, method, url) of every rule of the app, with sample values filled in."""
    adapter = app.url_map.bind("localhost")
    out = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        values = {arg: SAMPLE_ACTIONS[rule.endpoint] if arg == "action" else SAMPLE_VALUES[arg]
                  for arg in rule.arguments}
        url = adapter.build(rule.endpoint, values, force_external=False)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, url))
    return out


# Where a route's full work is not what a test is about: a query that passes the access checks and
# then stops early (404 for an unknown published result) instead of computing a quarter.
QUICK = {"imports.report": "?result=999999", "rankings.index": "?result=999999",
         "documents.bulletin_form": "?format=docx", "documents.api_upward": "?format=xml",
         "documents.api_indicators": "?level=nope",
         "rankings.export": "?result=999999", "rankings.api_rankings": "?result=999999"}


def quick_rules(app):
    """rules(app) with the QUICK queries added."""
    return [(endpoint, method, url + QUICK.get(endpoint, "")) for endpoint, method, url in rules(app)]


def is_api(url: str) -> bool:
    return url.startswith("/api/")


@pytest.fixture
def sec_app(app):
    """The test app with a short event stream and a case and an alert in each county."""
    app.config["STREAM_MAX_SECONDS"] = 0.05
    now = app.extensions["manyi"].clock.now()
    write_votes(get_store(app), [(DEVICE_A, "unsatisfied", now - timedelta(minutes=m)) for m in (20, 10, 1)])
    write_votes(get_store(app), [(DEVICE_B, "unsatisfied", now - timedelta(minutes=m)) for m in (19, 9, 2)])
    return app


def logged_in(app, username: str, password: str = PASSWORD):
    """A test client logged in as ``username`` (asserts the login worked)."""
    client = app.test_client()
    response = AuthActions(client).login(username, password)
    assert response.status_code == 302, (username, response.status_code)
    return client


def anonymous_with_csrf(app):
    """An anonymous client whose session holds a CSRF token, so a refusal comes from the login check."""
    client = app.test_client()
    return client, AuthActions(client).csrf()


# --- the route inventory ---------------------------------------------------------------------

def test_every_route_is_classified(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    unclassified = endpoints - set(PUBLIC) - set(ACCESS)
    assert not unclassified, f"new routes: add them to PUBLIC (with a reason) or ACCESS: {sorted(unclassified)}"
    stale = (set(PUBLIC) | set(ACCESS)) - endpoints
    assert not stale, f"classified routes that no longer exist: {sorted(stale)}"
    assert not set(PUBLIC) & set(ACCESS)


def test_every_non_public_route_refuses_anonymous(sec_app):
    client, token = anonymous_with_csrf(sec_app)
    failures = []
    checked = 0
    for endpoint, method, url in rules(sec_app):
        if endpoint in PUBLIC:
            continue
        response = client.open(url, method=method, data={"csrf_token": token} if method == "POST" else None)
        body = response.get_data(as_text=True)
        checked += 1
        if is_api(url):
            ok = response.status_code == 401 and response.json["error"] == "unauthorized"
        else:
            ok = response.status_code == 302 and response.headers["Location"].startswith("/login")
        if not ok:
            failures.append((method, url, response.status_code, body[:80]))
    assert checked >= 40
    assert not failures, failures


def test_public_routes_serve_no_data(sec_app):
    client = sec_app.test_client()
    for endpoint, method, url in rules(sec_app):
        if endpoint not in PUBLIC or method != "GET":
            continue
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.get_data()
        response.close()
        for secret in (DEVICE_A.encode(), b"371702001", b"csrf_token\":", b"test-secret"):
            assert secret not in body, (url, secret)


def test_every_route_by_role(sec_app):
    failures = []
    for username in ("admin", "city", "assessor", "county", "security", "auditor"):
        client = logged_in(sec_app, username)
        token = AuthActions(client).csrf()
        for endpoint, method, url in quick_rules(sec_app):
            if endpoint in PUBLIC:
                continue
            response = client.open(url, method=method, data={"csrf_token": token} if method == "POST" else None,
                                   headers={"X-CSRF-Token": token} if method == "POST" else None)
            status = response.status_code
            response.close()
            allowed = username in ACCESS[endpoint]
            if allowed and (status in (401, 403) or (status == 302 and "/login" in response.headers["Location"])):
                failures.append((username, method, url, status, "refused"))
            if not allowed and status != 403:
                failures.append((username, method, url, status, "not refused"))
    assert not failures, failures


# --- another county's account --------------------------------------------------------------

def other_county_requests(app):
    """Requests of user "county" (牡丹区) about 曹县 (371721): every one must be refused."""
    from analytics import alerts as al
    db = get_db(app)
    al.evaluate(get_store(app), db, app.extensions["manyi"].registry, app.extensions["manyi"].clock.now())
    alerts = {a["county_code"]: a["id"] for a in al.list_alerts(db, counties=None, limit=50)}
    assert "371721" in alerts, alerts
    reg = app.extensions["manyi"].registry
    where = reg.current_location(DEVICE_B)
    return [
        ("GET", "/drill/county/371721"), ("GET", "/api/v1/drill/county/371721"),
        ("GET", f"/drill/township/{where.township_code}"), ("GET", f"/api/v1/drill/hall/{where.hall_id}"),
        ("GET", f"/drill/window/{where.window_id}"), ("GET", f"/api/v1/drill/terminal/{DEVICE_B}"),
        ("GET", "/cases/2"), ("GET", "/api/v1/cases/2"), ("GET", "/cases?county=371721"),
        ("GET", "/api/v1/cases?county=371721"), ("GET", "/cases/export.csv?county=371721"),
        ("GET", "/cases/export.xlsx?county=371721"), ("GET", "/api/v1/terminals?county=371721"),
        ("POST", "/cases/2/note"), ("POST", "/api/v1/cases/2/close"), ("POST", "/cases/2/assign"),
        ("POST", f"/alerts/{alerts['371721']}/ack"), ("POST", f"/api/v1/alerts/{alerts['371721']}/ack"),
    ]


def test_another_countys_account_is_refused_everywhere(sec_app, api_token):
    requests = other_county_requests(sec_app)
    client = logged_in(sec_app, "county")
    token = AuthActions(client).csrf()
    bearer = {"Authorization": f"Bearer {api_token('county')}"}
    failures = []
    for method, url in requests:
        response = client.open(url, method=method, data={"csrf_token": token, "text": "x", "reason": "x",
                                                         "assignee": "x"} if method == "POST" else None)
        if response.status_code != 403:
            failures.append(("session", method, url, response.status_code))
        if is_api(url):
            response = sec_app.test_client().open(url, method=method, headers=bearer, json={"reason": "x"})
            if response.status_code != 403:
                failures.append(("token", method, url, response.status_code))
    assert not failures, failures
    case = get_db(sec_app).query("SELECT status, assignee FROM cases WHERE id = 2")[0]
    assert (case["status"], case["assignee"]) == ("open", None)
    assert not audit_entries(get_db(sec_app), action="alert.ack")


def test_no_route_shows_a_county_user_another_countys_terminals(sec_app):
    """Crawl every GET route the county user may open: 曹县's terminal and hall never appear."""
    reg = sec_app.extensions["manyi"].registry
    hall_b = reg.halls[reg.current_location(DEVICE_B).hall_id].name
    client = logged_in(sec_app, "county")
    leaks = []
    for endpoint, method, url in rules(sec_app):
        if endpoint in PUBLIC or method != "GET" or "county" not in ACCESS[endpoint]:
            continue
        extras = {"rankings.index": ("?level=township",), "rankings.export": ("?level=township",),
                  "rankings.api_rankings": ("?level=township",), "live.api_map": ("", "?period=quarter")}
        for extra in extras.get(endpoint, ("",)):
            response = client.get(url + extra)
            if response.mimetype in ("text/csv", "text/html", "application/json", "text/event-stream"):
                body = response.get_data(as_text=True)
                for secret in (DEVICE_B, hall_b):
                    if secret in body:
                        leaks.append((url + extra, secret))
            response.close()
    assert not leaks, leaks


# --- CSRF ------------------------------------------------------------------------------------

def test_every_post_route_refuses_a_missing_forged_or_foreign_csrf_token(sec_app):
    """Before any view runs: nothing is changed and nothing is audited."""
    admin = logged_in(sec_app, "admin")
    other = logged_in(sec_app, "city")
    foreign = AuthActions(other).csrf()              # a valid token, but of another session
    before = len(audit_entries(get_db(sec_app), limit=10_000))
    posts = [(endpoint, url) for endpoint, method, url in rules(sec_app) if method == "POST"]
    assert len(posts) >= 14
    failures = []
    for endpoint, url in posts:
        for label, kwargs in (("missing", {}), ("forged", {"data": {"csrf_token": "forged"}}),
                              ("forged header", {"headers": {"X-CSRF-Token": "x" * 43}}),
                              ("foreign", {"data": {"csrf_token": foreign}}),
                              ("json", {"json": {"csrf_token": foreign, "reason": "x"}})):
            response = admin.post(url, **kwargs)
            if response.status_code != 400:
                failures.append((url, label, response.status_code))
            elif is_api(url) and response.json["error"] != "csrf":
                failures.append((url, label, response.json))
    assert not failures, failures
    assert len(audit_entries(get_db(sec_app), limit=10_000)) == before
    assert admin.get("/api/v1/me").json["username"] == "admin"          # still logged in


def test_csrf_token_is_per_session_and_changes_at_login(sec_app):
    client = sec_app.test_client()
    anonymous_token = AuthActions(client).csrf()
    AuthActions(client).login("city")
    assert AuthActions(client).csrf() != anonymous_token
    response = client.post("/cases/1/note", data={"csrf_token": anonymous_token, "text": "x"})
    assert response.status_code == 400


# --- session -----------------------------------------------------------------------------

def cookie_of(client, app) -> str:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return cookie.value


def with_cookie(app, value: str):
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    return client


def test_a_cookie_planted_before_login_is_not_logged_in_after(sec_app):
    attacker = sec_app.test_client()
    attacker.get("/login")
    planted = cookie_of(attacker, sec_app)
    victim = with_cookie(sec_app, planted)            # e.g. set by a sibling sub-domain
    response = AuthActions(victim).login("admin")
    assert response.status_code == 302
    assert cookie_of(victim, sec_app) != planted
    assert victim.get("/api/v1/me").json["username"] == "admin"
    assert attacker.get("/api/v1/me").status_code == 401
    assert with_cookie(sec_app, planted).get("/api/v1/me").status_code == 401


def test_logout_invalidates_a_copied_session_cookie(sec_app):
    client = logged_in(sec_app, "admin")
    copied = cookie_of(client, sec_app)
    assert with_cookie(sec_app, copied).get("/api/v1/me").status_code == 200
    AuthActions(client).logout()
    replay = with_cookie(sec_app, copied)
    assert replay.get("/api/v1/me").status_code == 401
    assert replay.get("/").status_code == 302


def test_logging_in_again_ends_the_previous_session(sec_app):
    client = logged_in(sec_app, "city")
    copied = cookie_of(client, sec_app)
    assert AuthActions(client).login("admin").status_code == 302
    assert client.get("/api/v1/me").json["username"] == "admin"
    assert with_cookie(sec_app, copied).get("/api/v1/me").status_code == 401


def test_token_use_is_recorded_at_most_once_a_minute(sec_app, api_token, clock):
    token = api_token("city")
    bearer = {"Authorization": f"Bearer {token}"}
    db = get_db(sec_app)

    def last_used():
        return db.query("SELECT last_used FROM api_tokens ORDER BY id DESC LIMIT 1")[0]["last_used"]
    sec_app.test_client().get("/api/v1/me", headers=bearer)
    first = last_used()
    clock.advance(30)
    sec_app.test_client().get("/api/v1/me", headers=bearer)
    assert last_used() == first
    clock.advance(31)
    sec_app.test_client().get("/api/v1/me", headers=bearer)
    assert last_used() > first


def test_password_reset_ends_the_users_other_sessions(sec_app):
    client = logged_in(sec_app, "city")
    set_password(get_db(sec_app), "city", "a-new-password-1")
    assert client.get("/api/v1/me").status_code == 401
    assert logged_in(sec_app, "city", "a-new-password-1").get("/api/v1/me").status_code == 200


def test_session_expires_on_the_server_after_its_lifetime(sec_app):
    """Even a cookie whose browser expiry was tampered with: the server dates the session itself (wall clock)."""
    client = logged_in(sec_app, "city")
    copied = cookie_of(client, sec_app)
    lifetime = sec_app.config["PERMANENT_SESSION_LIFETIME"]
    db = get_db(sec_app)

    def backdate(age):
        at = (datetime.now(timezone.utc) - age).isoformat(timespec="seconds")
        db.execute("UPDATE web_sessions SET created_at = ?", (at,))
    backdate(lifetime - timedelta(minutes=1))
    assert client.get("/api/v1/me").status_code == 200
    backdate(lifetime + timedelta(minutes=1))
    assert client.get("/api/v1/me").status_code == 401
    assert with_cookie(sec_app, copied).get("/api/v1/me").status_code == 401


def test_login_cookie_flags_when_secure_is_configured(sec_app):
    sec_app.config["SESSION_COOKIE_SECURE"] = True
    client = sec_app.test_client()
    page = client.get("/login", base_url="https://localhost").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", base_url="https://localhost",
                           data={"username": "city", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


# --- login throttling and user enumeration --------------------------------------------------

def test_unknown_disabled_and_wrong_password_look_the_same(sec_app, monkeypatch):
    """Same status, same message and exactly one password hash check each (no timing difference)."""
    from analytics.center import accounts as auth_module
    from analytics.center.accounts import set_disabled
    create_user(get_db(sec_app), "gone", PASSWORD, "city", method=FAST_HASH)
    set_disabled(get_db(sec_app), "gone", True)
    checks = []
    real = auth_module.check_password_hash
    monkeypatch.setattr(auth_module, "check_password_hash", lambda h, p: checks.append(h.split(":")[0]) or real(h, p))
    pages = {}
    for name, password in (("city", "wrong-password"), ("nobody-here", "wrong-password"), ("gone", PASSWORD)):
        checks.clear()
        response = AuthActions(sec_app.test_client()).login(name, password)
        pages[name] = (response.status_code, re.search(r'class="error[^"]*"[^>]*>([^<]*)<',
                                                        response.get_data(as_text=True)).group(1))
        assert len(checks) == 1, (name, checks)
    assert len(set(pages.values())) == 1, pages
    assert pages["city"] == (401, "用户名或密码错误")


def test_unknown_names_lock_out_like_real_ones(sec_app):
    auth = AuthActions(sec_app.test_client())
    for _ in range(5):
        assert auth.login("no-such-user", "guess-guess").status_code == 401
    locked = auth.login("no-such-user", "guess-guess")
    assert locked.status_code == 429
    assert "登录失败次数过多" in locked.get_data(as_text=True) and "15分钟" in locked.get_data(as_text=True)


def test_lockout_message_states_the_configured_window(sec_app):
    sec_app.config["LOGIN_WINDOW_SECONDS"] = 30 * 60
    auth = AuthActions(sec_app.test_client())
    for _ in range(5):
        auth.login("county", "bad-password")
    assert "30分钟" in auth.login("county", PASSWORD).get_data(as_text=True)


def test_forwarded_for_header_does_not_escape_the_address_limit(sec_app):
    """Without a configured proxy a client cannot pretend to be many addresses."""
    sec_app.config["LOGIN_MAX_FAILURES_IP"] = 3
    for n in range(3):
        client = sec_app.test_client()
        token = AuthActions(client).csrf()
        response = client.post("/login", headers={"X-Forwarded-For": f"10.9.0.{n}"},
                               data={"username": f"guess{n}", "password": "nope-nope", "csrf_token": token})
        assert response.status_code == 401
    client = sec_app.test_client()
    token = AuthActions(client).csrf()
    response = client.post("/login", headers={"X-Forwarded-For": "10.9.9.9"},
                           data={"username": "city", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 429


# --- security headers -----------------------------------------------------------------------

def test_every_response_carries_the_security_headers(sec_app):
    anonymous = sec_app.test_client()
    admin = logged_in(sec_app, "admin")
    missing = []
    for endpoint, method, url in quick_rules(sec_app):
        if method != "GET":
            continue
        for who, client in (("anonymous", anonymous), ("admin", admin)):
            response = client.get(url)
            h = response.headers
            csp = h.get("Content-Security-Policy", "")
            problems = [name for name, ok in (
                ("nosniff", h.get("X-Content-Type-Options") == "nosniff"),
                ("frame", h.get("X-Frame-Options") == "DENY" and "frame-ancestors 'none'" in csp),
                ("csp", "default-src 'self'" in csp and "script-src 'self'" in csp and "object-src 'none'" in csp
                 and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]),
                ("referrer", h.get("Referrer-Policy") == "same-origin"),
                ("no-store", who == "anonymous" or endpoint in PUBLIC or "no-store" in h.get("Cache-Control", "")),
            ) if not ok]
            response.close()
            if problems:
                missing.append((who, url, response.status_code, problems))
    assert not missing, missing


def test_no_hsts_over_plain_http(sec_app):
    assert "Strict-Transport-Security" not in sec_app.test_client().get("/login").headers


# --- API tokens ----------------------------------------------------------------------------

def test_api_tokens_work_only_on_the_api(sec_app, api_token):
    """A token is for scripts reading /api/; it opens no page and submits no form (no CSRF bypass)."""
    bearer = {"Authorization": f"Bearer {api_token('admin')}"}
    client = sec_app.test_client()
    assert client.get("/api/v1/me", headers=bearer).status_code == 200
    for method, url in (("GET", "/"), ("GET", "/audit"), ("GET", "/cases/export.csv"), ("GET", "/reports"),
                        ("POST", "/admin/users"), ("POST", "/cases/1/close")):
        response = client.open(url, method=method, headers=bearer,
                               data={"username": "viatoken", "password": "long-enough-1", "role": "admin",
                                     "reason": "x"})
        assert response.status_code == 401, (method, url, response.status_code)
    assert get_db(sec_app).query("SELECT COUNT(*) AS n FROM users WHERE username = 'viatoken'")[0]["n"] == 0


def test_api_token_grants_only_its_users_role(sec_app, api_token):
    failures = []
    for username in ("city", "assessor", "county"):
        bearer = {"Authorization": f"Bearer {api_token(username)}"}
        for endpoint, method, url in quick_rules(sec_app):
            if not is_api(url) or endpoint in PUBLIC:
                continue
            response = sec_app.test_client().open(url, method=method, headers=bearer, json={})
            status = response.status_code
            response.close()
            if username not in ACCESS[endpoint] and status != 403:
                failures.append((username, method, url, status))
            if username in ACCESS[endpoint] and status in (401, 403):
                failures.append((username, method, url, status))
    assert not failures, failures


def test_revoked_token_stops_working_and_cli_lists_tokens(sec_app, capsys):
    from analytics.center.accounts import list_tokens, revoke_token
    from manyi.cli import main
    token = create_token(get_db(sec_app), "city", "nightly export")
    bearer = {"Authorization": f"Bearer {token}"}
    assert sec_app.test_client().get("/api/v1/me", headers=bearer).status_code == 200
    [row] = [t for t in list_tokens(get_db(sec_app)) if t["name"] == "nightly export"]
    assert token not in json.dumps(row, default=str) and row["last_used"]
    assert main(["token", "list", "--db", sec_app.config["CENTER_DB"]]) == 0
    assert f"{row['id']}\tcity\tnightly export" in capsys.readouterr().out
    revoke_token(get_db(sec_app), row["id"])
    assert sec_app.test_client().get("/api/v1/me", headers=bearer).status_code == 401
    assert main(["token", "revoke", "999", "--db", sec_app.config["CENTER_DB"]]) == 2


# --- script and formula injection ----------------------------------------------------------

@pytest.fixture
def hostile(tmp_path, heze, clock):
    """An app whose unit names, case notes, user name and alert rule carry markup and formulas."""
    registry = copy.deepcopy(heze)
    where = registry.current_location(DEVICE_A)
    registry.counties["371702"] = dataclasses.replace(registry.counties["371702"], name=SCRIPT + "区")
    registry.townships[where.township_code] = dataclasses.replace(registry.townships[where.township_code],
                                                                  name=FORMULA)
    registry.halls[where.hall_id] = dataclasses.replace(registry.halls[where.hall_id], name=IMG + "大厅")
    registry.windows[where.window_id] = dataclasses.replace(registry.windows[where.window_id],
                                                            name="@SUM(1+1)*cmd|' /C calc'!A0")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "CENTER_DB": str(tmp_path / "c.db"),
                      "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}", "REGISTRY": registry, "CLOCK": clock,
                      "BACKGROUND_WORKERS": False, "SESSION_COOKIE_SECURE": False, "STREAM_MAX_SECONDS": 0.05,
                      "STREAM_POLL_SECONDS": 0.01, "MAP_CACHE_SECONDS": 0.0})
    db = get_db(app)
    create_user(db, "admin", PASSWORD, "admin", method=FAST_HASH)
    create_user(db, EVIL_USER, PASSWORD, "city", method=FAST_HASH)
    write_votes(get_store(app), [(DEVICE_A, "unsatisfied", clock.now() - timedelta(minutes=m)) for m in (20, 10, 1)])
    client = logged_in(app, "admin")
    actions = AuthActions(client)
    for action, data in (("assign", {"assignee": EVIL_USER}), ("note", {"text": SCRIPT + IMG}),
                         ("callback", {"result": "不满意", "note": "-2+3+cmd|' /C calc'!A0"}),
                         ("rectify", {"note": FORMULA + IMG}), ("revisit", {"result": "满意", "note": SCRIPT}),
                         ("close", {"code": "other", "reason": "+" + SCRIPT})):
        response = actions.post(f"/cases/1/{action}", data)
        assert response.status_code == 303, (action, response.get_data(as_text=True)[:300])
    response = actions.post("/alerts/rules", {"name": SCRIPT + FORMULA, "kind": "burst", "n": "2", "minutes": "30",
                                              "enabled": "1"})
    assert response.status_code == 303
    AuthActions(app.test_client()).login(EVIL_USER, PASSWORD)       # the name is now in the audit log
    yield app, client
    resources(app).close()


RAW_MARKUP = ("<script>alert(1)", "<img src=x", "<img/src=x", "<b>x</b>")


def test_hostile_text_is_escaped_on_every_page(hostile):
    """Every GET page and the report viewed inline: markup from names and notes shows as text."""
    app, client = hostile
    raw = []
    pages = 0
    for endpoint, method, url in rules(app):
        if method != "GET" or endpoint in PUBLIC:
            continue
        extras = {"rankings.index": ("?level=township",), "imports.report": ("?format=html&inline=1",)}
        for extra in extras.get(endpoint, ("",)):
            response = client.get(url + extra)
            if response.mimetype == "text/html":
                pages += 1
                body = response.get_data(as_text=True)
                raw += [(url + extra, bit) for bit in RAW_MARKUP if bit in body]
            response.close()
    for url in ("/cases/1", "/drill/hall/" + app.extensions["manyi"].registry.current_location(DEVICE_A).hall_id):
        body = client.get(url).get_data(as_text=True)
        assert "&lt;script&gt;alert(1)" in body or "&lt;img src=x" in body, url
        raw += [(url, bit) for bit in RAW_MARKUP if bit in body]
    assert pages >= 12
    assert not raw, raw


def test_reflected_parameters_are_escaped(hostile):
    app, client = hostile
    params = {key: SCRIPT + IMG for key in ("quarter", "level", "sort", "order", "county", "status", "period",
                                            "from", "to", "days", "action", "user", "assignee", "result", "format",
                                            "limit", "after", "problems", "next", "overdue")}
    raw = []
    for endpoint, method, url in rules(app):
        if method != "GET":
            continue
        for who in (client, app.test_client()):
            response = who.get(url, query_string=params)
            if response.mimetype == "text/html":
                body = response.get_data(as_text=True)
                raw += [(url, bit) for bit in RAW_MARKUP if bit in body]
            response.close()
    page = AuthActions(app.test_client()).login(SCRIPT, "wrong-password").get_data(as_text=True)
    assert SCRIPT not in page and "&lt;script&gt;" in page
    assert not raw, raw


def test_live_json_and_stream_carry_names_as_data(hostile):
    """JSON is served as JSON (nosniff), the stream keeps one event per vote, and the pages insert text only."""
    app, client = hostile
    feed = client.get("/api/v1/feed")
    assert feed.mimetype == "application/json" and feed.headers["X-Content-Type-Options"] == "nosniff"
    assert feed.json["items"][-1]["county_name"] == SCRIPT + "区"
    figure = json.dumps(client.get("/api/v1/map").json["figure"], ensure_ascii=False)
    assert "<script>" not in figure and "<img" not in figure
    stream = client.get(f"/api/v1/stream?after={CursorSealer(app.config['SECRET_KEY']).seal('0')}").get_data(as_text=True)
    events = [block for block in stream.split("\n\n") if "event: vote" in block]
    assert len(events) == 3
    for block in events:
        lines = block.split("\n")
        assert [line.split(":")[0] for line in lines] == ["id", "event", "data"]
        assert json.loads(lines[2][len("data: "):])["hall_name"] == IMG + "大厅"
    for name in ("app.js", "live.js", "alerts.js", "drill.js"):
        script = client.get(f"/static/{name}").get_data(as_text=True)
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script), name


def test_stream_framing_survives_line_breaks_in_names(tmp_path, heze, clock):
    registry = copy.deepcopy(heze)
    where = registry.current_location(DEVICE_A)
    registry.halls[where.hall_id] = dataclasses.replace(registry.halls[where.hall_id],
                                                        name="x\r\n\r\nevent: admin\ndata: {}\n\n")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "CENTER_DB": str(tmp_path / "c.db"),
                      "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}", "REGISTRY": registry, "CLOCK": clock,
                      "BACKGROUND_WORKERS": False, "SESSION_COOKIE_SECURE": False, "STREAM_MAX_SECONDS": 0.05})
    try:
        create_user(get_db(app), "city", PASSWORD, "city", method=FAST_HASH)
        write_votes(get_store(app), [(DEVICE_A, "satisfied", clock.now())])
        stream = logged_in(app, "city").get(f"/api/v1/stream?after={CursorSealer('t').seal('0')}").get_data(as_text=True)
        lines = re.split(r"\r\n|\r|\n", stream)           # how an EventSource splits the stream
        assert [line for line in lines if line.startswith("event:")] == ["event: vote"]
        [data] = [line for line in lines if line.startswith("data:")]
        assert json.loads(data[5:])["hall_name"].startswith("x\r\n\r\nevent: admin")
    finally:
        resources(app).close()


def formula_cells(values) -> list:
    """Cells a spreadsheet would run as a formula (numbers such as -0.5 are fine)."""
    bad = []
    for value in values:
        if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            try:
                float(value)
            except ValueError:
                bad.append(value)
    return bad


def test_exports_neutralise_formulas(hostile):
    app, client = hostile
    downloads = ["/cases/export.csv", "/cases/export.xlsx", "/rankings/export.csv?level=township",
                 "/rankings/export.xlsx?level=township", "/reports?format=csv", "/reports?format=xlsx"]
    seen = set()
    for url in downloads:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["Content-Disposition"].startswith("attachment;"), url
        data = response.get_data()
        if "xlsx" in url:
            book = load_workbook(io.BytesIO(data))
            cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
            assert not [c.coordinate for c in cells if c.data_type == "f"], url
            values = [c.value for c in cells]
        else:
            values = [v for row in csv.reader(io.StringIO(data.decode("utf-8-sig"))) for v in row]
        assert not formula_cells(values), (url, formula_cells(values))
        seen |= {v for v in values if isinstance(v, str)}
    # the hostile text is in the files, as text
    assert "'" + FORMULA in seen and "'-2+3+cmd|' /C calc'!A0" in seen and "'+" + SCRIPT in seen
    assert "'@SUM(1+1)*cmd|' /C calc'!A0" in seen


# --- path traversal -----------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../auth.py", "/static/..%2fauth.py", "/static/%2e%2e/%2e%2e/manyi/settings.py",
    "/static/..%5c..%5cauth.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
    "/assets/topojson/..%2f..%2f..%2fetc%2fpasswd.json", "/assets/topojson/../../auth.json",
    "/imports/template/..%2f..%2fauth.csv", "/imports/template/survey.csv%2f..%2f..%2fauth.py",
    "/cases/export.csv%2f..%2f..%2fauth.py", "/rankings/export.py", "/rankings/export.%2e%2e%2fauth.py",
    "/reports?format=../../analytics/web/auth.py", "/reports?quarter=../../etc/passwd&format=csv",
    "/drill/hall/..%2f..%2fetc%2fpasswd", "/api/v1/drill/terminal/..%2F..%2Fvar%2Fcenter.db",
    "/admin/users/..%2fadmin/disable",
]


def test_path_traversal_reads_no_file(sec_app):
    client = logged_in(sec_app, "admin")
    leaks = []
    for url in TRAVERSALS:
        method = "POST" if url.endswith("/disable") else "GET"
        response = client.open(url, method=method, data={"csrf_token": AuthActions(client).csrf()})
        body = response.get_data()
        response.close()
        for secret in (b"root:x:0:0", b"def authenticate", b"class Settings", b"SQLite format 3"):
            if secret in body:
                leaks.append((url, secret))
        if url.startswith("/assets/topojson/") and response.status_code == 200:
            assert json.loads(body) == {"type": "Topology", "objects": {}, "arcs": []}
        elif response.status_code not in (400, 403, 404, 405, 308):
            leaks.append((url, response.status_code))
    assert not leaks, leaks
    assert not get_db(sec_app).query("SELECT 1 FROM users WHERE disabled = 1")


def test_download_names_cannot_break_the_header_or_leave_the_folder(sec_app):
    from analytics.web.tables import download
    with sec_app.test_request_context():
        response = download(b"x", '../../etc/pass"wd\r\nSet-Cookie: a=b;.csv', "csv")
    disposition = response.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition and "/" not in disposition.split("filename*")[0]
    assert 'filename="' in disposition and disposition.count('"') == 2
    assert "Set-Cookie" not in response.headers


def test_links_never_obey_url_for_specials_from_the_query(sec_app):
    """?_external=1&_scheme=javascript must not turn the export and sort links into javascript: URLs."""
    client = logged_in(sec_app, "city")
    query = {"_external": "1", "_scheme": "javascript", "_anchor": "x", "fmt": "pdf", "level": "township",
             "code": "x", "x": "\nalert(1)"}
    for url in ("/cases", "/rankings", "/drill/county/371702", "/drill"):
        response = client.get(url, query_string=query, follow_redirects=True)
        assert response.status_code == 200, (url, response.status_code)
        hrefs = re.findall(r'href="([^"]*)"', response.get_data(as_text=True))
        assert hrefs and not [h for h in hrefs if not h.startswith(("/", "#", "?"))], (url, hrefs)


def test_survey_notes_and_file_names_with_markup_stay_text(client, auth, app):
    survey = ("日期,手机号,县区,乡镇(街道),评价,备注\n"
              f"2026-07-15,13800001234,牡丹区,东城街道,满意,{SCRIPT}\n"
              f"2026-07-16,13800001235,曹县,,不满意,{FORMULA.replace(',', '，')}\n").encode("utf-8")
    auth.login("admin")
    response = auth.post("/imports/survey", {"quarter": "2026Q3", "file": (io.BytesIO(survey), EVIL_FILE)},
                         content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    notes = [r["note"] for r in get_db(app).query("SELECT note FROM survey_answers ORDER BY source_row")]
    assert notes[0] == SCRIPT
    for username, url in (("admin", "/imports"), ("auditor", "/audit")):
        auth.login(username)
        body = client.get(url).get_data(as_text=True)
        assert not [bit for bit in RAW_MARKUP if bit in body], url
    assert "&lt;img src=x onerror=alert(4)&gt;.csv" in body
    assert audit_entries(get_db(app), action="import.survey")[0]["detail"]["file"] == EVIL_FILE


@pytest.mark.parametrize("evil", ["/\\evil.example", "/\\/evil.example", "/\t/evil.example", "/%09/x\n/evil",
                                  "\\\\evil.example", " //evil.example", "https:evil.example"])
def test_login_never_redirects_off_site_through_browser_quirks(sec_app, evil):
    """Beyond test_web_auth's //host and scheme checks: browsers turn "\\" into "/" and drop tabs."""
    client = sec_app.test_client()
    response = client.post("/login", query_string={"next": evil},
                           data={"username": "city", "password": PASSWORD, "csrf_token": AuthActions(client).csrf()})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_api_answers_no_cross_origin_reader(sec_app, api_token):
    bearer = {"Authorization": f"Bearer {api_token('city')}", "Origin": "https://evil.example"}
    client = logged_in(sec_app, "city")
    for url in ("/api/v1/me", "/api/v1/feed", "/api/v1/cases"):
        for response in (client.get(url, headers={"Origin": "https://evil.example"}),
                         sec_app.test_client().get(url, headers=bearer)):
            assert response.status_code == 200
            assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")], url
    preflight = sec_app.test_client().options("/api/v1/cases/1/close", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_security_administrator_revokes_a_token_on_the_users_page(sec_app, api_token):
    token = api_token("county")
    bearer = {"Authorization": f"Bearer {token}"}
    assert sec_app.test_client().get("/api/v1/me", headers=bearer).status_code == 200
    admin = logged_in(sec_app, "security")
    page = admin.get("/admin/users").get_data(as_text=True)
    token_id = re.search(r'action="/admin/tokens/(\d+)/revoke"', page).group(1)
    assert token not in page
    assert logged_in(sec_app, "city").post(f"/admin/tokens/{token_id}/revoke").status_code == 400    # no CSRF
    response = AuthActions(admin).post(f"/admin/tokens/{token_id}/revoke", follow_redirects=True)
    assert "已吊销用户 county 的API令牌" in response.get_data(as_text=True)
    assert sec_app.test_client().get("/api/v1/me", headers=bearer).status_code == 401
    assert audit_entries(get_db(sec_app), action="token.revoke")[0]["detail"] == {"username": "county",
                                                                                 "token": int(token_id)}
    assert AuthActions(admin).post("/admin/tokens/999/revoke").status_code == 404
