"""Access control of the control center: users, roles, county scoping, CSRF, API tokens, audit log.

Users, failed logins, API tokens and the audit log live in the CenterDB (so a lock-out
holds across worker processes). Passwords are hashed with werkzeug.security; API
tokens are random and stored only as SHA-256 hashes. Roles (三员分立, 等保 2.0 level 3):

- ``admin`` (系统管理员): the data pages, imports, and the accounts of the business roles;
- ``security`` (安全管理员): API tokens (issue, revoke) and the accounts list, no data;
- ``auditor`` (审计管理员): the audit log and nothing else;
- ``city``: city staff, every county;
- ``county``: county staff, only its own county (pages, API, actions);
- ``assessment``: the assessment office, every county, read-mostly.

The three administrator roles are created only with ``manyi user add`` on the server: no
web page grants them. Nobody can change or delete the audit log: the table refuses UPDATE
and DELETE (triggers), and each entry carries a hash chained to the one before it, which
``manyi audit verify`` checks.

Passwords: at least 10 characters of three kinds (lower case, upper case, digits,
others), not containing the user name; administrators must change theirs every
PASSWORD_MAX_AGE_DAYS days. Logins are throttled per name and address, per address, and
per name from anywhere at a much higher bound (docs/security.md).

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
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)
from markupsafe import Markup, escape
from werkzeug.security import check_password_hash, generate_password_hash

from manyi.exc import ManyiError

from .context import get_clock, get_db

ROLES = ("admin", "security", "auditor", "city", "county", "assessment")
ROLE_LABELS = {"admin": "系统管理员", "security": "安全管理员", "auditor": "审计管理员", "city": "市级人员",
               "county": "县区人员", "assessment": "考核办"}
ADMIN_ROLES = frozenset({"admin", "security", "auditor"})      # 三员: created on the server only
BUSINESS_ROLES = ("city", "county", "assessment")              # what the web's user administration may grant
ALL_COUNTY_ROLES = frozenset({"admin", "city", "assessment"})
# The security and audit administrators see no data: only these endpoints (and the public ones).
ROLE_ENDPOINTS = {
    "auditor": frozenset({"live.audit_page", "live.api_audit", "live.api_me", "auth.account", "auth.logout"}),
    "security": frozenset({"live.users", "auth.revoke_token_view", "auth.issue_token_view", "live.api_me",
                           "auth.account", "auth.logout"}),
}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MIN_PASSWORD = 10
MAX_PASSWORD = 256
MAX_USERNAME = 64
PASSWORD_MAX_AGE_DAYS = 90          # administrators (ADMIN_ROLES) must change their password this often

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    county_code TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    last_login TEXT,
    password_changed_at TEXT
);
CREATE TABLE IF NOT EXISTS login_failures (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,          -- 'user' or 'ip'
    key TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures(kind, key, at);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    last_used TEXT,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    username TEXT,
    role TEXT,
    ip TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    chain TEXT                   -- SHA-256 of the previous entry's chain and this entry (tamper evidence)
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log(at);
-- The audit log is append-only: no role, and no code path, may rewrite or erase it.
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS web_sessions (
    id INTEGER PRIMARY KEY,
    sid_hash TEXT NOT NULL UNIQUE,   -- SHA-256 of the id in the cookie
    user_id INTEGER NOT NULL REFERENCES users(id),
    ip TEXT,
    created_at TEXT NOT NULL,        -- wall-clock UTC (not the app clock, which a demo may speed up)
    ended_at TEXT,
    last_seen TEXT                   -- wall-clock UTC of the last request, to the minute (idle timeout)
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions(user_id);
"""


class AuthError(ManyiError, ValueError):
    """A user or token operation was refused (unknown role, bad county, short password, ...)."""


@dataclass(frozen=True)
class User:
    """A control-center account as the request sees it."""

    id: int
    username: str
    role: str
    county_code: str | None = None
    disabled: bool = False

    @property
    def role_label(self) -> str:
        """The role's name in Chinese."""
        return ROLE_LABELS.get(self.role, self.role)

    def visible_counties(self) -> set[str] | None:
        """Counties this user may see: None means all."""
        return None if self.role in ALL_COUNTY_ROLES else {self.county_code}


