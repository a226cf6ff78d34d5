"""Make tests/data/center-v0.db: a control-center database as made by the last release
without migrations (commit 270d3a4, schema version 0), with a row in every kind of table.

It uses that release's API, so it runs only against a checkout of that commit:

    git worktree add /tmp/v0 270d3a4
    cd /tmp/v0 && PYTHONPATH=.:tests python /path/to/tests/data/make_center_v0.py OUT.db

tests/test_center_migrations.py upgrades a copy of the result in place.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from plugin_analytics import build_tiny_registry

from analytics import alerting, followup
from analytics.db import CenterDB
from analytics.quarter import compute_quarter, publish
from analytics.scores import import_scores
from analytics.survey import import_survey
from analytics.web.auth import create_token, create_user, start_session, write_audit
from collector.stores import open_store
from manyi.registry import store_active

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)


def main(out: str) -> None:
    registry = build_tiny_registry()
    db = CenterDB(out)
    store_active(db, registry, source="tiny test registry")
    admin = create_user(db, "admin", "Old-pass-word-1", "admin", now=NOW, method="pbkdf2:sha256:1000")
    create_user(db, "caoxian", "Old-county-pass-1", "county", "371721", now=NOW, method="pbkdf2:sha256:1000")
    create_token(db, "admin", "script", now=NOW)
    start_session(db, admin, "10.0.0.1")
    write_audit(db, "login", {"username": "admin"}, username="admin", role="admin", ip="10.0.0.1", now=NOW)
    write_audit(db, "user.create", {"username": "dingtao"}, username="admin", role="admin", now=NOW)
    survey = "日期,县区,乡镇(街道),评价\n2026-07-02,牡丹区,,满意\n2026-07-03,曹县,,不满意\n".encode()
    import_survey(db, registry, survey, "2026Q3", filename="回访.csv")
    import_scores(db, registry, "县区,综合考核得分\n牡丹区,90\n曹县,80\n".encode(), "2026Q3", filename="得分.csv")
    store = open_store("sqlite:///:memory:")
    publish(db, compute_quarter(store, registry, db, "2026Q3", now=NOW), now=NOW)
    device = registry.assignments[0].device
    followup.attach_vote(db, registry, device, 7, NOW, NOW)
    case = followup.list_cases(db, NOW)[0]
    followup.assign_case(db, case["id"], "王科长", "admin", NOW)
    followup.set_holiday(db, "2026-10-01", "holiday", "国庆节")
    alerting.save_rule(db, name="自定义规则", kind="burst", params={"n": 5, "minutes": 10}, by="admin", now=NOW)
    db.close()


if __name__ == "__main__":
    main(sys.argv[1])
