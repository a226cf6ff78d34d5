"""The adversary matrix, control center and imports (rows 11-30; rows 1-10 are in test_adversary.py).

``manyi serve`` runs with the arguments of deploy/systemd/manyi-center.service behind nginx with
deploy/nginx/manyi.conf (HTTPS, certificates from deploy's make-certs.sh). Clients connect from
different loopback addresses (127.0.0.2, .3, ...), so nginx sees different clients as it would
on the city's network. Imports run as ``manyi survey import`` child processes whose peak memory
(VmHWM) is read from /proc when they end.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
import zlib
from pathlib import Path

import openpyxl
import pytest
from plugin_adversary import NGINX, CenterServer, Nginx, record
from plugin_collector import ROOT, wait_until
from plugin_deploy import DEPLOY

pytestmark = pytest.mark.adversary
PASSWORD = "Correct-Horse-9"
USERS = {"admin": ("admin", None), "security": ("security", None), "auditor": ("auditor", None),
         "city": ("city", None), "county": ("county", "371702"), "county2": ("county", "371721")}


class Browser:
    """An HTTPS client from one loopback address, with its own cookie jar (the session cookie)."""

    def __init__(self, port: int, ca: Path, source: str = "127.0.0.2", plain: bool = False):
        self.port, self.source, self.plain = port, source, plain
        self.context = ssl.create_default_context(cafile=str(ca))
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30.0):
        """(status, headers, body bytes)."""
        if self.plain:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, source_address=(self.source, 0))
        else:
            conn = http.client.HTTPSConnection("localhost", self.port, timeout=timeout, context=self.context,
                                               source_address=(self.source, 0))
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key] = rest.split(";", 1)[0]
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    def csrf(self) -> str:
        _, _, page = self.request("GET", "/login")
        found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        return found.group(1).decode() if found else ""

    def login(self, username: str, password: str = PASSWORD, extra_headers: dict | None = None):
        form = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": self.csrf()})
        return self.request("POST", "/login", form.encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                                               **(extra_headers or {})})

    def post(self, path: str, fields: dict):
        token = self.cookies and self._csrf_from_page()
        form = urllib.parse.urlencode({**fields, "csrf_token": token})
        return self.request("POST", path, form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})

    def _csrf_from_page(self) -> str:
        _, _, page = self.request("GET", "/account")
        return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The control center as deployed: ``manyi serve`` (systemd unit arguments) behind nginx (deploy's site)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian package nginx; .ci/run installs it)")
    root = tmp_path_factory.mktemp("adv-site")
    certs = root / "certs"
    subprocess.run(["bash", str(DEPLOY / "mosquitto/make-certs.sh"), str(certs), "localhost", "127.0.0.1"],
                   check=True, capture_output=True)
    center = CenterServer(root)
    for username, (role, county) in USERS.items():
        center.manyi("user", "add", username, "--role", role, *(["--county", county] if county else []),
                     "--password-stdin", stdin=PASSWORD + "\n")
    nginx = None
    try:                  # whatever fails to start, nothing is left running
        center.start()
        nginx = Nginx(root / "nginx", center.port, certs / "server.crt", certs / "server.key").start()
        site = type("Site", (), {})()
        site.center, site.nginx, site.ca, site.root = center, nginx, certs / "ca.crt", root
        site.browser = lambda source="127.0.0.2": Browser(nginx.port, site.ca, source)
        yield site
    finally:
        if nginx is not None:
            nginx.stop()
        center.stop()


def audit_rows(site, action: str) -> list[dict]:
    with sqlite3.connect(site.center.workdir / "center.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM audit_log WHERE action = ? ORDER BY id", (action,))]


def timed(fn, n: int = 10) -> float:
    """The slowest of ``n`` calls, in ms."""
    worst = 0.0
    for _ in range(n):
        started = time.perf_counter()
        fn()
        worst = max(worst, (time.perf_counter() - started) * 1000)
    return worst


# --- 11. behind the proxy: each client is itself --------------------------------------------------

def test_11a_wrong_logins_lock_out_only_their_own_client(site):
    row = record("11a", "lock everyone out behind the proxy",
                 "25 wrong passwords for 'city' from 127.0.0.2 through nginx; then 'city' logs in from 127.0.0.3",
                 "--proxies 1 with waitress trusting 127.0.0.1's X-Forwarded-For (set by nginx to $remote_addr): "
                 "the lock-out is per client")
    attacker, user = site.browser("127.0.0.2"), site.browser("127.0.0.3")
    statuses = [attacker.login("city", "Wrong-Guess-1")[0] for _ in range(25)]
    attacker_again = attacker.login("city")[0]
    user_status = user.login("city")[0]
    addresses = {r["ip"] for r in audit_rows(site, "login.failed")}
    row.figures.update(attacker_statuses=f"{statuses.count(401)}x401 {statuses.count(429)}x429",
                       attacker_right_password=attacker_again, user_elsewhere=user_status,
                       audit_addresses=",".join(sorted(addresses)))
    assert attacker_again == 429 and user_status == 302
    assert addresses == {"127.0.0.2"}
    row.passed = True


def _spoofed_address(site, number, attack, tried, defence, browser, source):
    row = record(number, attack, tried, defence)
    browser.login("nobody-here", "Wrong-Guess-1", {"X-Forwarded-For": "10.6.6.6"})
    last = audit_rows(site, "login.failed")[-1]
    row.figures.update(sent="X-Forwarded-For: 10.6.6.6", audit_ip=last["ip"])
    assert last["ip"] == source
    row.passed = True


def test_11b_a_forged_forwarded_for_is_not_believed(site):
    _spoofed_address(site, "11b", "spoof the client address", "a client at 127.0.0.4 sends its own "
                     "X-Forwarded-For through nginx", "nginx replaces the header with $remote_addr",
                     site.browser("127.0.0.4"), "127.0.0.4")


def test_11c_hsts_and_secure_cookie_behind_tls(site):
    row = record("11c", "downgrade to http", "a login page fetched through nginx over HTTPS",
                 "X-Forwarded-Proto https reaches the app: HSTS sent, session cookie Secure")
    browser = site.browser("127.0.0.5")
    _, headers, _ = browser.request("GET", "/login")
    row.figures.update(hsts=headers.get("strict-transport-security"),
                       cookie_secure="secure" in headers.get("set-cookie", "").lower())
    assert "max-age" in headers.get("strict-transport-security", "")
    assert "secure" in headers.get("set-cookie", "").lower()
    row.passed = True


def test_11d_only_the_proxy_may_set_the_forwarded_headers(site):
    _spoofed_address(site, "11d", "bypass the proxy", "a client at 127.0.0.6 talks to waitress directly with its "
                     "own X-Forwarded-For", "waitress trusts X-Forwarded-* from 127.0.0.1 only",
                     Browser(site.center.port, site.ca, "127.0.0.6", plain=True), "127.0.0.6")


def test_11e_a_hostile_client_cannot_lock_a_named_user_out(site):
    row = record("11e", "lock out the administrator", "5 wrong passwords for 'admin' from 127.0.0.7",
                 "lock-out per name and address: admin still logs in from 127.0.0.8")
    attacker = site.browser("127.0.0.7")
    for _ in range(5):
        attacker.login("admin", "Wrong-Guess-1")
    locked = attacker.login("admin")[0]
    status = site.browser("127.0.0.8").login("admin")[0]
    row.figures.update(attacker=locked, admin_elsewhere=status)
    assert locked == 429 and status == 302
    row.passed = True


# --- 12. unauthenticated input is bounded before it is stored -------------------------------------

def test_12_huge_login_names_do_not_fill_the_disk(site):
    row = record("12", "disk fill without a login", "30 POST /login with a 4 MB user name, and 30 with a 10 KB one, "
                 "from 60 addresses (past nginx's per-address limit)",
                 "login body limited to 16 KiB (413) before parsing; names bounded to 65 characters when stored")
    before = site.center.db_bytes()
    started = time.monotonic()
    statuses = []
    for i, size in enumerate([4 * 2**20] * 30 + [10_000] * 30):
        browser = site.browser(f"127.0.{1 + i // 200}.{1 + i % 200}")
        token = browser.csrf()
        body = urllib.parse.urlencode({"username": "x" * size, "password": "p", "csrf_token": token}).encode()
        statuses.append(browser.request("POST", "/login", body,
                                        {"Content-Type": "application/x-www-form-urlencoded"})[0])
    seconds = time.monotonic() - started
    time.sleep(0.5)
    grown = site.center.db_bytes() - before
    with sqlite3.connect(site.center.workdir / "center.db") as conn:
        longest = conn.execute("SELECT max(length(key)) FROM login_failures").fetchone()[0] or 0
        longest_audit = conn.execute("SELECT max(length(detail)) FROM audit_log").fetchone()[0] or 0
    row.figures.update(statuses=",".join(sorted({str(s) for s in statuses})), seconds=round(seconds, 1),
                       bytes_written=grown, longest_stored_key=longest, longest_audit_detail=longest_audit)
    assert statuses.count(413) == 30 and statuses.count(401) == 30
    assert grown < 200_000 and longest < 200 and longest_audit < 5000
    row.passed = True


# --- 13. one account cannot take every thread -----------------------------------------------------

def _open_streams(site, n: int, tokens: list[str] = (), cookie: str | None = None):
    """Open ``n`` event streams round-robin over ``tokens`` (or with a session ``cookie``), held open;
    return their statuses and sockets."""
    held, statuses = [], []
    for i in range(n):
        conn = http.client.HTTPSConnection("localhost", site.nginx.port, timeout=10,
                                           context=ssl.create_default_context(cafile=str(site.ca)))
        headers = {"Cookie": cookie} if cookie else {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        conn.request("GET", "/api/v1/stream", headers=headers)
        response = conn.getresponse()
        statuses.append(response.status)
        if response.status == 200:
            response.fp.readline()           # "retry: 2000": the stream is open and holds a thread
            held.append(conn)
        else:
            response.read()
            conn.close()
    return statuses, held


def _token(site, username: str, name: str) -> str:
    return site.center.manyi("token", "add", username, "--name", name).strip().splitlines()[-1]


def test_13a_one_account_cannot_hold_every_stream(site):
    row = record("13a", "one account blocks everyone", "40 live streams with one county token, then 10 more "
                 "with the same county account's browser session",
                 "at most 4 streams per account or token (429 beyond); /login keeps answering")
    token = _token(site, "county", "stream-a")
    statuses, held = _open_streams(site, 40, [token])
    browser = site.browser("127.0.0.10")
    worst = timed(lambda: browser.request("GET", "/login"), 10)
    session = site.browser("127.0.0.21")
    assert session.login("county2")[0] == 302
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    by_session, held_too = _open_streams(site, 10, cookie=cookie)
    for conn in held + held_too:
        conn.close()
    row.figures.update(streams_open=statuses.count(200), refused_429=statuses.count(429),
                       session_streams_open=by_session.count(200), login_page_worst_ms=round(worst))
    assert statuses.count(200) == 4 and statuses.count(429) == 36
    assert by_session.count(200) == 4 and by_session.count(429) == 6
    assert worst < 2000
    row.passed = True


def test_13b_many_tokens_together_leave_threads_free(site):
    row = record("13b", "many tokens block everyone", "40 live streams over 10 tokens of 5 accounts",
                 "at most threads - 8 = 24 streams in all; /login and the API keep answering")
    time.sleep(12.0)       # closed streams are noticed at the second keep-alive after (a write is buffered first)
    tokens = [_token(site, user, f"stream-b{i}") for i, user in enumerate(["city", "county", "county2", "admin",
                                                                             "city"] * 2)]
    statuses, held = _open_streams(site, 40, tokens)
    browser = site.browser("127.0.0.11")
    worst = timed(lambda: browser.request("GET", "/login"), 10)
    api = Browser(site.nginx.port, site.ca, "127.0.0.12")
    other = _token(site, "city", "other")
    api_status = api.request("GET", "/api/v1/me", headers={"Authorization": f"Bearer {other}"})[0]
    for conn in held:
        conn.close()
    row.figures.update(streams_open=statuses.count(200), refused_429=statuses.count(429),
                       login_page_worst_ms=round(worst), api_me=api_status)
    assert statuses.count(200) == 24 and statuses.count(429) == 16
    assert worst < 2000 and api_status == 200
    row.passed = True


# --- 14. the API's rate limit ----------------------------------------------------------------------

def test_14_one_token_cannot_flood_the_api(site):
    row = record("14", "API flood", "one token sends 300 requests to /api/v1/me as fast as it can; another "
                 "token asks meanwhile", "20 requests/s per token, bursts of 100: 429 with Retry-After beyond")
    flood, other = _token(site, "city", "flood"), _token(site, "county", "quiet")
    browser = Browser(site.nginx.port, site.ca, "127.0.0.13")
    statuses, retry = [], set()
    for _ in range(300):
        status, headers, _ = browser.request("GET", "/api/v1/me", headers={"Authorization": f"Bearer {flood}"})
        statuses.append(status)
        if status == 429:
            retry.add(headers.get("retry-after"))
    quiet = [browser.request("GET", "/api/v1/me", headers={"Authorization": f"Bearer {other}"})[0] for _ in range(5)]
    row.figures.update(ok=statuses.count(200), refused_429=statuses.count(429), retry_after=",".join(sorted(retry)),
                       other_token=",".join(str(s) for s in quiet))
    assert statuses.count(429) > 100 and statuses.count(200) >= 100 and quiet == [200] * 5
    assert retry and all(r and r.isdigit() for r in retry)
    row.passed = True


# --- 15-20. accounts, tokens, separation of duties, audit ----------------------------------------

def _session_payload(browser) -> str:
    value = browser.cookies["manyi_session"]
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return (zlib.decompress(raw) if compressed else raw).decode("utf-8", "replace")


def test_15_a_new_token_never_travels_in_the_cookie(site):
    row = record("15", "token in the cookie", "the security administrator issues a token on the web page",
                 "shown once in the response (no-store), never put in the signed, unencrypted session cookie")
    browser = site.browser("127.0.0.14")
    assert browser.login("security")[0] == 302
    status, headers, body = browser.post("/admin/users/city/token", {"name": "大屏"})
    token = re.search(rb"mny_[A-Za-z0-9_-]+", body).group(0).decode()
    browser.request("GET", "/admin/users")
    cookie = _session_payload(browser)
    row.figures.update(status=status, cache_control=headers.get("cache-control"), token_in_cookie=token in cookie)
    assert status == 200 and "no-store" in headers.get("cache-control", "") and token not in cookie
    row.passed = True


def test_16_weak_passwords_are_refused(site):
    row = record("16", "weak password", "the administrator adds a user with '12345678', 'password1', and the "
                 "user's own name", "length 10, three kinds of character, not the name (等保 2.0 8.1.4.1)")
    browser = site.browser("127.0.0.15")
    assert browser.login("admin")[0] == 302
    results = [browser.post("/admin/users", {"username": "weakling", "password": pw, "role": "city"})[0]
               for pw in ("12345678", "password1", "Weakling-2026")]
    result = subprocess.run([sys.executable, "-m", "manyi", "user", "add", "weak2", "--role", "city",
                             "--password-stdin", "--db", str(site.center.workdir / "center.db")],
                            input="12345678\n", capture_output=True, text=True, env=site.center.env)
    row.figures.update(web=",".join(map(str, results)), cli_exit=result.returncode)
    assert results == [400, 400, 400] and result.returncode != 0
    row.passed = True


def test_17_separation_of_duties(site):
    row = record("17", "one administrator does everything", "the system administrator reads the audit log and "
                 "adds an auditor; the auditor opens the map; the security administrator reads votes",
                 "三员分立: each role only its own pages; administrators made on the server only")
    admin, auditor, security = site.browser("127.0.0.16"), site.browser("127.0.0.17"), site.browser("127.0.0.18")
    for browser, name in ((admin, "admin"), (auditor, "auditor"), (security, "security")):
        assert browser.login(name)[0] == 302
    results = {
        "admin /audit": admin.request("GET", "/audit")[0],
        "admin adds auditor": admin.post("/admin/users", {"username": "aud2", "password": "Long-Enough-12",
                                                          "role": "auditor"})[0],
        "auditor /": auditor.request("GET", "/")[0],
        "auditor /api/v1/map": auditor.request("GET", "/api/v1/map")[0],
        "auditor /audit": auditor.request("GET", "/audit")[0],
        "security /api/v1/feed": security.request("GET", "/api/v1/feed")[0],
        "security /admin/users": security.request("GET", "/admin/users")[0],
    }
    row.figures.update({k.replace(" ", "_"): v for k, v in results.items()})
    assert results == {"admin /audit": 403, "admin adds auditor": 400, "auditor /": 403, "auditor /api/v1/map": 403,
                       "auditor /audit": 200, "security /api/v1/feed": 403, "security /admin/users": 200}
    row.passed = True


def test_18_nobody_can_rewrite_the_audit_log(site, tmp_path):
    row = record("18", "erase the traces", "UPDATE and DELETE on audit_log in the database file; then the same "
                 "with the triggers dropped", "append-only triggers; a hash chain that `manyi audit verify` checks")
    db = site.center.workdir / "center.db"
    refused = []
    with sqlite3.connect(db) as conn:
        for sql in ("UPDATE audit_log SET ip = '1.1.1.1'", "DELETE FROM audit_log"):
            try:
                conn.execute(sql)
                refused.append(False)
            except sqlite3.DatabaseError:
                refused.append(True)
    intact = subprocess.run([sys.executable, "-m", "manyi", "audit", "verify", "--db", str(db)], capture_output=True,
                            text=True, env=site.center.env)
    copy = tmp_path / "copy.db"
    with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET ip = '1.1.1.1' WHERE id = (SELECT min(id) + 1 FROM audit_log)")
    tampered = subprocess.run([sys.executable, "-m", "manyi", "audit", "verify", "--db", str(copy)],
                              capture_output=True, text=True, env=site.center.env)
    row.figures.update(update_refused=refused[0], delete_refused=refused[1], verify_intact=intact.returncode,
                       verify_tampered=tampered.returncode)
    assert refused == [True, True] and intact.returncode == 0 and tampered.returncode == 1
    row.passed = True


def test_19_county_cursors_reveal_no_city_counts(site):
    from collector.stores.base import StoredVote
    from collector.stores.sqlite import SQLiteStore
    from datetime import datetime, timezone
    row = record("19", "read city-wide counts from the feed", "a county user reads /api/v1/feed while 500 "
                 "votes arrive in another county, and sends raw cursors",
                 "sealed cursors (random nonce, MAC); the county's feed reads only its own terminals")
    store = SQLiteStore(site.center.workdir / "votes.db")
    now = datetime.now(timezone.utc)
    try:
        store.write([StoredVote("hz-371702001-w01", 1, "satisfied", now, now, now.isoformat(), True)])
        store.write([StoredVote("hz-371721001-w01", s, "satisfied", now, now, now.isoformat(), True)
                     for s in range(1, 501)])
    finally:
        store.close()
    browser = site.browser("127.0.0.19")
    assert browser.login("county")[0] == 302
    _, _, body = browser.request("GET", "/api/v1/feed")
    feed = json.loads(body)
    raw = browser.request("GET", "/api/v1/feed?after=1")[0]
    row.figures.update(items=len(feed["items"]), devices=",".join(sorted({i["device"] for i in feed["items"]})),
                       cursor_sample=feed["cursor"][:16] + "…", raw_cursor=raw)
    assert [i["device"] for i in feed["items"]] == ["hz-371702001-w01"]
    assert not re.search(r"^\d+$", feed["cursor"]) and raw == 400
    row.passed = True


def test_20_an_expired_administrator_password_must_be_changed(site):
    row = record("20", "stale administrator password", "the security administrator's password is 91 days old",
                 "every page redirects to /account until it is changed (等保: periodic change)")
    with sqlite3.connect(site.center.workdir / "center.db") as conn:
        conn.execute("UPDATE users SET password_changed_at = '2020-01-01T00:00:00+00:00' WHERE username = 'security'")
    browser = site.browser("127.0.0.20")
    status, headers, _ = browser.login("security")
    page = browser.request("GET", "/admin/users")
    row.figures.update(login=f"{status} -> {headers.get('location')}", users_page=f"{page[0]} -> {page[1].get('location')}")
    assert status == 302 and headers["location"].endswith("/account")
    assert page[0] == 302 and page[1]["location"].endswith("/account")
    row.passed = True


# --- 21-25. spreadsheets that come by e-mail -----------------------------------------------------

MEASURE = """
import runpy, sys
sys.argv = ["manyi", *sys.argv[1:]]
try:
    runpy.run_module("manyi", run_name="__main__")
