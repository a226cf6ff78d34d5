"""Access control of the control center over HTTP: who the request is, what its role and
county may open, CSRF, API tokens, login and logout, the request's audit entries.

The roles (三员分立, 等保 2.0 level 3) and the password policy are in analytics.accounts;
users, tokens, sessions, failed logins and the audit log are stored by
analytics.center.accounts (in the center database, so a lock-out holds across worker
processes). The three administrator roles are created only with ``manyi user add`` on the
server: no web page grants them. Logins are throttled per name and address, per address,
and per name from anywhere at a much higher bound (docs/security.md).

Every non-GET request from a browser session must carry the session's CSRF token
(form field ``csrf_token`` or header ``X-CSRF-Token``); requests authenticated with
``Authorization: Bearer <token>`` carry no cookie and are exempt, and a token is accepted
on /api/ paths only (it opens no page and submits no form).

Sessions: the signed cookie holds a random session id whose hash is kept in the
``web_sessions`` table. A login starts a new id (a cookie planted before is worthless),
logout ends it, and a password reset or disabling ends every session of that user, so a
copied cookie stops working on the server and not only in the browser.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)
from markupsafe import Markup, escape


from analytics.accounts import (
    ADMIN_ROLES, MAX_PASSWORD, MAX_USERNAME, PASSWORD_MAX_AGE_DAYS, ROLE_LABELS, AuthError, LoginLocked, User,
    token_hash,
)
from analytics.center.accounts import (
    authenticate, create_token, end_session, forget_old_sessions, get_user, list_tokens, password_matches, password_expired, revoke_token, session_user, set_password,
    start_session, user_for_token, write_audit,
)

from .context import get_clock, get_db

# The security and audit administrators see no data: only these endpoints (and the public ones).
ROLE_ENDPOINTS = {
    "auditor": frozenset({"admin.audit_page", "admin.api_audit", "auth.api_me", "auth.account", "auth.logout"}),
    "security": frozenset({"admin.users", "auth.revoke_token_view", "auth.issue_token_view", "auth.api_me",
                           "auth.account", "auth.logout"}),
}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})











# --- account management (used by the admin pages and the CLI) ------------------------------


# --- server-side session records --------------------------------------------------------------


def audit(action: str, detail: dict | None = None) -> None:
    """Record ``action`` by the current user (or the name being logged in) in the audit log."""
    user = getattr(g, "user", None)
    write_audit(get_db(), action, detail, username=user.username if user else (detail or {}).get("username"),
                role=user.role if user else None, ip=request.remote_addr if request else None,
                now=get_clock().now())




# --- request helpers used by every blueprint ---------------------------------------------

def current_user() -> User | None:
    """The logged-in user of this request, or None."""
    return getattr(g, "user", None)


def visible_counties() -> set[str] | None:
    """County codes the current user may see; None means every county."""
    user = current_user()
    if user is None:
        return set()
    return user.visible_counties()


def check_county(code: str | None) -> None:
    """Abort with 403 when the current user may not see county ``code``."""
    allowed = visible_counties()
    if allowed is not None and code not in allowed:
        abort(403, description="无权查看其他县区的数据")


def is_api_request() -> bool:
    """True for /api/ paths (JSON errors, 401 instead of a redirect)."""
    return request.path.startswith("/api/")


def login_required(view):
    """Refuse anonymous requests: 401 JSON for the API, a redirect to /login for pages."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_user() is None:
            if is_api_request():
                return jsonify(error="unauthorized", message="login or a Bearer token is required"), 401
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapped


def roles_required(*roles: str):
    """Allow only users with one of ``roles`` (implies login_required)."""
    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            user = current_user()
            if user is not None and user.role not in roles:
                abort(403, description="当前角色无权访问此页面")
            return view(*args, **kwargs)
        return login_required(wrapped)
    return decorator


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


def csrf_field() -> Markup:
    """A hidden form input with the CSRF token, for templates: ``{{ csrf_field() }}``."""
    return Markup('<input type="hidden" name="csrf_token" value="%s">') % escape(csrf_token())


def _load_user() -> None:
    g.user = None
    g.via_token = False
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        g.via_token = True
        if not is_api_request():
            return jsonify(error="unauthorized", message="API tokens are accepted on /api/ paths only"), 401
        token = header[7:].strip()[:200]
        user = user_for_token(get_db(), token, get_clock().now())
        if user is None:
            return _unauthorized_token()
        g.user = user
        g.token_hash = token_hash(token)
        return None
    user_id = session.get("user_id")
    if user_id is not None:
        idle = int(current_app.config.get("SESSION_IDLE_MINUTES") or 0)
        user = session_user(get_db(), session.get("sid"), user_id, current_app.permanent_session_lifetime,
                            timedelta(minutes=idle) if idle > 0 else None)
        if user is None:
            session.clear()
        else:
            g.user = user
    return None