def _now_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _user(row) -> User:
    return User(row["id"], row["username"], row["role"], row["county_code"], bool(row["disabled"]))


# --- account management (used by the admin pages and the CLI) ------------------------------

def ensure_schema(db) -> None:
    """Create the auth tables in ``db`` if needed (and add the columns newer versions use)."""
    db.ensure(SCHEMA, _upgrade)


def _upgrade(conn) -> None:
    """Columns added after the first release: the password's age and the audit log's hash chain."""
    for table, column, kind in (("users", "password_changed_at", "TEXT"), ("audit_log", "chain", "TEXT"),
                                ("web_sessions", "last_seen", "TEXT")):
        names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in names:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def check_password(password: str, username: str = "") -> None:
    """Raise AuthError unless ``password`` meets the policy (等保 2.0: length and complexity)."""
    password = password or ""
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"password must have at most {MAX_PASSWORD} characters")
    kinds = sum((any(c.islower() for c in password), any(c.isupper() for c in password),
                 any(c.isdigit() for c in password), any(not c.isalnum() for c in password)))
    if kinds < 3:
        raise AuthError("password must mix at least three of: lower case, upper case, digits, other characters")
    if username and username.lower() in password.lower():
        raise AuthError("password must not contain the user name")
    if len(set(password)) < 5:
        raise AuthError("password must have at least 5 different characters")


def _validate(role: str, county_code: str | None, registry=None) -> None:
    if role not in ROLES:
        raise AuthError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "county" and not county_code:
        raise AuthError("a county user needs a county code (--county)")
    if role != "county" and county_code:
        raise AuthError(f"role {role!r} sees every county; a county code is only for role 'county'")
    if county_code and registry is not None and county_code not in registry.counties:
        raise AuthError(f"county {county_code!r} is not in the registry")


def create_user(db, username: str, password: str, role: str, county_code: str | None = None, *,
                registry=None, now: datetime | None = None, method: str | None = None) -> User:
    """Add an account; raise AuthError for a bad role/county, a short password or a taken name.

    ``method`` is werkzeug's hash method (default scrypt); tests pass a cheap one for speed.
    """
    ensure_schema(db)
    username = (username or "").strip()
    if not username or len(username) > MAX_USERNAME or any(c.isspace() for c in username):
        raise AuthError(f"username {username[:MAX_USERNAME]!r} must be 1-{MAX_USERNAME} characters without spaces")
    _validate(role, county_code or None, registry)
    check_password(password, username)
    if db.query("SELECT 1 FROM users WHERE username = ?", (username,)):
        raise AuthError(f"user {username!r} already exists")
    stamp = _now_text(now or datetime.now(timezone.utc))
    changed = _now_text(_wall_now())
    cur = db.execute(
        "INSERT INTO users (username, password_hash, role, county_code, created_at, password_changed_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (username, generate_password_hash(password, **({"method": method} if method else {})), role,
         county_code or None, stamp, changed))
    return User(cur.lastrowid, username, role, county_code or None)


def get_user(db, username: str | None = None, user_id: int | None = None) -> User | None:
    """The account by name or id, or None."""
    ensure_schema(db)
    if user_id is not None:
        rows = db.query("SELECT * FROM users WHERE id = ?", (user_id,))
    else:
        rows = db.query("SELECT * FROM users WHERE username = ?", (username,))
    return _user(rows[0]) if rows else None


def list_users(db) -> list[dict]:
    """Every account with its last login, for the admin page."""
    ensure_schema(db)
    return [dict(r) | {"role_label": ROLE_LABELS.get(r["role"], r["role"])}
            for r in db.query("SELECT id, username, role, county_code, disabled, created_at, last_login "
                              "FROM users ORDER BY username")]


def set_password(db, username: str, password: str, now: datetime | None = None) -> None:
    """Replace a user's password (and end the lock-out of that name)."""
    check_password(password, username)
    if get_user(db, username) is None:
        raise AuthError(f"no user {username!r}")
    db.execute("UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
               (generate_password_hash(password), _now_text(now or _wall_now()), username))
    # The name's lock-outs end: from anywhere ('user'), and at each address ('pair' keys are "<address> <name>").
    db.execute("DELETE FROM login_failures WHERE (kind = 'user' AND key = ?) "
               "OR (kind = 'pair' AND substr(key, instr(key, ' ') + 1) = ?)", (username, username))
    end_sessions(db, get_user(db, username).id)