finally:
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    sys.stderr.write("PEAK " + peak.split()[1] + "\\n")
"""


def run_import(path: Path, db: Path, timeout: float = 120) -> tuple[int, str, float, float]:
    """``manyi survey import`` in a child: (exit code, output, peak MB, seconds)."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", MEASURE, "survey", "import", str(path), "--quarter", "2026Q3",
                             "--db", str(db)], capture_output=True, text=True, timeout=timeout,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    peak = int(re.search(r"PEAK (\d+)", result.stderr).group(1)) / 1024
    return result.returncode, result.stdout + result.stderr, peak, time.monotonic() - started


def _workbook(edit=None, cells: dict | None = None) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["日期", "手机号", "县区", "乡镇(街道)", "评价", "备注"])
    sheet.append(["2026-07-20", "", "曹县", "", "满意", ""])
    for ref, value in (cells or {}).items():
        sheet[ref] = value
    buffer = io.BytesIO()
    book.save(buffer)
    data = buffer.getvalue()
    if edit is None:
        return data
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            target.writestr(info, edit(info.filename, content))
    return out.getvalue()


@pytest.fixture
def baseline_peak(tmp_path):
    """The peak memory of importing a 2-row survey: what every bomb is compared with."""
    path = tmp_path / "small.xlsx"
    path.write_bytes(_workbook())
    code, output, peak, _ = run_import(path, tmp_path / "baseline.db")
    assert code == 0, output
    return peak


