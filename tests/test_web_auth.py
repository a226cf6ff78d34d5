"""Access control of the control center: login, roles, CSRF, cookies, rate limiting, tokens, audit, users."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest

from analytics.web import create_app
from analytics.accounts import AuthError, LoginLocked
from analytics.center.accounts import audit_entries, authenticate, create_token, create_user, get_user, set_disabled, set_password
from analytics.web.context import get_db
from plugin_web import PASSWORD, USERS

DATA_USERS = set(USERS) - {"security", "auditor"}      # the security and audit administrators see no data
ROLES_PAGES = {"/": DATA_USERS, "/terminals": DATA_USERS, "/audit": {"auditor"}, "/admin/users": {"admin", "security"},
               "/account": set(USERS)}


def test_passwords_are_stored_hashed_with_scrypt_by_default(app):
    create_user(get_db(app), "fresh", PASSWORD, "city")
    row = get_db(app).query("SELECT password_hash FROM users WHERE username = 'fresh'")[0]
    assert PASSWORD not in row["password_hash"]
    assert row["password_hash"].startswith("scrypt:")


def test_login_success_redirects_home_and_audits(client, auth, app):
    response = auth.login("city")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/api/v1/me").json == {"username": "city", "role": "city", "county_code": None,
                                             "visible_counties": None}
    entry = audit_entries(get_db(app), action="login")[0]
    assert (entry["action"], entry["username"], entry["role"]) == ("login", "city", "city")


def test_login_follows_next_but_never_off_site(client, auth):
    assert client.get("/terminals").headers["Location"] == "/login?next=/terminals"
    response = client.post("/login?next=/terminals", data={"username": "city", "password": PASSWORD,
                                                           "csrf_token": auth.csrf()})
    assert response.headers["Location"] == "/terminals"
    auth.logout()
    for evil in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = client.post("/login", query_string={"next": evil},
                               data={"username": "city", "password": PASSWORD, "csrf_token": auth.csrf()})
        assert response.headers["Location"] == "/", evil
        auth.logout()


def test_wrong_password_and_unknown_user_are_refused_and_audited(client, auth, app):
    response = auth.login("city", "wrong-password")
    assert response.status_code == 401
    assert "用户名或密码错误" in response.get_data(as_text=True)
    assert auth.login("nobody", "whatever-123").status_code == 401
    assert client.get("/api/v1/me").status_code == 401
    failed = audit_entries(get_db(app), action="login.failed")
    assert {e["detail"]["username"] for e in failed} == {"city", "nobody"}


def test_logout_ends_the_session(client, auth, app):
    auth.login("admin")
    assert client.get("/api/v1/me").status_code == 200
    response = auth.logout()
    assert response.headers["Location"] == "/login"
    assert client.get("/api/v1/me").status_code == 401
    assert audit_entries(get_db(app), action="logout")[0]["username"] == "admin"


def test_session_is_renewed_at_login(client, auth):
    before = auth.csrf()
    auth.login("city")
    assert auth.csrf() != before


def test_five_failures_lock_the_name_at_that_address_for_fifteen_minutes(client, auth, clock, app):
    for _ in range(5):
        assert auth.login("county", "bad-password").status_code == 401
    locked = auth.login("county", PASSWORD)          # even the right password is refused meanwhile
    assert locked.status_code == 429
    assert "锁定" in locked.get_data(as_text=True)
    assert audit_entries(get_db(app), action="login.locked")
    assert auth.login("city").status_code == 302      # other names are not affected
    auth.logout()
    clock.advance(15 * 60 + 1)
    assert auth.login("county").status_code == 302


def test_lockout_is_shared_by_every_worker_through_the_center_db(app, clock, heze, tmp_path):
    db = get_db(app)
    for _ in range(5):
        assert authenticate(db, "city", "bad", "127.0.0.1", clock.now()) is None     # the test client's address
    other = create_app({"TESTING": True, "CENTER_DB": app.config["CENTER_DB"], "REGISTRY": heze, "CLOCK": clock,
                        "STORE_URL": app.config["STORE_URL"], "SESSION_COOKIE_SECURE": False})
    client = other.test_client()
    page = client.get("/login").get_data(as_text=True)
    import re
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": "city", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 429


def test_failures_at_another_address_do_not_lock_the_user_out(app, clock):
    """A hostile client that guesses a user's password locks itself out, not the user."""
    db = get_db(app)
    for _ in range(5):
        assert authenticate(db, "city", "bad", "10.9.9.9", clock.now()) is None
    with pytest.raises(LoginLocked):
        authenticate(db, "city", PASSWORD, "10.9.9.9", clock.now())
    assert authenticate(db, "city", PASSWORD, "10.0.0.1", clock.now()).username == "city"