def password_expired(db, user: "User", now: datetime | None = None) -> bool:
    """True when an administrator's password is older than PASSWORD_MAX_AGE_DAYS (or its age is unknown).

    Wall-clock time, like sessions: the app clock may be a demo's accelerated one."""
    now = now or _wall_now()
    if user.role not in ADMIN_ROLES:
        return False
    rows = db.query("SELECT password_changed_at FROM users WHERE id = ?", (user.id,))
    changed = rows[0]["password_changed_at"] if rows else None
    return not changed or changed < _now_text(now - timedelta(days=PASSWORD_MAX_AGE_DAYS))


def set_disabled(db, username: str, disabled: bool) -> None:
    """Disable (or enable again) an account; a disabled account cannot log in or use its tokens."""
    if get_user(db, username) is None:
        raise AuthError(f"no user {username!r}")
    db.execute("UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username))
    if disabled:
        end_sessions(db, get_user(db, username).id)


def create_token(db, username: str, name: str = "", now: datetime | None = None) -> str:
    """Issue an API token for ``username``; the clear token is returned once and only its hash is kept."""
    user = get_user(db, username)
    if user is None:
        raise AuthError(f"no user {username!r}")
    token = "mny_" + secrets.token_urlsafe(32)
    db.execute("INSERT INTO api_tokens (user_id, token_hash, name, created_at) VALUES (?, ?, ?, ?)",
               (user.id, _token_hash(token), name, _now_text(now or datetime.now(timezone.utc))))
    return token


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def list_tokens(db) -> list[dict]:
    """Every API token (never the token itself): id, username, name, created_at, last_used, revoked."""
    ensure_schema(db)
    return [dict(r) for r in db.query(
        "SELECT t.id, u.username, t.name, t.created_at, t.last_used, t.revoked FROM api_tokens t "
        "JOIN users u ON u.id = t.user_id ORDER BY t.id")]


def revoke_token(db, token_id: int) -> str:
    """Revoke the token with id ``token_id``; return its user's name; AuthError if there is no such token."""
    ensure_schema(db)
    rows = db.query("SELECT u.username FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?",
                    (int(token_id),))
    if not rows:
        raise AuthError(f"no API token with id {token_id}")
    db.execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?", (int(token_id),))
    return rows[0]["username"]


TOKEN_USE_RESOLUTION = 60     # seconds: how exact api_tokens.last_used is


def user_for_token(db, token: str, now: datetime | None = None) -> User | None:
    """The enabled user a valid, unrevoked token belongs to, or None."""
    ensure_schema(db)
    rows = db.query("SELECT t.id AS token_id, t.last_used AS token_last_used, u.* FROM api_tokens t "
                    "JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.revoked = 0", (_token_hash(token),))
    if not rows or rows[0]["disabled"]:
        return None
    now = now or datetime.now(timezone.utc)
    last = rows[0]["token_last_used"]
    # At most one write a minute per token: a script polling the API does not serialise on the db.
    if not last or last < _now_text(now - timedelta(seconds=TOKEN_USE_RESOLUTION)) or last > _now_text(now):
        db.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (_now_text(now), rows[0]["token_id"]))
    return _user(rows[0])


# --- login with rate limiting -------------------------------------------------------------

class LoginLocked(AuthError):
    """Too many failed logins for this name or address: try again later."""


def _failures(db, kind: str, key: str, since: datetime) -> int:
    return db.query("SELECT COUNT(*) AS n FROM login_failures WHERE kind = ? AND key = ? AND at >= ?",
                    (kind, key, _now_text(since)))[0]["n"]


