"""Accounts in the control center's database: users, API tokens (stored as SHA-256 hashes),
failed logins (so a lock-out holds across worker processes), server-side session records
and the append-only, hash-chained audit log.

Passwords are hashed with werkzeug.security. Nobody can change or delete the audit log: the
table refuses UPDATE and DELETE (triggers, migration 1), and each entry carries a hash
chained to the one before it, which ``manyi audit verify`` checks (:func:`verify_audit`).
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone

from werkzeug.security import check_password_hash, generate_password_hash

from analytics.accounts import (
    ADMIN_ROLES, MAX_PASSWORD, MAX_USERNAME, PASSWORD_MAX_AGE_DAYS, ROLE_LABELS, AuthError, LoginLocked, User,
    bounded, chain, check_password, now_text, token_hash, user_from_row, validate_role, wall_now,
)


def create_user(db, username: str, password: str, role: str, county_code: str | None = None, *,
                registry=None, now: datetime | None = None, method: str | None = None) -> User:
    """Add an account; raise AuthError for a bad role/county, a short password or a taken name.

    ``method`` is werkzeug's hash method (default scrypt); tests pass a cheap one for speed.
    """
    username = (username or "").strip()
    if not username or len(username) > MAX_USERNAME or any(c.isspace() for c in username):
        raise AuthError(f"username {username[:MAX_USERNAME]!r} must be 1-{MAX_USERNAME} characters without spaces")
    validate_role(role, county_code or None, registry)
    check_password(password, username)
    if db.query("SELECT 1 FROM users WHERE username = ?", (username,)):
        raise AuthError(f"user {username!r} already exists")
    stamp = now_text(now or datetime.now(timezone.utc))
    changed = now_text(wall_now())
    cur = db.execute(
        "INSERT INTO users (username, password_hash, role, county_code, created_at, password_changed_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (username, generate_password_hash(password, **({"method": method} if method else {})), role,
         county_code or None, stamp, changed))
    return User(cur.lastrowid, username, role, county_code or None)


def get_user(db, username: str | None = None, user_id: int | None = None) -> User | None:
    """The account by name or id, or None."""
    if user_id is not None:
        rows = db.query("SELECT * FROM users WHERE id = ?", (user_id,))
    else:
        rows = db.query("SELECT * FROM users WHERE username = ?", (username,))
    return user_from_row(rows[0]) if rows else None


def list_users(db) -> list[dict]:
    """Every account with its last login, for the admin page."""
    return [dict(r) | {"role_label": ROLE_LABELS.get(r["role"], r["role"])}
            for r in db.query("SELECT id, username, role, county_code, disabled, created_at, last_login "
                              "FROM users ORDER BY username")]


def set_password(db, username: str, password: str, now: datetime | None = None) -> None:
    """Replace a user's password (and end the lock-out of that name)."""
    check_password(password, username)
    if get_user(db, username) is None:
        raise AuthError(f"no user {username!r}")
    db.execute("UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
               (generate_password_hash(password), now_text(now or wall_now()), username))
    # The name's lock-outs end: from anywhere ('user'), and at each address ('pair' keys are "<address> <name>").
    db.execute("DELETE FROM login_failures WHERE (kind = 'user' AND key = ?) "
               "OR (kind = 'pair' AND substr(key, instr(key, ' ') + 1) = ?)", (username, username))
    end_sessions(db, get_user(db, username).id)


def password_expired(db, user: "User", now: datetime | None = None) -> bool:
    """True when an administrator's password is older than PASSWORD_MAX_AGE_DAYS (or its age is unknown).

    Wall-clock time, like sessions: the app clock may be a demo's accelerated one."""
    now = now or wall_now()
    if user.role not in ADMIN_ROLES:
        return False
    rows = db.query("SELECT password_changed_at FROM users WHERE id = ?", (user.id,))
    changed = rows[0]["password_changed_at"] if rows else None
    return not changed or changed < now_text(now - timedelta(days=PASSWORD_MAX_AGE_DAYS))


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
               (user.id, token_hash(token), name, now_text(now or datetime.now(timezone.utc))))
    return token


def list_tokens(db) -> list[dict]:
    """Every API token (never the token itself): id, username, name, created_at, last_used, revoked."""
    return [dict(r) for r in db.query(
        "SELECT t.id, u.username, t.name, t.created_at, t.last_used, t.revoked FROM api_tokens t "
        "JOIN users u ON u.id = t.user_id ORDER BY t.id")]


def revoke_token(db, token_id: int) -> str:
    """Revoke the token with id ``token_id``; return its user's name; AuthError if there is no such token."""
    rows = db.query("SELECT u.username FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?",
                    (int(token_id),))
    if not rows:
        raise AuthError(f"no API token with id {token_id}")
    db.execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?", (int(token_id),))
    return rows[0]["username"]


TOKEN_USE_RESOLUTION = 60     # seconds: how exact api_tokens.last_used is


def user_for_token(db, token: str, now: datetime | None = None) -> User | None:
    """The enabled user a valid, unrevoked token belongs to, or None."""
    rows = db.query("SELECT t.id AS token_id, t.last_used AS token_last_used, u.* FROM api_tokens t "
                    "JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.revoked = 0", (token_hash(token),))
    if not rows or rows[0]["disabled"]:
        return None
    now = now or datetime.now(timezone.utc)
    last = rows[0]["token_last_used"]
    # At most one write a minute per token: a script polling the API does not serialise on the db.
    if not last or last < now_text(now - timedelta(seconds=TOKEN_USE_RESOLUTION)) or last > now_text(now):
        db.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (now_text(now), rows[0]["token_id"]))
    return user_from_row(rows[0])


