"""Headless Chromium against the whole chain: real mosquitto, the real collector process,
the SQLite store, and the control center served by waitress.

The browser logs in, sees the county map drawn by plotly (served by the app), sees a vote
published through the broker appear in the ticker without a reload (an unsatisfied one
is signalled), and never contacts any host but the app: host names do not resolve
(as on an intranet cut off from the internet) and every resource URL is checked.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from manyi.protocol import Vote, format_timestamp
from plugin_web import (
    CHROMEDRIVER, CHROMIUM, DEVICE_A, FAST_HASH, NO_BROWSER, PASSWORD, browser_wait as _wait, screenshot as _shot,
)

pytestmark = pytest.mark.browser

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(NO_BROWSER, allow_module_level=True)


def _publish(port: int, vote: Vote) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"browser-test-{vote.seq}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(vote.topic, vote.to_json(), qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def _vote(seq: int, rating: str) -> Vote:
    return Vote(DEVICE_A, seq, rating, format_timestamp(datetime.now(timezone.utc)), True)


@pytest.fixture
def chain(tmp_path, broker, heze):
    """Collector process + control center (waitress thread) on a shared SQLite store."""
    import waitress

    from analytics.web import create_app
    from analytics.center.accounts import create_user
    from analytics.web.context import get_db, get_store, resources

    store_url = f"sqlite:///{tmp_path / 'votes.db'}"
    collector = subprocess.Popen(
        [sys.executable, "-m", "manyi", "collector", "--broker", f"127.0.0.1:{broker.port}", "--store", store_url,
         "--client-id", "browser-test-collector"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    app = create_app({"SECRET_KEY": "browser-test", "STORE_URL": store_url, "CENTER_DB": str(tmp_path / "center.db"),
                      "REGISTRY": heze, "SESSION_COOKIE_SECURE": False, "BACKGROUND_WORKERS": False,
                      "STREAM_MAX_SECONDS": 30.0})
    create_user(get_db(app), "city", PASSWORD, "city", method=FAST_HASH)
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    store = get_store(app)
    try:
        # The collector is ready once a vote published through the broker is in the store.
        def arrived():
            if collector.poll() is not None:
                raise AssertionError(f"collector exited: {collector.stdout.read().decode(errors='replace')}")
            _publish(broker.port, first)
            return store.stats()["votes"] >= 1
        first = _vote(1, "satisfied")
        _wait(arrived, 30, "the collector to store the first vote")
        yield {"url": f"http://127.0.0.1:{server.effective_port}", "broker": broker, "store": store}
    finally:
        server.close()
        collector.terminate()
        try:
            collector.wait(10)
        except subprocess.TimeoutExpired:
            collector.kill()
        resources(app).close()


def test_live_map_shows_a_vote_from_the_broker_without_reload(chain, browser):
    from selenium.webdriver.common.by import By

    base = chain["url"]
    browser.get(f"{base}/")
    assert "/login" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys("city")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait(lambda: browser.current_url.rstrip("/") == base, 20, "the redirect to the live map")

    # The map: plotly's SVG with one path per county polygon, drawn from the app's own assets.
    _wait(lambda: browser.execute_script("return document.querySelector('#map[data-drawn=\"1\"]') !== null"),
          60, "the map to be drawn")
    assert browser.find_elements(By.CSS_SELECTOR, "#map .main-svg")
    counties = browser.execute_script("return document.querySelectorAll('#map .choroplethlocation').length")
    assert counties == 9
    assert "OpenStreetMap" in browser.find_element(By.ID, "map").text
    _wait(lambda: browser.find_element(By.ID, "stream-state").text == "实时", 20, "the event stream to open")
    # The vote stored at start-up is already in the ticker.
    assert browser.find_elements(By.CSS_SELECTOR, f"#ticker li[data-device='{DEVICE_A}'][data-seq='1']")
    _shot(browser, "live-map")

    browser.execute_script("window.__sameDocument = true;")
    started = time.monotonic()
    _publish(chain["broker"].port, _vote(2, "unsatisfied"))
    item = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, f"#ticker li[data-device='{DEVICE_A}'][data-seq='2']"),
                 15, "the published vote in the ticker")[0]
    latency = time.monotonic() - started
    assert "unsatisfied" in item.get_attribute("class")
    assert "不满意" in item.text
    banner = browser.find_element(By.ID, "alert-banner")
    assert banner.is_displayed() and "不满意评价" in banner.text
    assert browser.execute_script("return window.__sameDocument === true"), "the page was reloaded"
    _shot(browser, "live-map-unsatisfied")
    print(f"vote published -> shown in the browser: {latency:.2f} s")
    # The map and its table are redrawn a few seconds later, still without a reload.
    first_row = "return document.querySelector('#county-table tbody tr td:nth-child(2)').textContent"
    _wait(lambda: browser.execute_script(first_row) == "2", 20, "the county table to count the new vote")
    assert browser.execute_script("return window.__sameDocument === true"), "the page was reloaded"

    # Nothing left the machine: every resource the page loaded came from the app.
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])")
    outside = [u for u in urls if not u.startswith(base + "/")]
    assert not outside, outside
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, json.dumps(errors, ensure_ascii=False, indent=1)

    # The unsatisfied vote opened a follow-up case (督办): open it and close it.
    browser.find_element(By.CSS_SELECTOR, "nav a[href='/cases']").click()
    _wait(lambda: browser.current_url.startswith(f"{base}/cases"), 20, "the case list")
    links = _wait(lambda: [a for a in browser.find_elements(By.CSS_SELECTOR, "a[href^='/cases/']")
                           if a.get_attribute("href").rstrip("/").split("/")[-1].isdigit()], 20, "a case in the list")
    assert len(links) == 1
    links[0].click()
    case = _wait(lambda: browser.find_elements(By.ID, "case"), 20, "the case page")[0]
    assert case.get_attribute("data-status") != "closed"
    assert DEVICE_A in case.text
    _shot(browser, "case-open")
    # A case closes only after a 回访 that reached the citizen (or with a stated reason).
    browser.find_element(By.CSS_SELECTOR, "#form-callback button[type=submit]").click()       # 满意, the first choice
    _wait(lambda: "回访结果：满意" in browser.find_element(By.ID, "case-notes").text, 20, "the 回访 note")
    browser.find_element(By.CSS_SELECTOR, "#form-close input[name=reason]").send_keys("已回访，群众表示理解")
    browser.find_element(By.CSS_SELECTOR, "#form-close button[type=submit]").click()
    _wait(lambda: browser.find_element(By.ID, "case").get_attribute("data-status") == "closed", 20,
          "the case to be closed")
    assert "已回访，群众表示理解" in browser.find_element(By.ID, "case-closed").text
    _shot(browser, "case-closed")
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(base + "/") for u in urls), urls


def test_terminals_page_in_the_browser(chain, browser):
    from selenium.webdriver.common.by import By

    base = chain["url"]
    browser.get(f"{base}/login?next=/terminals")
    browser.find_element(By.NAME, "username").send_keys("city")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait(lambda: browser.current_url.endswith("/terminals"), 20, "the terminals page")
    row = _wait(lambda: browser.find_element(By.CSS_SELECTOR, f"tr[data-device='{DEVICE_A}']"), 20, "the terminal row")
    assert "牡丹区" in row.text
    _shot(browser, "terminals")
