"""The control center: a Flask app built only by :func:`create_app`.

One blueprint per concern, each only translating HTTP into calls of the analytics
packages (docs/architecture.md): auth (login, account, tokens), assets, live (map, feed,
stream), terminals, admin (users, audit log), openapi, rankings, drill, cases, alerts and
imports. Each blueprint module exposes ``bp``, optionally ``init_app(app)`` and
``OPENAPI_PATHS``; nav.py builds the navigation every page shares.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
from datetime import timedelta

from flask import Flask, jsonify, render_template, request

from manyi.settings import DEFAULT_CENTER_DB, DEFAULT_STORE_URL, env_value

log = logging.getLogger(__name__)

# In the order of the navigation.
BLUEPRINTS = [
    "analytics.web.assets",
    "analytics.web.live",
    "analytics.web.terminals",
    "analytics.web.admin",
    "analytics.web.openapi",
    "analytics.web.rankings",
    "analytics.web.drill",
    "analytics.web.cases",
    "analytics.web.appeals",
    "analytics.web.alerts",
    "analytics.web.imports",
    "analytics.web.documents",
]

DEFAULTS = dict(
    STORE_URL=DEFAULT_STORE_URL,
    CENTER_DB=DEFAULT_CENTER_DB,
    REGISTRY_PATH=None,                 # None: the shipped Heze sample registry
    BACKGROUND_WORKERS=True,
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
    SESSION_COOKIE_SECURE=True,         # `manyi serve --insecure-cookies` for plain http on 127.0.0.1
    SESSION_COOKIE_NAME="manyi_session",
    PERMANENT_SESSION_LIFETIME=timedelta(hours=10),
    SESSION_IDLE_MINUTES=30,            # a session unused this long ends (等保 2.0: 登录连接超时自动退出); 0: never
    MAX_CONTENT_LENGTH=20 * 1024 * 1024,
    CSRF_ENABLED=True,
    LOGIN_MAX_FAILURES=5,               # per user name and client address within LOGIN_WINDOW_SECONDS
    LOGIN_MAX_FAILURES_IP=20,           # per client address within LOGIN_WINDOW_SECONDS
    LOGIN_MAX_FAILURES_ANY=100,         # per user name from any address (a guess spread over many addresses)
    LOGIN_WINDOW_SECONDS=15 * 60,
    PROXY_COUNT=0,                      # reverse proxies in front (nginx: 1): client address from X-Forwarded-For
    STREAM_POLL_SECONDS=0.3,            # how often an SSE stream polls store.feed()
    STREAM_MAX_SECONDS=300.0,           # a stream ends after this; EventSource reconnects with Last-Event-ID
    STREAM_MAX_PER_ACCOUNT=4,           # live streams one account or API token may hold at once
    STREAM_MAX_TOTAL=24,                # live streams in all (`manyi serve` sets threads - 8): the rest stay free
    API_RATE_PER_SECOND=20.0,           # /api/ requests per account or token: average rate ...
    API_RATE_BURST=100,                 # ... and burst; beyond it 429 with Retry-After
    MAP_CACHE_SECONDS=3.0,              # /api/v1/map results shared by users of one scope for this long
    SILENT_MINUTES=60,                  # online, hall open, and no vote for this long -> "silent"
    OFFLINE_MINUTES=10,                 # no status or vote for this long -> treated as offline
    BULLETIN_DIR="",                    # scheduled monthly bulletins ("": bulletins/ beside CENTER_DB)
    PUBLIC_URL="",                      # the control center's address as users reach it, for links in notifications
    NOTIFY_WEBHOOKS="",                 # comma-separated http(s) webhooks (e.g. 企业微信 group robots) told of bulletins
)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the control-center app; ``test_config`` overrides DEFAULTS and MANYI_WEB_* settings."""
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.update(env_config(os.environ))
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        # A random key logs everyone out at restart; `manyi serve` keeps one in a file instead.
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    app.json.ensure_ascii = False
    if int(app.config["PROXY_COUNT"]) > 0:
        # Behind nginx every request comes from 127.0.0.1: trust exactly that many X-Forwarded-* hops,
        # so the audit log and the per-address login limit see the real client.
        from werkzeug.middleware.proxy_fix import ProxyFix
        hops = int(app.config["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from . import auth, context, nav
    context.init_app(app)
    auth.init_app(app)
    nav.init_app(app)
    app.register_blueprint(auth.bp)
    app.extensions["manyi_openapi"] = []
    app.extensions["manyi_nav"] = []
    for name in BLUEPRINTS:
        _register(app, name)
    _error_handlers(app)
    return app


def env_config(environ) -> dict:
    """Settings from ``MANYI_WEB_<KEY>`` variables (e.g. MANYI_WEB_SILENT_MINUTES=30), typed like DEFAULTS."""
    from manyi.exc import ConfigError
    from manyi.settings import _coerce

    values = {}
    for key in (*DEFAULTS, "SECRET_KEY"):
        text = env_value(f"WEB_{key}", environ)
        if not text:
            continue
        default = DEFAULTS.get(key)
        if isinstance(default, timedelta):
            raise ConfigError(f"MANYI_WEB_{key} cannot be set from the environment")
        kind = type(default) if default is not None else str
        values[key] = _coerce(key, kind, text, f"environment MANYI_WEB_{key}")
    return values


def _register(app: Flask, name: str) -> None:
    module = importlib.import_module(name)
    app.register_blueprint(module.bp)
    if hasattr(module, "init_app"):
        module.init_app(app)
    if hasattr(module, "OPENAPI_PATHS"):
        app.extensions["manyi_openapi"].append(module.OPENAPI_PATHS)
    app.extensions["manyi_nav"].append(module.bp.name)


def _error_handlers(app: Flask) -> None:
    def handler(code: int, title: str):
        def handle(exc):
            description = getattr(exc, "description", "") or title
            if request.path.startswith("/api/"):
                return jsonify(error=title, message=description), code
            return render_template("error.html", code=code, title=title, message=description), code
        return handle

    from manyi.exc import StoreError

    def store_unavailable(exc):
        log.error("control center: vote store unavailable: %s", exc)
        message = "数据存储暂不可用，请稍后重试"
        if request.path.startswith("/api/"):
            return jsonify(error="store_unavailable", message=message), 503
        return render_template("error.html", code=503, title="服务暂不可用", message=message), 503

    app.register_error_handler(StoreError, store_unavailable)
    for code, title in ((400, "请求无效"), (401, "未登录"), (403, "无权访问"), (404, "页面不存在"),
                        (405, "方法不允许"), (413, "文件过大"), (429, "请求过多")):
        app.register_error_handler(code, handler(code, title))