def _bomb_row(number, attack, tried, path, tmp_path, baseline_peak, expect_refused=True):
    row = record(number, attack, tried, "rows read as the file holds them (no padding), at most 200,000 rows and "
                 "64 columns, merged ranges filled only inside them, zip members checked before inflating")
    code, output, peak, seconds = run_import(path, tmp_path / f"{number}.db")
    row.figures.update(file=f"{path.stat().st_size / 1024:.0f} KiB", exit=code, peak_mb=f"{peak:.0f} "
                       f"(2-row file: {baseline_peak:.0f})", seconds=round(seconds, 1),
                       message=next((line for line in output.splitlines() if "manyi survey:" in line), "")[:100])
    return row, code, output, peak


def test_21a_a_cell_at_xfd1048576(tmp_path, baseline_peak):
    path = tmp_path / "far.xlsx"
    path.write_bytes(_workbook(cells={"XFD1048576": "x"}))
    row, code, output, peak = _bomb_row("21a", "import memory bomb: far cell", "a 2-row survey with one more cell at "
                                        "XFD1048576", path, tmp_path, baseline_peak)
    assert code == 2 and "more than 200,000 rows" in output
    wide = tmp_path / "wide.xlsx"
    wide.write_bytes(_workbook(cells={"XFD2": "x"}))
    code2, output2, peak2, _ = run_import(wide, tmp_path / "wide.db")
    row.figures.update(wide_row_exit=code2, wide_row_peak_mb=round(peak2))
    assert code2 == 2 and "beyond column 64" in output2 and peak2 < baseline_peak + 50
    assert peak < baseline_peak + 50
    row.passed = True