def authenticate(db, username: str, password: str, ip: str, now: datetime, *, max_user: int = 5,
                 max_ip: int = 20, max_user_any: int = 100, window: timedelta = timedelta(minutes=15)) -> User | None:
    """Check a login; return the user, None for wrong credentials, or raise LoginLocked.

    Locked until the oldest failure leaves ``window``: a name at one address after
    ``max_user`` failures, an address after ``max_ip``, and a name from anywhere after
    ``max_user_any`` (a guess spread over many addresses). Even the right password is
    refused meanwhile, so guessing gains nothing. A hostile client therefore locks out only
    itself, not the user whose name it tries (unless it commands ``max_user_any / max_user``
    addresses). ``username`` and ``password`` are bounded before anything is stored.
    """
    ensure_schema(db)
    username, password = (username or "")[:MAX_USERNAME + 1], (password or "")[:MAX_PASSWORD + 1]
    ip = (ip or "?")[:64]
    since = now - window
    pair = f"{ip} {username}"
    if (_failures(db, "pair", pair, since) >= max_user or _failures(db, "ip", ip, since) >= max_ip
            or _failures(db, "user", username, since) >= max_user_any):
        raise LoginLocked("too many failed logins; try again in 15 minutes")
    rows = db.query("SELECT * FROM users WHERE username = ?", (username,)) if len(username) <= MAX_USERNAME else []
    # Exactly one hash check whatever the name: the response time reveals neither unknown nor disabled names.
    matches = check_password_hash(rows[0]["password_hash"] if rows else _DUMMY_HASH, password)
    ok = bool(rows) and not rows[0]["disabled"] and matches
    if not ok:
        stamp = _now_text(now)
        with db.transaction() as conn:
            conn.executemany("INSERT INTO login_failures (kind, key, at) VALUES (?, ?, ?)",
                             [("user", username, stamp), ("ip", ip, stamp), ("pair", pair, stamp)])
            conn.execute("DELETE FROM login_failures WHERE at < ?", (_now_text(now - 4 * window),))
        return None
    db.execute("DELETE FROM login_failures WHERE kind = 'pair' AND key = ?", (pair,))
    db.execute("UPDATE users SET last_login = ? WHERE id = ?", (_now_text(now), rows[0]["id"]))
    return _user(rows[0])


_DUMMY_HASH = generate_password_hash("not-a-real-password")


# --- server-side session records --------------------------------------------------------------

def _wall_now() -> datetime:
    return datetime.now(timezone.utc)


def start_session(db, user: User, ip: str | None = None) -> str:
    """Record a new login session of ``user``; return the random id for the cookie."""
    ensure_schema(db)
    sid = secrets.token_urlsafe(32)
    stamp = _now_text(_wall_now())
    db.execute("INSERT INTO web_sessions (sid_hash, user_id, ip, created_at, last_seen) VALUES (?, ?, ?, ?, ?)",
               (_token_hash(sid), user.id, ip, stamp, stamp))
    return sid


SESSION_TOUCH = timedelta(minutes=1)      # how exact web_sessions.last_seen is (at most a write a minute)


def session_user(db, sid: str | None, user_id, lifetime: timedelta, idle: timedelta | None = None) -> User | None:
    """The enabled user of a live session ``sid``: not ended, younger than ``lifetime``, and (with
    ``idle``) used within ``idle`` (等保: a session left alone ends by itself); else None."""
    if not sid or not isinstance(sid, str):
        return None
    now = _wall_now()
    rows = db.query("SELECT u.*, s.id AS session_id, s.last_seen AS session_seen, s.created_at AS session_created "
                    "FROM web_sessions s JOIN users u ON u.id = s.user_id "
                    "WHERE s.sid_hash = ? AND s.user_id = ? AND s.ended_at IS NULL AND s.created_at >= ?",
                    (_token_hash(sid), user_id, _now_text(now - lifetime)))
    if not rows or rows[0]["disabled"]:
        return None
    seen = rows[0]["session_seen"] or rows[0]["session_created"]
    if idle is not None and seen < _now_text(now - idle):
        end_session(db, sid)
        return None
    if seen < _now_text(now - SESSION_TOUCH):
        db.execute("UPDATE web_sessions SET last_seen = ? WHERE id = ?", (_now_text(now), rows[0]["session_id"]))
    return _user(rows[0])


def end_session(db, sid: str | None) -> None:
    """End one session (logout)."""
    if sid:
        db.execute("UPDATE web_sessions SET ended_at = ? WHERE sid_hash = ? AND ended_at IS NULL",
                   (_now_text(_wall_now()), _token_hash(sid)))