def test_a_name_guessed_from_many_addresses_is_locked_everywhere(app, clock):
    db = get_db(app)
    for n in range(100):
        assert authenticate(db, "city", "bad", f"10.1.{n // 250}.{n % 250}", clock.now()) is None
    with pytest.raises(LoginLocked):
        authenticate(db, "city", PASSWORD, "10.0.0.1", clock.now())


def test_one_address_guessing_many_names_is_locked(client, auth, app):
    app.config["LOGIN_MAX_FAILURES_IP"] = 3
    for name in ("a1", "a2", "a3"):
        assert auth.login(name, "guess-guess").status_code == 401
    assert auth.login("admin").status_code == 429


def test_csrf_token_required_on_every_form_post(client, auth, app):
    assert client.post("/login", data={"username": "admin", "password": PASSWORD}).status_code == 400
    auth.login("admin")
    response = client.post("/admin/users", data={"username": "mallory", "password": "long-enough-1", "role": "city"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    response = client.post("/admin/users", data={"username": "mallory", "password": "long-enough-1", "role": "city",
                                                 "csrf_token": "forged"})
    assert response.status_code == 400
    assert get_user(get_db(app), "mallory") is None
    assert client.post("/logout").status_code == 400
    assert client.get("/api/v1/me").status_code == 200    # still logged in
    assert auth.post("/admin/users", {"username": "mallory", "password": "long-enough-1", "role": "city"}).status_code == 302
    assert get_user(get_db(app), "mallory") is not None


def test_csrf_header_is_accepted_for_script_posts(client, auth):
    auth.login("admin")
    response = client.post("/admin/users", headers={"X-CSRF-Token": auth.csrf()},
                           data={"username": "viajs", "password": "long-enough-1", "role": "city"})
    assert response.status_code == 302


def test_session_cookie_flags(tmp_path, heze):
    app = create_app({"TESTING": True, "CENTER_DB": str(tmp_path / "c.db"), "REGISTRY": heze,
                      "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}"})
    assert app.config["SESSION_COOKIE_SECURE"] is True          # secure unless told otherwise
    cookie = app.test_client().get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


@pytest.mark.parametrize("path", sorted(ROLES_PAGES))
def test_pages_by_role(app, path):
    for username in USERS:
        client = app.test_client()
        from plugin_web import AuthActions
        AuthActions(client).login(username)
        response = client.get(path)
        expected = 200 if username in ROLES_PAGES[path] else 403
        assert response.status_code == expected, (username, path)
    assert app.test_client().get(path).status_code == 302


def test_admin_api_audit_by_role(client, auth, api_token):
    assert client.get("/api/v1/audit", headers={"Authorization": f"Bearer {api_token('auditor')}"}).status_code == 200
    for username in ("admin", "security", "city", "assessor", "county"):
        response = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {api_token(username)}"})
        assert response.status_code == 403
        assert response.json["error"] == "无权访问"


def test_bearer_token_authenticates_api_with_the_users_scope(client, api_token):
    token = api_token("county")
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json == {"username": "county", "role": "county", "county_code": "371702",
                             "visible_counties": ["371702"]}
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer mny_wrong"}).status_code == 401
    assert client.get("/api/v1/terminals?county=371721", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_token_requests_are_exempt_from_csrf_but_cookie_requests_are_not(client, auth, api_token):
    token = api_token("city")
    # No CSRF token: with a Bearer token the request reaches routing (405: GET-only endpoint) ...
    assert client.post("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 405
    # ... with only a session cookie it is refused before.
    auth.login("city")
    response = client.post("/api/v1/me")
    assert response.status_code == 400 and response.json["error"] == "csrf"


def test_token_of_disabled_user_stops_working(app, client, api_token):
    token = api_token("city")
    set_disabled(get_db(app), "city", True)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_tokens_are_stored_hashed(app):
    token = create_token(get_db(app), "city")
    rows = get_db(app).query("SELECT token_hash FROM api_tokens")
    assert token not in {r["token_hash"] for r in rows}


def test_disabling_a_user_ends_its_session_and_login(app, client, auth):
    auth.login("city")
    set_disabled(get_db(app), "city", True)
    assert client.get("/api/v1/me").status_code == 401
    assert auth.login("city").status_code == 401


def test_admin_adds_disables_resets_and_security_issues_tokens(app, client, auth):
    auth.login("admin")
    response = auth.post("/admin/users", {"username": "newcounty", "password": "long-enough-1", "role": "county",
                                          "county_code": "371722"}, follow_redirects=True)
    assert "已添加用户 newcounty" in response.get_data(as_text=True)
    assert get_user(get_db(app), "newcounty").county_code == "371722"
    response = auth.post("/admin/users", {"username": "nocounty", "password": "long-enough-1", "role": "county"})
    assert response.status_code == 400 and "county code" in response.get_data(as_text=True)
    response = auth.post("/admin/users", {"username": "short", "password": "short", "role": "city"})
    assert response.status_code == 400
    response = auth.post("/admin/users", {"username": "boss", "password": "long-enough-1", "role": "security"})
    assert response.status_code == 400 and get_user(get_db(app), "boss") is None   # 三员 only on the server
    auth.post("/admin/users/newcounty/password", {"password": "another-pass-2"})
    auth.post("/admin/users/newcounty/disable")
    assert get_user(get_db(app), "newcounty").disabled
    assert auth.post("/admin/users/newcounty/token").status_code == 403           # tokens: security administrator
    assert auth.post("/admin/users/admin/disable", follow_redirects=True).status_code == 200
    assert not get_user(get_db(app), "admin").disabled             # administrators are managed on the server only
    assert auth.post("/admin/users/auditor/disable", follow_redirects=True).status_code == 200
    assert not get_user(get_db(app), "auditor").disabled
    actions = [e["action"] for e in audit_entries(get_db(app), action="user.")]
    assert {"user.add", "user.password", "user.disable"} <= set(actions)
    auth.post("/admin/users/newcounty/enable")
    auth.logout()
    auth.login("security")
    response = auth.post("/admin/users/newcounty/token", {"name": "大屏"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "mny_" in page and "no-store" in response.headers["Cache-Control"]
    assert "mny_" not in str(client.get_cookie("manyi_session").value)      # never in the session cookie
    assert audit_entries(get_db(app), action="token.add")[0]["detail"]["username"] == "newcounty"
    auth.logout()
    assert auth.login("newcounty", "another-pass-2").status_code == 302


def test_create_user_validation(app, heze):
    db = get_db(app)
    with pytest.raises(AuthError, match="role"):
        create_user(db, "x1", "long-enough-1", "boss")
    with pytest.raises(AuthError, match="not in the registry"):
        create_user(db, "x2", "long-enough-1", "county", "999999", registry=heze)
    with pytest.raises(AuthError, match="only for role"):
        create_user(db, "x3", "long-enough-1", "city", "371702")
    with pytest.raises(AuthError, match="already exists"):
        create_user(db, "admin", "long-enough-1", "admin")


def test_hostile_username_is_escaped_in_admin_and_audit_pages(app, client, auth):
    create_user(get_db(app), "<script>alert(1)</script>", "long-enough-1", "city")
    auth.login("<script>alert(1)</script>", "wrong-password")
    for username, path in (("admin", "/admin/users"), ("auditor", "/audit")):
        auth.login(username)
        page = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)" not in page, path
        assert "&lt;script&gt;alert(1)" in page, path


def test_cli_user_add_and_token_add(tmp_path, monkeypatch, capsys, heze):
    from manyi.cli import main
    db_path = str(tmp_path / "center.db")
    monkeypatch.setattr("sys.stdin", io.StringIO("cli-password-1\n"))
    assert main(["user", "add", "ops", "--role", "county", "--county", "371702", "--password-stdin",
                 "--db", db_path]) == 0
    assert main(["token", "add", "ops", "--db", db_path]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    assert main(["user", "add", "bad", "--role", "county", "--password-stdin", "--db", db_path]) == 2
    assert "county code" in capsys.readouterr().err
    assert main(["user", "list", "--db", db_path]) == 0
    assert "ops\tcounty\t371702\tactive" in capsys.readouterr().out
    app = create_app({"TESTING": True, "CENTER_DB": db_path, "REGISTRY": heze,
                      "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}"})
    client = app.test_client()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json["username"] == "ops"
    assert {e["action"] for e in audit_entries(get_db(app))} == {"user.add", "token.add"}


def test_behind_a_reverse_proxy_the_real_client_address_is_used(app, heze, clock):
    proxied = create_app({"TESTING": True, "CENTER_DB": app.config["CENTER_DB"], "REGISTRY": heze, "CLOCK": clock,
                          "STORE_URL": app.config["STORE_URL"], "SESSION_COOKIE_SECURE": False, "PROXY_COUNT": 1,
                          "LOGIN_MAX_FAILURES_IP": 2})
    from plugin_web import AuthActions
    for n in range(3):                     # three clients behind the same proxy, one failure each
        client = proxied.test_client()
        headers = {"X-Forwarded-For": f"10.1.0.{n}"}
        client.get("/login", headers=headers)
        actions = AuthActions(client)
        response = client.post("/login", headers=headers,
                               data={"username": f"ghost{n}", "password": "nope-nope", "csrf_token": actions.csrf()})
        assert response.status_code == 401
    ips = {e["ip"] for e in audit_entries(get_db(app), action="login.failed")}
    assert ips == {"10.1.0.0", "10.1.0.1", "10.1.0.2"}


API_ROLES = {"/api/v1/map?figure=0": DATA_USERS, "/api/v1/feed": DATA_USERS, "/api/v1/stream": DATA_USERS,
             "/api/v1/terminals": DATA_USERS, "/api/v1/me": set(USERS), "/api/v1/audit": {"auditor"}}


@pytest.mark.parametrize("path", sorted(API_ROLES))
def test_api_by_role_with_session_and_token(app, api_token, path):
    app.config["STREAM_MAX_SECONDS"] = 0.1
    from plugin_web import AuthActions
    for username in USERS:
        expected = 200 if username in API_ROLES[path] else 403
        client = app.test_client()
        assert client.get(path, headers={"Authorization": f"Bearer {api_token(username)}"}).status_code == expected
        AuthActions(client).login(username)
        assert client.get(path).status_code == expected, (username, path)
    assert app.test_client().get(path).status_code == 401


def test_a_session_left_alone_for_half_an_hour_ends(app, client, auth):
    """等保 2.0 8.1.4.1 b): an idle session ends by itself; an active one is kept alive."""
    auth.login("city")
    assert client.get("/api/v1/me").status_code == 200
    db = get_db(app)
    db.execute("UPDATE web_sessions SET last_seen = ? WHERE ended_at IS NULL",
               ((datetime.now(timezone.utc) - timedelta(minutes=29)).isoformat(timespec="seconds"),))
    assert client.get("/api/v1/me").status_code == 200              # 29 minutes: still alive, and touched again
    assert db.query("SELECT last_seen FROM web_sessions WHERE ended_at IS NULL")[0]["last_seen"] > \
        (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(timespec="seconds")
    db.execute("UPDATE web_sessions SET last_seen = ? WHERE ended_at IS NULL",
               ((datetime.now(timezone.utc) - timedelta(minutes=31)).isoformat(timespec="seconds"),))
    assert client.get("/api/v1/me").status_code == 401
    assert db.query("SELECT count(*) AS n FROM web_sessions WHERE ended_at IS NULL")[0]["n"] == 0


def test_a_password_reset_unlocks_that_name_only(app, clock):
    db = get_db(app)
    create_user(db, "city2", "Other-Pass-77", "city")
    for name in ("city", "city2"):
        for _ in range(5):
            authenticate(db, name, "bad", "10.3.3.3", clock.now())
    set_password(db, "city", "Fresh-Pass-2026")
    assert authenticate(db, "city", "Fresh-Pass-2026", "10.3.3.3", clock.now()).username == "city"
    with pytest.raises(LoginLocked):
        authenticate(db, "city2", "Other-Pass-77", "10.3.3.3", clock.now())
