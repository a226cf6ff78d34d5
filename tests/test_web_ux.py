"""What a person sees in the control center: the simulated-data banner, the current page in the
navigation, the map's click targets, units and China time on the pages (Flask test client,
real SQLite stores, the Heze sample registry)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from plugin_web import DEVICE_A, DEVICE_B, FAST_HASH, PASSWORD, write_votes

PAGES = ["/", "/rankings", "/drill", "/drill/county/371702", "/cases", "/terminals", "/alerts", "/imports",
         "/audit", "/admin/users"]


def _nav_active(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)" class="active" aria-current="page">', html)


# --- simulated-data banner -------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_sample_registry_labels_every_page_as_simulated(client, auth, path):
    auth.login("auditor" if path == "/audit" else "admin")
    page = client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="sample-banner"' in html and "模拟数据" in html


def test_sample_banner_also_on_login_and_error_pages(client, auth):
    assert 'id="sample-banner"' in client.get("/login").get_data(as_text=True)
    auth.login("county")
    forbidden = client.get("/audit")
    assert forbidden.status_code == 403 and 'id="sample-banner"' in forbidden.get_data(as_text=True)


@pytest.fixture
def real_app(tmp_path, heze_dir, clock):
    """The control center on a registry that is not marked as sample data (meta sample = no)."""
    from analytics.web import create_app
    from analytics.center.accounts import create_user
    from analytics.web.context import get_db, resources

    meta = heze_dir / "meta.csv"
    meta.write_text(meta.read_text(encoding="utf-8").replace("sample,yes", "sample,no"), encoding="utf-8")
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "STORE_URL": f"sqlite:///{tmp_path / 'v.db'}",
                      "CENTER_DB": str(tmp_path / "c.db"), "REGISTRY_PATH": str(heze_dir), "CLOCK": clock,
                      "BACKGROUND_WORKERS": False, "SESSION_COOKIE_SECURE": False})
    create_user(get_db(app), "admin", PASSWORD, "admin", None, method=FAST_HASH)
    yield app
    resources(app).close()


def test_registry_not_marked_sample_shows_no_banner(real_app):
    from analytics.web.context import get_registry
    from plugin_web import AuthActions

    assert get_registry(real_app).sample is False
    client = real_app.test_client()
    AuthActions(client).login("admin")
    for path in ("/", "/rankings", "/terminals", "/cases"):
        html = client.get(path).get_data(as_text=True)
        assert "<nav" in html and 'id="sample-banner"' not in html and "brand-tag" not in html, path


# --- navigation ------------------------------------------------------------------------------

@pytest.mark.parametrize("path, active", [
    ("/", "/"), ("/rankings", "/rankings"), ("/drill/county/371702", "/drill"), ("/cases/settings", "/cases"),
    ("/terminals?problems=1", "/terminals"), ("/alerts", "/alerts"), ("/imports", "/imports"),
    ("/audit", "/audit"), ("/admin/users", "/admin/users"),
])
def test_navigation_marks_exactly_the_current_page(client, auth, path, active):
    auth.login("auditor" if path == "/audit" else "admin")
    assert _nav_active(client.get(path).get_data(as_text=True)) == [active]


def test_nav_active_maps_report_downloads_to_imports(app):
    from analytics.web.nav import nav_active

    with app.test_request_context("/reports"):
        assert nav_active("/imports") and not nav_active("/")
    with app.test_request_context("/drillx"):           # a prefix of letters is not a sub-page
        assert not nav_active("/drill")


# --- the live map ------------------------------------------------------------------------------

def test_map_click_targets_are_drill_pages_the_user_may_open(client, auth, web_store, clock):
    """Every county and hall on the map carries the URL a click opens, and that page opens."""
    now = clock.now()
    write_votes(web_store, [(DEVICE_A, "satisfied", now - timedelta(minutes=5)),
                            (DEVICE_B, "unsatisfied", now - timedelta(minutes=4))])
    auth.login("admin")
    figure = client.get("/api/v1/map?period=today").get_json()["figure"]
    choropleths = [t for t in figure["data"] if t["type"] == "choropleth"]
    by_code = {code: cd[-1] for t in choropleths for code, cd in zip(t["locations"], t["customdata"])}
    assert by_code["371702"] == "/drill/county/371702"          # has votes today
    assert by_code["371723"] == "/drill/county/371723"          # no votes: grey, still clickable
    halls = [cd[-1] for t in figure["data"] if t["type"] == "scattergeo" for cd in t["customdata"]]
    assert halls and all(url.startswith("/drill/hall/") for url in halls)
    for url in [by_code["371702"], by_code["371723"], halls[0]]:
        assert client.get(url).status_code == 200, url


def test_county_user_map_links_only_to_own_county(client, auth):
    auth.login("county")            # 牡丹区 371702
    figure = client.get("/api/v1/map?period=today").get_json()["figure"]
    urls = [cd[-1] for t in figure["data"] for cd in t["customdata"]]
    county_urls = [u for u in urls if u.startswith("/drill/county/")]
    assert county_urls == ["/drill/county/371702"]
    # the map is zoomed to the user's own county: the other counties' outlines are not in the figure
    shapes = {str(f["id"]) for t in figure["data"] if t["type"] == "choropleth" for f in t["geojson"]["features"]}
    assert shapes == {"371702"}
    for url in urls[:5]:
        assert client.get(url).status_code == 200, url
    assert client.get("/drill/county/371721").status_code == 403


def test_map_colour_scale_says_points():
    from analytics.output.map_chart import county_map
    import pandas as pd
    from manyi.registry import COUNTIES_GEOJSON
    import json

    counties = pd.DataFrame({"code": ["371702"], "name": ["牡丹区"], "n": [3], "score": [86.67], "rate": [1.0]})
    fig = county_map(counties, json.loads(open(COUNTIES_GEOJSON, encoding="utf-8").read()))
    bar = fig["data"][0]["colorbar"]
    assert "分" in bar["title"]["text"] and bar["ticktext"][0] == "≤60"
    assert fig["data"][0]["customdata"][0][1] == "86.7 分"


def test_live_page_has_legend_units_and_an_empty_ticker_state(client, auth):
    auth.login("admin")
    html = client.get("/").get_data(as_text=True)
    assert "得分（分）" in html and 'class="map-legend"' in html and "本期暂无评价" in html
    assert 'id="ticker-empty"' in html and 'id="alert-banner-close"' in html


# --- times in China time, labels in Chinese ------------------------------------------------------

def test_audit_log_shows_china_time_and_chinese_actions(client, auth, app):
    from analytics.web.context import get_db

    auth.login("auditor")
    at = get_db(app).query("SELECT at FROM audit_log ORDER BY id DESC LIMIT 1")[0]["at"]
    local = datetime.fromisoformat(at).astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")
    html = client.get("/audit").get_data(as_text=True)
    assert "北京时间" in html and "(UTC)" not in html
    assert local in html and "登录" in html


def test_drill_trend_axis_uses_dates_not_english_month_names():
    from datetime import date

    from analytics.output import drill_charts as charts

    fig = charts.trend_figure(charts.daily_counts([], date(2026, 11, 1), date(2026, 11, 8))).to_plotly_json()
    layout = fig["layout"]
    assert layout["xaxis"]["tickformat"] == "%m-%d"
    assert layout["yaxis2"]["ticksuffix"] == "%" and layout["yaxis2"]["dtick"] == 20


def test_drill_page_without_votes_says_so(client, auth):
    auth.login("admin")
    html = client.get("/drill/county/371723?days=7").get_data(as_text=True)
    assert "暂无评价" in html


@pytest.mark.parametrize("user, shown, hidden", [
    ("admin", ["/imports", "/admin/users"], ["/audit"]),
    ("auditor", ["/audit", "/account"], ["/", "/imports", "/admin/users", "/cases"]),
    ("security", ["/admin/users", "/account"], ["/", "/audit", "/imports", "/cases"]),
    ("assessor", ["/imports"], ["/audit", "/admin/users"]),
    ("city", ["/rankings", "/cases"], ["/imports", "/audit", "/admin/users"]),
    ("county", ["/", "/drill", "/terminals"], ["/imports", "/audit", "/admin/users"]),
])
def test_navigation_offers_only_pages_the_role_may_open(client, auth, user, shown, hidden):
    auth.login(user)
    html = client.get("/").get_data(as_text=True)
    nav = html.split('<nav class="nav">')[1].split("</nav>")[0]
    links = re.findall(r'<a href="([^"]+)"', nav)
    assert set(shown) <= set(links) and not set(hidden) & set(links)
    for path in links:
        assert client.get(path, follow_redirects=True).status_code == 200, (user, path)


# --- the quarterly report ---------------------------------------------------------------------

def test_city_reaches_the_printable_report_from_rankings(client, auth):
    auth.login("city")
    html = client.get("/rankings?quarter=2026Q3").get_data(as_text=True)
    link = re.search(r'href="(/reports\?[^"]*format=html[^"]*)"', html).group(1).replace("&amp;", "&")
    assert "inline=1" in link
    page = client.get(link)
    assert page.status_code == 200 and "attachment" not in page.headers.get("Content-Disposition", "")
    text = page.get_data(as_text=True)
    assert "@page" in text and "模拟数据" in text          # A4 print CSS; labelled as simulated
    download = client.get("/reports?quarter=2026Q3&format=html")
    assert "attachment" in download.headers["Content-Disposition"] and "模拟数据" in download.get_data(as_text=True)


def test_report_of_a_real_registry_has_no_sample_label(real_app):
    from plugin_web import AuthActions

    client = real_app.test_client()
    AuthActions(client).login("admin")
    page = client.get("/reports?quarter=2026Q3&format=html&inline=1")
    assert page.status_code == 200 and "模拟数据" not in page.get_data(as_text=True)


def test_county_user_sees_what_its_rank_is_out_of(client, auth):
    auth.login("county")
    html = client.get("/rankings?quarter=2026Q3").get_data(as_text=True)
    assert re.search(r"名次为全市 11 个县区中的名次，这里只列出您有权查看的 1 个", html)
    auth.logout()
    auth.login("city")
    assert 'id="rank-scope"' not in client.get("/rankings?quarter=2026Q3").get_data(as_text=True)


# --- follow-up deadlines ----------------------------------------------------------------------

def test_due_text_counts_china_calendar_days():
    from analytics.web.tables import due_text

    now = datetime(2026, 11, 23, 1, 30, tzinfo=timezone.utc)           # Monday 09:30 China time
    assert due_text("2026-11-26T00:00:00+08:00", now) == "剩 2 天"      # due end of Wednesday
    assert due_text("2026-11-24T00:00:00+08:00", now) == "今日到期"      # end of Monday
    assert due_text("2026-11-23T00:00:00+08:00", now) == "超期 1 天"     # ended Sunday night
    assert due_text("2026-11-20T00:00:00+08:00", now) == "超期 4 天"
    assert due_text("2026-11-20T00:00:00+08:00", now, closed=True) == "" and due_text(None, now) == ""


def test_case_list_and_detail_say_how_long_is_left(client, auth, web_store, clock):
    write_votes(web_store, [(DEVICE_A, "unsatisfied", clock.now() - timedelta(minutes=5))])
    auth.login("admin")
    listing = client.get("/cases").get_data(as_text=True)
    assert re.search(r'<span class="due muted">剩 \d+ 天</span>', listing)
    case_id = re.search(r'href="/cases/(\d+)"', listing).group(1)
    detail = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert re.search(r'id="case-due">剩 \d+ 天<', detail)
    clock.advance(30 * 86400)
    assert "超期 " in client.get(f"/cases/{case_id}").get_data(as_text=True)


def test_map_pales_counties_with_few_votes():
    import json

    import pandas as pd

    from analytics.output.map_chart import FEW_VOTES, FEW_VOTES_OPACITY, county_map
    from manyi.registry import COUNTIES_GEOJSON

    counties = pd.DataFrame({"code": ["371702", "371721"], "name": ["牡丹区", "曹县"], "n": [FEW_VOTES, 1],
                             "score": [90.0, 0.0], "rate": [0.95, 0.0]})
    fig = county_map(counties, json.loads(open(COUNTIES_GEOJSON, encoding="utf-8").read()))
    trace = fig["data"][0]
    assert trace["marker"]["opacity"] == [1.0, FEW_VOTES_OPACITY]
    assert "仅供参考" in str(trace["customdata"][1][3]) and trace["customdata"][0][3] == FEW_VOTES


def test_audit_details_are_labelled_in_chinese_by_action(app):
    """A case's 回访 result is not a report's 发布编号, and no detail key shows in English."""
    from analytics.web.admin import audit_detail

    with app.test_request_context():
        callback = audit_detail({"case": 7, "result": "已联系", "note": "群众表示理解"}, "case.callback")
        report = audit_detail({"quarter": "2026Q3", "format": "xlsx", "result": 3}, "report.download")
        assign = audit_detail({"case": 7, "assignee": "mudan", "text": "请核实"}, "case.assign")
        export = audit_detail({"format": "csv", "rows": 12, "level": "county"}, "rankings.export")
    assert callback == "督办件：7；回访结果：已联系；备注：群众表示理解"
    assert "发布编号：3" in report
    for text in (callback, report, assign, export):
        assert not [word for word in ("note", "text", "assignee", "rows", "level", "result") if word in text], text