def _unauthorized_token():
    return jsonify(error="unauthorized", message="invalid or revoked API token"), 401


def _check_csrf():
    if request.method not in UNSAFE_METHODS or g.via_token or not current_app.config.get("CSRF_ENABLED", True):
        return None
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf_token") or ""
    if not expected or not hmac.compare_digest(sent, expected):
        if is_api_request():
            return jsonify(error="csrf", message="missing or wrong CSRF token"), 400
        abort(400, description="表单已过期或缺少安全令牌（CSRF），请刷新页面后重试")
    return None


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirect)."""
    if not target:
        return url_for("live.index")
    parts = urlsplit(target)
    # Browsers read "/\\evil.example" and "/<tab>/evil.example" as "//evil.example": no backslash, no control character.
    if (parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x20 or ord(c) == 0x7f for c in target)):
        return url_for("live.index")
    return target


bp = Blueprint("auth", __name__)


LOGIN_BODY_LIMIT = 16 * 1024     # bytes of a login form: a name, a password and the CSRF token


def _audit_locked(username: str, now: datetime) -> None:
    """Audit a refused login while locked, at most once a minute per address and name (no disk fill)."""
    key = (request.remote_addr or "?", username)
    stamp = now.timestamp()
    _locked_audited = current_app.extensions.setdefault("manyi_locked_audited", {})
    if stamp - _locked_audited.get(key, 0.0) < 60:
        return
    if len(_locked_audited) > 10_000:
        _locked_audited.clear()
    _locked_audited[key] = stamp
    audit("login.locked", {"username": username})


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; on success the session is renewed (no fixation) and the login audited."""
    error = None
    if request.method == "POST":
        raw_name = request.form.get("username", "")
        username = raw_name.strip()[:MAX_USERNAME + 1]
        password = request.form.get("password", "")
        shown = username[:MAX_USERNAME]
        config = current_app.config
        now = get_clock().now()
        if len(raw_name) > MAX_USERNAME * 4 or len(password) > MAX_PASSWORD:
            # Certainly no account: counted as a failure under a bounded name, never stored whole.
            password = ""
        try:
            user = authenticate(get_db(), username, password, request.remote_addr or "?", now,
                                max_user=config["LOGIN_MAX_FAILURES"], max_ip=config["LOGIN_MAX_FAILURES_IP"],
                                max_user_any=config["LOGIN_MAX_FAILURES_ANY"],
                                window=timedelta(seconds=config["LOGIN_WINDOW_SECONDS"]))
        except LoginLocked:
            _audit_locked(shown, now)
            minutes = max(1, -(-int(config["LOGIN_WINDOW_SECONDS"]) // 60))
            error = f"登录失败次数过多，已暂时锁定，请{minutes}分钟后再试"
            return render_template("login.html", error=error, username=shown), 429
        if user is None:
            audit("login.failed", {"username": shown})
            error = "用户名或密码错误"
            return render_template("login.html", error=error, username=shown), 401
        db = get_db()
        end_session(db, session.get("sid"))       # logging in again (as anyone) ends the previous session
        session.clear()
        session.permanent = True
        session["user_id"] = user.id
        session["sid"] = start_session(db, user, request.remote_addr)
        forget_old_sessions(db, current_app.permanent_session_lifetime)
        csrf_token()
        g.user = user
        audit("login", {"username": user.username})
        if password_expired(db, user):
            flash(f"您的密码已超过{PASSWORD_MAX_AGE_DAYS}天未更换，请先修改密码", "error")
            return redirect(url_for("auth.account"))
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, username="")


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    """Change one's own password (the old one is asked for); administrators must every 90 days."""
    user, db = current_user(), get_db()
    expired = password_expired(db, user)
    if request.method == "POST":
        old, new = request.form.get("old_password", ""), request.form.get("new_password", "")
        try:
            if not password_matches(db, user.id, old):
                raise AuthError("当前密码不正确")
            if new != request.form.get("new_password2", ""):
                raise AuthError("两次输入的新密码不一致")
            if old == new:
                raise AuthError("新密码不能与当前密码相同")
            set_password(db, user.username, new)
        except AuthError as exc:
            audit("account.password_failed", {})
            return render_template("account.html", error=str(exc), expired=expired), 400
        audit("account.password", {})
        session.clear()
        flash("密码已修改，请用新密码重新登录")
        return redirect(url_for("auth.login"))
    return render_template("account.html", error=None, expired=expired)


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session (POST with CSRF, so another site cannot log a user out)."""
    if current_user() is not None:
        audit("logout", {})
    end_session(get_db(), session.get("sid"))
    session.clear()
    flash("已退出登录")
    return redirect(url_for("auth.login"))


@bp.route("/admin/tokens/<int:token_id>/revoke", methods=["POST"])
@roles_required("security")
def revoke_token_view(token_id: int):
    """Revoke an API token from the user administration page (security administrator)."""
    try:
        username = revoke_token(get_db(), token_id)
    except AuthError:
        abort(404, description=f"API令牌 {token_id} 不存在")
    audit("token.revoke", {"username": username, "token": token_id})
    flash(f"已吊销用户 {username} 的API令牌 #{token_id}")
    return redirect(url_for("admin.users"), code=303)


@bp.route("/admin/users/<username>/token", methods=["POST"])
@roles_required("security")
def issue_token_view(username: str):
    """Issue an API token (security administrator). The token is shown once, in this response
    only: never in a redirect's flash message, which would carry it in the session cookie."""
    user = get_user(get_db(), username)
    if user is None:
        abort(404, description=f"用户 {username} 不存在")
    if user.role in ADMIN_ROLES:
        abort(403, description="不能为管理员账户生成API令牌")
    name = request.form.get("name", "")[:100]
    token = create_token(get_db(), username, name, now=get_clock().now())
    audit("token.add", {"username": username, "name": name})
    response = current_app.make_response(render_template("token_issued.html", username=username, token=token,
                                                           name=name))
    response.headers["Cache-Control"] = "no-store"
    return response


def api_tokens() -> list[dict]:
    """Template helper of the admin page: every API token (never the token itself)."""
    return list_tokens(get_db())


def init_app(app) -> None:
    """Install user loading, CSRF checking, security headers and the template helpers."""
    app.before_request(_before)
    app.after_request(_security_headers)
    from .tables import link_args
    app.jinja_env.globals.update(csrf_field=csrf_field, csrf_token=csrf_token, current_user=current_user,
                                 role_labels=ROLE_LABELS, link_args=link_args, api_tokens=api_tokens)
    from .limits import RateLimiter, StreamSlots
    app.extensions["manyi_api_rate"] = RateLimiter(app.config["API_RATE_PER_SECOND"], app.config["API_RATE_BURST"])
    app.extensions["manyi_streams"] = StreamSlots(app.config["STREAM_MAX_PER_ACCOUNT"], app.config["STREAM_MAX_TOTAL"])


def principal() -> tuple[str, object] | None:
    """Whom per-account limits count against: the API token when one is used, else the user."""
    user = current_user()
    if user is None:
        return None
    if g.via_token:
        return ("token", g.token_hash)
    return ("user", user.id)


def _rate_limit():
    key = principal()
    if key is None or not is_api_request():
        return None
    wait = current_app.extensions["manyi_api_rate"].allow(key)
    if not wait:
        return None
    response = jsonify(error="rate_limited", message="too many API requests for this account or token; slow down")
    response.status_code = 429
    response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
    return response


def _before():
    if request.endpoint in PUBLIC_ASSETS:
        return None
    if request.endpoint == "auth.login" and request.method == "POST":
        # Before anything reads the form (the CSRF check does): an anonymous request may not make us
        # read and hold megabytes, nor store them.
        request.max_content_length = LOGIN_BODY_LIMIT
    response = _load_user()
    if response is not None:
        return response
    response = _check_csrf() or _rate_limit()
    if response is not None:
        return response
    return _role_gate()


def _role_gate():
    """The security and audit administrators reach only their own pages (三员分立); an administrator
    whose password has expired reaches only the password page."""
    user = current_user()
    if user is None or request.endpoint in (None, "auth.login") or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    allowed = ROLE_ENDPOINTS.get(user.role)
    if allowed is not None and request.endpoint not in allowed:
        abort(403, description="当前角色无权访问此页面")
    if (user.role in ADMIN_ROLES and not g.via_token and request.endpoint not in ("auth.account", "auth.logout")
            and password_expired(get_db(), user)):
        if is_api_request():
            return jsonify(error="password_expired", message="the password must be changed at /account"), 403
        return redirect(url_for("auth.account"))
    return None


PUBLIC_ASSETS = frozenset({"static", "assets.plotly_js", "assets.favicon", "assets.topojson"})
PUBLIC_ENDPOINTS = PUBLIC_ASSETS | {"openapi.openapi_json"}


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
    if request.is_secure and current_app.config.get("SESSION_COOKIE_SECURE"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    # Everything comes from this server: no CDN, no tiles, no inline scripts.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'")
    if current_user() is not None and request.endpoint not in PUBLIC_ASSETS:
        # A logged-in user's pages, JSON and downloads are never kept by the browser or a proxy.
        cache = response.headers.get("Cache-Control", "")
        if "no-store" not in cache:
            response.headers["Cache-Control"] = f"no-store, {cache}" if cache else "no-store"
    return response


@bp.route("/api/v1/me")
@login_required
def api_me():
    """Who the request is authenticated as, and what it may see."""
    user = current_user()
    visible = visible_counties()
    return jsonify(username=user.username, role=user.role, county_code=user.county_code,
                   visible_counties=None if visible is None else sorted(visible))
