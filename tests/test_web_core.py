"""Core of the control center: app factory, blueprints, assets, OpenAPI, error pages."""

from __future__ import annotations

import logging
import re

import pytest

from analytics.web import BLUEPRINTS, create_app


def test_create_app_registers_core_and_skips_missing_blueprints(tmp_path, caplog, heze):
    caplog.set_level(logging.WARNING, logger="analytics.web")
    app = create_app({"TESTING": True, "CENTER_DB": str(tmp_path / "c.db"), "REGISTRY": heze,
                      "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}"})
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert {"/", "/login", "/logout", "/terminals", "/audit", "/admin/users", "/api/v1/map", "/api/v1/feed",
            "/api/v1/stream", "/api/v1/terminals", "/api/v1/openapi.json"} <= rules
    assert "analytics.web.rankings" in BLUEPRINTS
    import importlib.util
    missing = [name for name in BLUEPRINTS if importlib.util.find_spec(name) is None]
    for name in missing:
        assert name in caplog.text


def test_index_redirects_anonymous_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_api_refuses_anonymous_with_401_json(client):
    for path in ("/api/v1/map", "/api/v1/feed", "/api/v1/terminals", "/api/v1/stream", "/api/v1/me"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json["error"] == "unauthorized"


def test_plotly_is_served_by_the_app(client):
    response = client.get("/assets/plotly.min.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert b"plotly.js v" in response.data[:200]
    response.close()


def test_empty_topojson_for_the_geo_base_map(client):
    response = client.get("/assets/topojson/world_110m.json")
    assert response.json == {"type": "Topology", "objects": {}, "arcs": []}


def test_static_assets_and_security_headers(client):
    for name in ("app.css", "app.js", "live.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        response.close()
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_reference_no_outside_host(client, auth):
    auth.login("admin")
    for path in ("/", "/terminals", "/audit", "/admin/users", "/login"):
        page = client.get(path).get_data(as_text=True)
        assert "http://" not in page and "https://" not in page and "//cdn" not in page, path


def test_openapi_document_lists_core_paths_and_bearer_auth(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "API token from `manyi token add`"}
    for path in ("/api/v1/map", "/api/v1/feed", "/api/v1/stream", "/api/v1/terminals", "/api/v1/me", "/api/v1/audit"):
        assert path in doc["paths"]


def test_openapi_merges_blueprint_paths(app, client):
    app.extensions["manyi_openapi"].append({"/api/v1/extra": {"get": {"summary": "x", "responses": {}}}})
    assert "/api/v1/extra" in client.get("/api/v1/openapi.json").json["paths"]


def test_every_api_route_is_documented(app, client):
    doc = client.get("/api/v1/openapi.json").json
    api_rules = {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1/")}
    documented = {p.replace("{", "<").replace("}", ">") for p in doc["paths"]}
    undocumented = {rule for rule in api_rules if rule != "/api/v1/openapi.json"
                    and re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule) not in documented}
    assert not undocumented


def test_unknown_page_is_a_chinese_404(client, auth):
    auth.login("city")
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "页面不存在" in response.get_data(as_text=True)
    assert client.get("/api/v1/no-such").json["error"] == "页面不存在"



def test_settings_from_the_environment_are_typed(tmp_path, heze, monkeypatch):
    from analytics.web import env_config
    from manyi.exc import ConfigError
    assert env_config({"MANYI_WEB_SILENT_MINUTES": "30", "MANYI_WEB_SESSION_COOKIE_SECURE": "no",
                       "MANYI_WEB_STREAM_POLL_SECONDS": "0.5", "MANYI_WEB_CENTER_DB": "/x/c.db"}) == {
        "SILENT_MINUTES": 30, "SESSION_COOKIE_SECURE": False, "STREAM_POLL_SECONDS": 0.5, "CENTER_DB": "/x/c.db"}
    with pytest.raises(ConfigError, match="MANYI_WEB_SILENT_MINUTES"):
        env_config({"MANYI_WEB_SILENT_MINUTES": "soon"})
    monkeypatch.setenv("MANYI_WEB_OFFLINE_MINUTES", "3")
    app = create_app({"TESTING": True, "CENTER_DB": str(tmp_path / "c.db"), "REGISTRY": heze})
    assert app.config["OFFLINE_MINUTES"] == 3


def test_manyi_serve_runs_waitress_with_a_kept_secret(tmp_path):
    import subprocess
    import sys
    import urllib.request

    from demo.broker import free_port, wait_for_port
    port = free_port()
    db = tmp_path / "var" / "center.db"
    proc = subprocess.Popen([sys.executable, "-m", "manyi", "serve", "--store", f"sqlite:///{tmp_path / 'v.db'}",
                             "--db", str(db), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as response:
            assert response.status == 200
            cookie = response.headers["Set-Cookie"]
            assert "登录" in response.read().decode("utf-8")
        assert "HttpOnly" in cookie and "Secure" not in cookie       # plain http on loopback
        secret = db.parent / "web-secret.key"
        assert len(secret.read_text().strip()) == 64 and (secret.stat().st_mode & 0o077) == 0
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_serve_config_cookie_secure_outside_loopback(tmp_path):
    import argparse

    from analytics.web.cli import build_config
    args = argparse.Namespace(store=None, db=str(tmp_path / "c.db"), registry=None, host="0.0.0.0",
                              cookie_secure="auto", secret_file=None, no_workers=False)
    assert build_config(args)["SESSION_COOKIE_SECURE"] is True
    args.host = "127.0.0.1"
    assert build_config(args)["SESSION_COOKIE_SECURE"] is False
    args.cookie_secure = "yes"
    assert build_config(args)["SESSION_COOKIE_SECURE"] is True
    assert build_config(args)["SECRET_KEY"] == build_config(args)["SECRET_KEY"]


def test_every_operation_documents_its_answers_and_errors(app, client, api_token):
    """Every operation has a JSON schema for its 200 answer and the 400/401/403/404/429 errors; the real
    answers of the GET routes carry every property their schema requires."""
    from datetime import timedelta

    from analytics.web.context import get_store
    from plugin_web import DEVICE_A, write_votes

    doc = client.get("/api/v1/openapi.json").json
    now = app.extensions["manyi"].clock.now()
    write_votes(get_store(app), [(DEVICE_A, "unsatisfied", now - timedelta(minutes=m)) for m in (20, 10, 1)])
    samples = {"/api/v1/drill/{level}/{code}": "/api/v1/drill/county/371702",
               "/api/v1/rankings": "/api/v1/rankings?quarter=2026Q3&level=county", "/api/v1/map": "/api/v1/map?figure=0"}
    tokens = {"/api/v1/audit": api_token("auditor")}
    admin = api_token("admin")
    checked = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"200", "400", "401", "403", "404", "429"} <= set(responses), (path, method)
            ok = responses["200"]
            if path == "/api/v1/stream":
                continue
            schema = ok["content"]["application/json"]["schema"]
            if method != "get" or "{" in samples.get(path, path):
                continue
            answer = client.get(samples.get(path, path), headers={"Authorization": f"Bearer {tokens.get(path, admin)}"})
            assert answer.status_code == 200, (path, answer.status_code)
            missing = set(schema.get("required", ())) - set(answer.json)
            assert not missing, (path, missing)
            checked += 1
    assert checked >= 10
    assert doc["components"]["responses"]["TooManyRequests"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