def end_sessions(db, user_id: int) -> None:
    """End every session of a user (password reset, account disabled)."""
    ensure_schema(db)
    db.execute("UPDATE web_sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL",
               (_now_text(_wall_now()), user_id))


def _forget_old_sessions(db, lifetime: timedelta) -> None:
    db.execute("DELETE FROM web_sessions WHERE created_at < ?", (_now_text(_wall_now() - 2 * lifetime),))


# --- audit log -----------------------------------------------------------------------------

def write_audit(db, action: str, detail: dict | None = None, *, username: str | None = None,
                role: str | None = None, ip: str | None = None, now: datetime | None = None) -> None:
    """Append one entry to the audit log (outside a request: CLI, background workers).

    Every text is bounded (a hostile login name cannot fill the disk), and the entry's
    ``chain`` is the SHA-256 of the previous entry's chain and this entry's fields, so
    that a row changed or removed behind the application's back shows in :func:`verify_audit`.
    """
    ensure_schema(db)
    text = json.dumps(detail or {}, ensure_ascii=False, default=str)
    if len(text) > 4000:
        text = json.dumps({"truncated": text[:3900]}, ensure_ascii=False)
    fields = (_now_text(now or datetime.now(timezone.utc)), _bounded(username, MAX_USERNAME + 1), _bounded(role, 32),
              _bounded(ip, 64), action[:64], text)
    with db.transaction() as conn:
        last = conn.execute("SELECT chain FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        conn.execute("INSERT INTO audit_log (at, username, role, ip, action, detail, chain) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (*fields, _chain(last[0] if last else None, fields)))


def _bounded(text: str | None, limit: int) -> str | None:
    return None if text is None else str(text)[:limit]


def _chain(previous: str | None, fields) -> str:
    data = json.dumps([previous or "", *fields], ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def verify_audit(db) -> tuple[int, list[int]]:
    """(entries checked, ids whose chain does not match): a changed, inserted or removed row breaks the chain.
    Entries written before the chain existed (chain NULL) are counted and skipped."""
    ensure_schema(db)
    previous, checked, broken = None, 0, []
    for row in db.query("SELECT id, at, username, role, ip, action, detail, chain FROM audit_log ORDER BY id"):
        if row["chain"] is None:
            continue
        checked += 1
        fields = (row["at"], row["username"], row["role"], row["ip"], row["action"], row["detail"])
        if row["chain"] != _chain(previous, fields):
            broken.append(row["id"])
        previous = row["chain"]
    return checked, broken


def audit(action: str, detail: dict | None = None) -> None:
    """Record ``action`` by the current user (or the name being logged in) in the audit log."""
    user = getattr(g, "user", None)
    write_audit(get_db(), action, detail, username=user.username if user else (detail or {}).get("username"),
                role=user.role if user else None, ip=request.remote_addr if request else None,
                now=get_clock().now())


def audit_entries(db, limit: int = 200, action: str | None = None, username: str | None = None) -> list[dict]:
    """The newest audit entries first, optionally of one action (prefix) or user."""
    ensure_schema(db)
    sql, params = "SELECT * FROM audit_log WHERE 1=1", []
    if action:
        sql += " AND action LIKE ?"
        params.append(action.replace("%", "") + "%")
    if username:
        sql += " AND username = ?"
        params.append(username)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(max(1, min(int(limit), 10_000)))
    return [dict(r) | {"detail": json.loads(r["detail"] or "{}")} for r in db.query(sql, params)]


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
        g.token_hash = _token_hash(token)
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
        _forget_old_sessions(db, current_app.permanent_session_lifetime)
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
        rows = db.query("SELECT password_hash FROM users WHERE id = ?", (user.id,))
        old, new = request.form.get("old_password", ""), request.form.get("new_password", "")
        try:
            if not rows or not check_password_hash(rows[0]["password_hash"], old[:MAX_PASSWORD + 1]):
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
    return redirect(url_for("live.users"), code=303)


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
    with app.app_context():
        ensure_schema(get_db())


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


PUBLIC_ASSETS = frozenset({"static", "live.plotly_js", "live.favicon", "live.topojson"})
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