def test_21b_a_merged_range_over_the_whole_width(tmp_path, baseline_peak):
    def merge(name, content):
        if name == "xl/worksheets/sheet1.xml":
            return content.replace(b"</sheetData>", b'</sheetData><mergeCells count="1"><mergeCell ref="A3:XFD20000"/>'
                                   b"</mergeCells>")
        return content
    path = tmp_path / "merged.xlsx"
    path.write_bytes(_workbook(merge))
    row, code, output, peak = _bomb_row("21b", "import memory bomb: merged range", "a survey with a merged range "
                                        "A3:XFD20000", path, tmp_path, baseline_peak)
    assert code == 0, output
    assert peak < baseline_peak + 50
    row.passed = True


def test_21c_a_csv_of_ten_million_empty_rows(tmp_path, baseline_peak):
    path = tmp_path / "rows.csv"
    path.write_bytes("日期,手机号,县区,乡镇(街道),评价,备注\n".encode() + b"x\n" * 10_000_000)
    row, code, output, peak = _bomb_row("21c", "import memory bomb: CSV rows", "a 20 MB CSV of 10 million "
                                        "one-character rows", path, tmp_path, baseline_peak)
    assert code == 2 and "more than 200,000 rows" in output
    assert peak < baseline_peak + 250
    row.passed = True


