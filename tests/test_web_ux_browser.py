"""The live map in headless Chromium as a person uses it: the simulated-data banner is
visible, plotly's tool bar speaks Chinese and offers no upload to plotly's cloud, a click
on a county opens that county's drill-down page, and the ticker's empty state goes away
when a vote arrives. The app is served by waitress on the SQLite store (no broker needed:
votes are written to the store, as the collector would)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from plugin_web import (
    CHROMEDRIVER, CHROMIUM, DEVICE_A, FAST_HASH, NO_BROWSER, PASSWORD, browser_wait as _wait, write_votes,
)

pytestmark = pytest.mark.browser

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(NO_BROWSER, allow_module_level=True)


@pytest.fixture
def served(tmp_path, heze, clock):
    """The control center (sample registry) served by waitress, with one user and one vote today."""
    import waitress

    from analytics.web import create_app
    from analytics.center.accounts import create_user
    from analytics.web.context import get_db, get_store, resources

    app = create_app({"SECRET_KEY": "ux-browser", "STORE_URL": f"sqlite:///{tmp_path / 'votes.db'}",
                      "CENTER_DB": str(tmp_path / "center.db"), "REGISTRY": heze, "CLOCK": clock,
                      "SESSION_COOKIE_SECURE": False, "BACKGROUND_WORKERS": False, "STREAM_MAX_SECONDS": 20.0,
                      "MAP_CACHE_SECONDS": 0.0})
    create_user(get_db(app), "city", PASSWORD, "city", method=FAST_HASH)
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield {"url": f"http://127.0.0.1:{server.effective_port}", "store": get_store(app), "clock": clock}
    finally:
        server.close()
        resources(app).close()




def test_live_map_banner_toolbar_click_and_ticker(served, browser):
    from selenium.webdriver.common.by import By

    url = served["url"]
    browser.get(url + "/login")
    browser.find_element(By.NAME, "username").send_keys("city")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait(lambda: browser.execute_script("return document.querySelector('#map[data-drawn=\"1\"]') !== null"),
          30, "the map to be drawn")

    assert browser.find_element(By.ID, "sample-banner").is_displayed()
    titles = [b.get_attribute("data-title") for b in browser.find_elements(By.CSS_SELECTOR, "#map .modebar-btn")]
    assert titles and "平移" in titles and not any("Share" in (t or "") for t in titles)
    assert browser.find_element(By.ID, "ticker-empty").is_displayed()

    # A vote arrives: the empty-state line goes, the vote is listed.
    _wait(lambda: browser.find_element(By.ID, "stream-state").text == "实时", 20, "the event stream to open")
    write_votes(served["store"], [(DEVICE_A, "satisfied", served["clock"].now() - timedelta(minutes=1))])
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, f"#ticker li[data-device='{DEVICE_A}']"), 15, "the vote")
    assert not browser.find_elements(By.ID, "ticker-empty")

    # Clicking a county (plotly's click event with that county's own point) opens its drill-down page.
    browser.execute_script("""
        var gd = document.getElementById('map');
        var trace = gd.data.filter(function (t) { return t.type === 'choropleth'; })[0];
        var i = trace.locations.indexOf('371721');
        gd.emit('plotly_click', {points: [{location: trace.locations[i], customdata: trace.customdata[i]}]});
    """)
    _wait(lambda: browser.current_url.endswith("/drill/county/371721"), 15, "the county page")
    _wait(lambda: browser.find_element(By.ID, "unit-name").text == "曹县", 15, "the county name")
    nav = browser.find_element(By.CSS_SELECTOR, ".nav a.active")
    assert nav.text == "逐级查看" and nav.get_attribute("aria-current") == "page"