def _failures(db, kind: str, key: str, since: datetime) -> int:
    return db.query("SELECT COUNT(*) AS n FROM login_failures WHERE kind = ? AND key = ? AND at >= ?",
                    (kind, key, now_text(since)))[0]["n"]


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
        stamp = now_text(now)
        with db.transaction() as conn:
            conn.executemany("INSERT INTO login_failures (kind, key, at) VALUES (?, ?, ?)",
                             [("user", username, stamp), ("ip", ip, stamp), ("pair", pair, stamp)])
            conn.execute("DELETE FROM login_failures WHERE at < ?", (now_text(now - 4 * window),))
        return None
    db.execute("DELETE FROM login_failures WHERE kind = 'pair' AND key = ?", (pair,))
    db.execute("UPDATE users SET last_login = ? WHERE id = ?", (now_text(now), rows[0]["id"]))
    return user_from_row(rows[0])


_DUMMY_HASH = generate_password_hash("not-a-real-password")


def start_session(db, user: User, ip: str | None = None) -> str:
    """Record a new login session of ``user``; return the random id for the cookie."""
    sid = secrets.token_urlsafe(32)
    stamp = now_text(wall_now())
    db.execute("INSERT INTO web_sessions (sid_hash, user_id, ip, created_at, last_seen) VALUES (?, ?, ?, ?, ?)",
               (token_hash(sid), user.id, ip, stamp, stamp))
    return sid


SESSION_TOUCH = timedelta(minutes=1)      # how exact web_sessions.last_seen is (at most a write a minute)


def session_user(db, sid: str | None, user_id, lifetime: timedelta, idle: timedelta | None = None) -> User | None:
    """The enabled user of a live session ``sid``: not ended, younger than ``lifetime``, and (with
    ``idle``) used within ``idle`` (等保: a session left alone ends by itself); else None."""
    if not sid or not isinstance(sid, str):
        return None
    now = wall_now()
    rows = db.query("SELECT u.*, s.id AS session_id, s.last_seen AS session_seen, s.created_at AS session_created "
                    "FROM web_sessions s JOIN users u ON u.id = s.user_id "
                    "WHERE s.sid_hash = ? AND s.user_id = ? AND s.ended_at IS NULL AND s.created_at >= ?",
                    (token_hash(sid), user_id, now_text(now - lifetime)))
    if not rows or rows[0]["disabled"]:
        return None
    seen = rows[0]["session_seen"] or rows[0]["session_created"]
    if idle is not None and seen < now_text(now - idle):
        end_session(db, sid)
        return None
    if seen < now_text(now - SESSION_TOUCH):
        db.execute("UPDATE web_sessions SET last_seen = ? WHERE id = ?", (now_text(now), rows[0]["session_id"]))
    return user_from_row(rows[0])


def end_session(db, sid: str | None) -> None:
    """End one session (logout)."""
    if sid:
        db.execute("UPDATE web_sessions SET ended_at = ? WHERE sid_hash = ? AND ended_at IS NULL",
                   (now_text(wall_now()), token_hash(sid)))


def end_sessions(db, user_id: int) -> None:
    """End every session of a user (password reset, account disabled)."""
    db.execute("UPDATE web_sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL",
               (now_text(wall_now()), user_id))


def forget_old_sessions(db, lifetime: timedelta) -> None:
    """Delete session records older than twice the session lifetime."""
    db.execute("DELETE FROM web_sessions WHERE created_at < ?", (now_text(wall_now() - 2 * lifetime),))


def write_audit(db, action: str, detail: dict | None = None, *, username: str | None = None,
                role: str | None = None, ip: str | None = None, now: datetime | None = None) -> None:
    """Append one entry to the audit log (outside a request: CLI, background workers).

    Every text is bounded (a hostile login name cannot fill the disk), and the entry's
    ``chain`` is the SHA-256 of the previous entry's chain and this entry's fields, so
    that a row changed or removed behind the application's back shows in :func:`verify_audit`.
    """
    text = json.dumps(detail or {}, ensure_ascii=False, default=str)
    if len(text) > 4000:
        text = json.dumps({"truncated": text[:3900]}, ensure_ascii=False)
    fields = (now_text(now or datetime.now(timezone.utc)), bounded(username, MAX_USERNAME + 1), bounded(role, 32),
              bounded(ip, 64), action[:64], text)
    with db.transaction() as conn:
        last = conn.execute("SELECT chain FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        conn.execute("INSERT INTO audit_log (at, username, role, ip, action, detail, chain) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (*fields, chain(last[0] if last else None, fields)))


def verify_audit(db) -> tuple[int, list[int]]:
    """(entries checked, ids whose chain does not match): a changed, inserted or removed row breaks the chain.
    Entries written before the chain existed (chain NULL) are counted and skipped."""
    previous, checked, broken = None, 0, []
    for row in db.query("SELECT id, at, username, role, ip, action, detail, chain FROM audit_log ORDER BY id"):
        if row["chain"] is None:
            continue
        checked += 1
        fields = (row["at"], row["username"], row["role"], row["ip"], row["action"], row["detail"])
        if row["chain"] != chain(previous, fields):
            broken.append(row["id"])
        previous = row["chain"]
    return checked, broken


def audit_entries(db, limit: int = 200, action: str | None = None, username: str | None = None) -> list[dict]:
    """The newest audit entries first, optionally of one action (prefix) or user."""
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


def password_matches(db, user_id: int, password: str) -> bool:
    """True when ``password`` is the account's current password (bounded before hashing)."""
    rows = db.query("SELECT password_hash FROM users WHERE id = ?", (user_id,))
    return bool(rows) and check_password_hash(rows[0]["password_hash"], (password or "")[:MAX_PASSWORD + 1])
