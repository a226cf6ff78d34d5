"""Fixtures of the web tests (loaded by conftest.py).

- ``app``: the control center from ``create_app`` with a test config: a real SQLite vote
  store and a real CenterDB in tmp_path, the Heze sample registry, the ``clock`` FakeClock
  (Monday 2026-11-23 09:30 China time, halls open), CSRF on, background workers off.
  One user per role exists (see USERS; every password is PASSWORD), including two
  county users of different counties: ``county`` (牡丹区 371702) and ``county2`` (曹县 371721).
- ``client``, ``runner``: Flask's test client and CLI runner.
- ``auth``: log in as a role (``auth.login("county")``), get the CSRF token, POST forms with it.
- ``web_store``: the app's own vote store; ``write_votes(store, [...])`` adds votes to it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

PASSWORD = "correct-horse-9"
USERS = {
    "admin": ("admin", None),
    "city": ("city", None),
    "assessor": ("assessment", None),
    "county": ("county", "371702"),      # 牡丹区
    "county2": ("county", "371721"),     # 曹县
    "security": ("security", None),      # 安全管理员: tokens, no data
    "auditor": ("auditor", None),        # 审计管理员: the audit log, nothing else
}
FAST_HASH = "pbkdf2:sha256:1000"           # test accounts only: keeps fixtures fast
# Terminals of the Heze sample used by the tests (device -> county).
DEVICE_A = "hz-371702001-w01"            # 牡丹区 东城街道
DEVICE_B = "hz-371721001-w01"            # 曹县


@pytest.fixture
def app(tmp_path, clock, heze):
    """The control center with a test config and one user per role."""
    from analytics.web import create_app
    from analytics.center.accounts import create_user
    from analytics.web.context import get_db

    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "STORE_URL": f"sqlite:///{tmp_path / 'votes.db'}",
        "CENTER_DB": str(tmp_path / "center.db"),
        "REGISTRY": heze,
        "CLOCK": clock,
        "BACKGROUND_WORKERS": False,
        "SESSION_COOKIE_SECURE": False,
        "STREAM_MAX_SECONDS": 1.0,
        "STREAM_POLL_SECONDS": 0.05,
        "MAP_CACHE_SECONDS": 0.0,
    })
    db = get_db(app)
    for username, (role, county) in USERS.items():
        create_user(db, username, PASSWORD, role, county, method=FAST_HASH)
    yield app
    from analytics.web.context import resources
    resources(app).close()


@pytest.fixture
def client(app):
    """A Flask test client of ``app``."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A Flask CLI runner of ``app``."""
    return app.test_cli_runner()


@pytest.fixture
def web_store(app):
    """The app's vote store (a real SQLiteStore in tmp_path)."""
    from analytics.web.context import get_store
    return get_store(app)


_SEQS: dict[tuple[int, str], int] = {}


def write_votes(store, votes, *, flags=frozenset()):
    """Write votes given as (device, rating, time) tuples (seq numbered per device) and return them."""
    from collector.stores.base import StoredVote
    from manyi.protocol import format_timestamp

    stored = []
    for device, rating, moment in votes:
        key = (id(store), device)
        _SEQS[key] = _SEQS.get(key, 0) + 1
        stored.append(StoredVote(device=device, seq=_SEQS[key], rating=rating, time=moment, received_at=moment,
                                 pressed_at=format_timestamp(moment), clock_ok=True, flags=frozenset(flags)))
    store.write(stored)
    return stored


class AuthActions:
    """Log in and out through the real forms, and POST forms with the session's CSRF token."""

    def __init__(self, client):
        self.client = client

    def csrf(self) -> str:
        """The CSRF token of the client's session (fetching the login page creates one)."""
        with self.client.session_transaction() as session:
            token = session.get("csrf_token")
        if token:
            return token
        page = self.client.get("/login").get_data(as_text=True)
        return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    def login(self, username: str = "admin", password: str = PASSWORD, **kwargs):
        """POST the login form as ``username``; returns the response."""
        return self.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": self.csrf()}, **kwargs)

    def logout(self):
        """POST the logout form."""
        return self.client.post("/logout", data={"csrf_token": self.csrf()})

    def post(self, url: str, data: dict | None = None, **kwargs):
        """POST a form with the CSRF token added."""
        return self.client.post(url, data={**(data or {}), "csrf_token": self.csrf()}, **kwargs)


@pytest.fixture
def auth(client):
    """AuthActions on the test client."""
    return AuthActions(client)


@pytest.fixture
def api_token(app):
    """A function: username -> a fresh API token of that user."""
    from analytics.center.accounts import create_token
    from analytics.web.context import get_db
    return lambda username: create_token(get_db(app), username)


def china(clock, minutes_ago: float = 0) -> datetime:
    """The clock's time minus ``minutes_ago``: a convenient vote time."""
    return clock.now() - timedelta(minutes=minutes_ago)


# --- headless Chromium (the browser tests) -------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if os.access("/usr/bin/chromedriver", os.X_OK) else shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NO_BROWSER = "Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile and no name resolution except for the app (127.0.0.1)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(NO_BROWSER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def browser_wait(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something true; elements replaced meanwhile, or a
    script that cannot run yet, count as not yet."""
    from selenium.common.exceptions import JavascriptException, NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (StaleElementReferenceException, NoSuchElementException, JavascriptException):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def screenshot(driver, name: str) -> None:
    """Save a screenshot to test-artifacts/NAME.png (gitignored)."""
    (ARTIFACTS / name).parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
