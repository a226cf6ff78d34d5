"""Accounts of the control center, as rules: roles (三员分立, 等保 2.0 level 3), the user a
request acts as, the password policy and the audit log's hash chain. No SQL and no HTTP:
analytics.center.accounts stores accounts, and analytics.web.auth checks requests.

- ``admin`` (系统管理员): the data pages, imports, and the accounts of the business roles;
- ``security`` (安全管理员): API tokens (issue, revoke) and the accounts list, no data;
- ``auditor`` (审计管理员): the audit log and nothing else;
- ``city``: city staff, every county;
- ``county``: county staff, only its own county (pages, API, actions);
- ``assessment``: the assessment office, every county, read-mostly.

Passwords: at least 10 characters of three kinds (lower case, upper case, digits,
others), not containing the user name; administrators must change theirs every
PASSWORD_MAX_AGE_DAYS days.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from manyi.exc import ManyiError

ROLES = ("admin", "security", "auditor", "city", "county", "assessment")
ROLE_LABELS = {"admin": "系统管理员", "security": "安全管理员", "auditor": "审计管理员", "city": "市级人员",
               "county": "县区人员", "assessment": "考核办"}
ADMIN_ROLES = frozenset({"admin", "security", "auditor"})      # 三员: created on the server only
BUSINESS_ROLES = ("city", "county", "assessment")              # what the web's user administration may grant
ALL_COUNTY_ROLES = frozenset({"admin", "city", "assessment"})
MIN_PASSWORD = 10
MAX_PASSWORD = 256
MAX_USERNAME = 64
PASSWORD_MAX_AGE_DAYS = 90          # administrators (ADMIN_ROLES) must change their password this often


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


def now_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def user_from_row(row) -> User:
    return User(row["id"], row["username"], row["role"], row["county_code"], bool(row["disabled"]))


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


def validate_role(role: str, county_code: str | None, registry=None) -> None:
    if role not in ROLES:
        raise AuthError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "county" and not county_code:
        raise AuthError("a county user needs a county code (--county)")
    if role != "county" and county_code:
        raise AuthError(f"role {role!r} sees every county; a county code is only for role 'county'")
    if county_code and registry is not None and county_code not in registry.counties:
        raise AuthError(f"county {county_code!r} is not in the registry")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class LoginLocked(AuthError):
    """Too many failed logins for this name or address: try again later."""


def bounded(text: str | None, limit: int) -> str | None:
    return None if text is None else str(text)[:limit]


def chain(previous: str | None, fields) -> str:
    data = json.dumps([previous or "", *fields], ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def wall_now() -> datetime:
    return datetime.now(timezone.utc)