def test_21d_a_shared_string_zip_bomb(tmp_path, baseline_peak):
    def bomb(name, content):
        if name == "xl/sharedStrings.xml" or name == "[Content_Types].xml":
            return content
        return content
    data = _workbook()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        strings = b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + \
            b"<si><t>a</t></si>" * 3_000_000 + b"</sst>"
        target.writestr("xl/sharedStrings.xml", strings)
    path = tmp_path / "strings.xlsx"
    path.write_bytes(out.getvalue())
    row, code, output, peak = _bomb_row("21d", "import memory bomb: shared strings", "a workbook whose text table "
                                        "inflates to 51 MB (3 million strings)", path, tmp_path, baseline_peak)
    assert code == 2 and "text table" in output
    assert peak < baseline_peak + 50
    row.passed = True


def test_22_a_formula_in_an_optional_column_keeps_the_answer(tmp_path):
    def uncached(name, content):
        if name == "xl/worksheets/sheet1.xml":
            return re.sub(rb'<c r="F2"[^>]*>.*?</c>|<c r="F2"[^>]*/>', b"", content).replace(
                b"</row></sheetData>", b'<c r="F2"><f>HYPERLINK("http://evil.example","x")</f></c></row></sheetData>')
        return content
    path = tmp_path / "note.xlsx"
    path.write_bytes(_workbook(uncached))
    row = record("22", "an optional cell costs the answer", "a 12333 answer whose 备注 cell is a formula without "
                 "a cached value", "only required fields reject a row: the note is kept as neutralised text, "
                 "with a warning")
    code, output, _, _ = run_import(path, tmp_path / "note.db")
    with sqlite3.connect(tmp_path / "note.db") as conn:
        notes = [r[0] for r in conn.execute("SELECT note FROM survey_answers")]
    row.figures.update(exit=code, imported=len(notes), note=notes[0] if notes else None,
                       warning="warnings" in output)
    assert code == 0 and len(notes) == 1 and notes[0].startswith("'=HYPERLINK") and "warnings" in output
    row.passed = True
