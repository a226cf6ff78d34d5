"""What every page shares: the navigation (only the pages the user's role may open), the
sample-data banner, and template helpers."""

from __future__ import annotations

import logging

from flask import (request)

from analytics import accounts
from manyi.protocol import RATING_LABELS

from . import auth
from .auth import current_user
from .context import get_registry

log = logging.getLogger(__name__)

from .live import PERIODS


def init_app(app) -> None:
    """Template helpers and the navigation shared by every page."""
    app.jinja_env.globals.update(rating_labels=RATING_LABELS, periods=PERIODS)
    from .tables import cn_time
    app.jinja_env.filters.setdefault("cn_time", cn_time)

    @app.context_processor
    def nav():
        rules = {rule.rule for rule in app.url_map.iter_rules()}
        items = [("/", "实时地图"), ("/rankings", "排名"), ("/drill", "逐级查看"), ("/cases", "不满意督办"),
                 ("/appeals", "申诉复核"), ("/terminals", "终端状态"), ("/alerts", "告警"), ("/imports", "导入与报表"),
                 ("/bulletins", "月度通报")]
        user = current_user()
        if user is not None and user.role in auth.ROLE_ENDPOINTS:
            items = []                     # the security and audit administrators see no data pages
        if user is not None and user.role in accounts.ADMIN_ROLES:
            items += [("/audit", "审计日志"), ("/admin/users", "用户管理")]
        if user is not None:
            items += [("/account", "修改密码")]
        # A link the user's role cannot open (403) is left out of the navigation.
        items = [(path, label) for path, label in items
                 if user is None or user.role in NAV_ROLES.get(path, (user.role,))]
        return {"nav_items": [(path, label) for path, label in items if path in rules], "nav_active": nav_active,
                "sample_data": _sample_data()}


NAV_ROLES = {"/imports": ("admin", "assessment"), "/bulletins": ("admin", "city", "assessment"), "/audit": ("auditor",), "/admin/users": ("admin", "security")}


NAV_ALIASES = {"/reports": "/imports"}


def nav_active(path: str) -> bool:
    """True when the nav entry ``path`` is the current page or one of its sub-pages (/cases/12 -> /cases)."""
    current = request.path
    for prefix, target in NAV_ALIASES.items():
        if current == prefix or current.startswith(prefix + "/"):
            current = target
    if path == "/":
        return current == "/"
    return current == path or current.startswith(path.rstrip("/") + "/")


def _sample_data() -> bool:
    """True when the registry in use is the generated sample: every page then says the data is simulated."""
    try:
        return bool(getattr(get_registry(), "sample", False))
    except Exception:       # noqa: BLE001 - a page (e.g. the error page) must render even if the registry cannot load
        log.exception("control center: cannot load the registry to tell whether it is sample data")
        return False
