"""With BACKGROUND_WORKERS the case sync and the alert evaluation run by themselves."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from analytics import alerts as al
from analytics import cases as fu
from analytics.web import create_app
from analytics.web.context import get_db, get_store, resources
from plugin_web import DEVICE_A, write_votes


def test_background_workers_open_cases_and_raise_alerts(tmp_path, heze, monkeypatch):
    from analytics.web import alerts as alerts_bp
    from analytics.web import cases as cases_bp
    monkeypatch.setattr(cases_bp, "SYNC_SECONDS", 0.1)
    monkeypatch.setattr(alerts_bp, "EVALUATE_SECONDS", 0.1)
    app = create_app({"SECRET_KEY": "w", "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}",
                      "CENTER_DB": str(tmp_path / "c.db"), "REGISTRY": heze, "BACKGROUND_WORKERS": True,
                      "SESSION_COOKIE_SECURE": False})
    try:
        now = datetime.now(timezone.utc)
        write_votes(get_store(app), [(DEVICE_A, "unsatisfied", now - timedelta(minutes=m)) for m in (3, 2, 1)])
        deadline = time.monotonic() + 10
        db = get_db(app)
        while time.monotonic() < deadline:
            found = fu.list_cases(db, now)
            if found and found[0]["vote_count"] == 3 and al.list_alerts(db):   # the worker attaches one vote at a time
                break
            time.sleep(0.1)
        (case,) = fu.list_cases(db, now)
        assert case["vote_count"] == 3
        assert al.list_alerts(db)[0]["n"] == 3
    finally:
        app.extensions["manyi_cases_stop"].set()
        app.extensions["manyi_alerts_stop"].set()
        time.sleep(0.3)
        resources(app).close()
