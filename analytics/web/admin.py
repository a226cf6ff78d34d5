"""Administration: user accounts (system and security administrators) and the audit log (the
audit administrator). API tokens are issued and revoked in analytics.web.auth."""

from __future__ import annotations

import json
import logging

from flask import (Blueprint, abort, flash, jsonify, redirect, render_template, request,
                   url_for)

from analytics import accounts
from analytics.center import accounts as accounts_db

from .auth import audit, roles_required
from .context import get_clock, get_db, get_registry

log = logging.getLogger(__name__)
bp = Blueprint("admin", __name__)

@bp.route("/audit")
@roles_required("auditor")
def audit_page():
    """The audit log (the audit administrator only; nobody can change it)."""
    entries = accounts_db.audit_entries(get_db(), limit=request.args.get("limit", 300, type=int),
                                 action=request.args.get("action") or None, username=request.args.get("user") or None)
    return render_template("audit.html", entries=entries, action=request.args.get("action", ""),
                           user=request.args.get("user", ""))


@bp.route("/admin/users")
@roles_required("admin", "security")
def users():
    """The accounts and API tokens (system and security administrators)."""
    return render_template("admin_users.html", users=accounts_db.list_users(get_db()), counties=get_registry().counties,
                           roles=accounts.BUSINESS_ROLES, form={})


@bp.route("/admin/users", methods=["POST"])
@roles_required("admin")
def add_user():
    """Add an account of a business role (system administrator); the three administrators'
    accounts are made on the server only (``manyi user add``)."""
    db, registry, form = get_db(), get_registry(), request.form
    try:
        if form.get("role", "") not in accounts.BUSINESS_ROLES:
            raise accounts.AuthError("管理员账户（系统、安全、审计）只能在服务器上用 manyi user add 创建")
        accounts_db.create_user(db, form.get("username", ""), form.get("password", ""), form.get("role", ""),
                         form.get("county_code") or None, registry=registry, now=get_clock().now())
    except accounts.AuthError as exc:
        flash(f"未能添加用户：{exc}", "error")
        return render_template("admin_users.html", users=accounts_db.list_users(db), counties=registry.counties,
                               roles=accounts.BUSINESS_ROLES, form=form), 400
    audit("user.add", {"username": form.get("username"), "role": form.get("role"),
                       "county_code": form.get("county_code") or None})
    flash(f"已添加用户 {form.get('username')}")
    return redirect(url_for("admin.users"))


@bp.route("/admin/users/<username>/<action>", methods=["POST"])
@roles_required("admin")
def user_action(username: str, action: str):
    """Disable, enable or reset the password of an account of a business role (system administrator)."""
    db = get_db()
    try:
        if action not in ("disable", "enable", "password"):
            abort(404)
        target = accounts_db.get_user(db, username)
        if target is None:
            raise accounts.AuthError(f"用户 {username} 不存在")
        if target.role in accounts.ADMIN_ROLES:
            raise accounts.AuthError("管理员账户只能在服务器上用 manyi user 命令管理")
        if action == "disable":
            accounts_db.set_disabled(db, username, True)
        elif action == "enable":
            accounts_db.set_disabled(db, username, False)
        else:
            accounts_db.set_password(db, username, request.form.get("password", ""))
    except accounts.AuthError as exc:
        flash(f"操作失败：{exc}", "error")
        return redirect(url_for("admin.users"))
    audit(f"user.{action}", {"username": username})
    flash(f"已完成：{AUDIT_ACTIONS.get('user.' + action, action)} {username}")
    return redirect(url_for("admin.users"))


@bp.route("/api/v1/audit")
@roles_required("auditor")
def api_audit():
    """The newest audit entries (the audit administrator)."""
    return jsonify(entries=accounts_db.audit_entries(get_db(), limit=request.args.get("limit", 200, type=int),
                                              action=request.args.get("action") or None,
                                              username=request.args.get("user") or None))


AUDIT_ACTIONS = {
    "login": "登录", "login.failed": "登录失败", "login.locked": "登录锁定", "logout": "退出",
    "user.add": "添加用户", "user.disable": "停用用户", "user.enable": "启用用户", "user.password": "重置密码",
    "user.token": "生成API令牌", "token.add": "生成API令牌", "token.revoke": "吊销API令牌",
    "account.password": "修改本人密码", "account.password_failed": "修改本人密码失败", "report.download": "下载季度报告", "rankings.export": "导出排名",
    "case.export": "导出督办件", "case.assign": "督办指派", "case.note": "督办备注", "case.callback": "督办回访",
    "case.close": "督办办结", "case.rectify": "督办整改", "case.revisit": "督办二次回访（追评）",
    "appeal.file": "提出申诉", "appeal.review": "复核申诉", "appeal.withdraw": "撤回申诉", "alert.ack": "确认告警", "settings.alert_rule": "修改告警规则",
    "settings.alert_rule.delete": "删除告警规则", "settings.followup": "修改督办设置",
    "settings.holiday.add": "添加节假日", "settings.holiday.delete": "删除节假日",
    "import.survey": "导入12333回访", "import.scores": "导入综合考核得分",
    "bulletin.download": "下载月度通报", "upward.export": "导出数据归集",
    "import.survey.failed": "导入12333回访失败", "import.scores.failed": "导入综合考核得分失败",
}


AUDIT_KEYS = {
    "username": "用户", "role": "角色", "county_code": "县区", "county": "县区", "quarter": "季度", "format": "格式",
    "result": "发布编号", "file": "文件", "case": "督办件", "rows_read": "读取", "imported": "导入", "rejected": "拒收",
    "error": "错误", "reason": "原因", "fmt": "格式", "rule": "规则", "alert": "告警", "day": "日期", "name": "名称",
    "assignee": "指派给", "text": "内容", "note": "备注", "rows": "行数", "level": "级别", "token": "令牌编号",
    "kind": "类型", "params": "参数", "enabled": "启用", "deadline_days": "整改时限（工作日）",
    "group_minutes": "合并时间窗（分钟）", "month": "月份", "truncated": "内容（已截断）",
    "contact_days": "联系时限（工作日）", "revisit_days": "二次回访时限（工作日）", "code": "办结方式",
    "appeal": "申诉编号", "target": "申诉对象", "evidence": "证据说明", "decision": "复核结论",
}


AUDIT_KEYS_BY_ACTION = {("case.", "result"): "回访结果", ("case.", "code"): "办结方式"}


def audit_action_label(action: str | None) -> str:
    """Template filter: the Chinese name of an audit action, with the stored code for anything unknown."""
    return AUDIT_ACTIONS.get(action or "", action or "—")


def audit_detail(detail, action: str | None = None) -> str:
    """Template filter: an audit detail dict as ``键：值；…`` in Chinese (empty values left out)."""
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    roles = accounts.ROLE_LABELS
    parts = []
    for key, value in detail.items():
        if value is None or value == "":
            continue
        if key == "role":
            value = roles.get(value, value)
        elif key in ("county_code", "county") and value in get_registry().counties:
            value = f"{get_registry().counties[value].name}（{value}）"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        label = next((text for (prefix, name), text in AUDIT_KEYS_BY_ACTION.items()
                      if name == key and (action or "").startswith(prefix)), None)
        parts.append(f"{label or AUDIT_KEYS.get(key, key)}：{value}")
    return "；".join(parts) or "—"


def init_app(app) -> None:
    """The audit log's template filters."""
    app.jinja_env.filters["audit_action"] = audit_action_label
    app.jinja_env.filters["audit_detail"] = audit_detail
