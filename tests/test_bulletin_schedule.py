"""The monthly schedule: due on the 1st at 08:00 China time, generated once, notified with a link until accepted."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analytics.center.documents import bulletin_row
from analytics.output.monthly import due_month, run_schedule
from manyi.periods import CHINA_TZ, Month
from test_bulletin import two_months  # noqa: F401 - the fixture
from test_indicators import november  # noqa: F401 - the fixture


def china(month, day, hour, minute=0):
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA_TZ)


def test_the_bulletin_of_a_month_is_due_on_the_first_of_the_next_at_eight():
    assert due_month(china(12, 1, 7, 59)) == Month(2026, 10)
    assert due_month(china(12, 1, 8, 0)) == Month(2026, 11)
    assert due_month(china(12, 31, 23, 0)) == Month(2026, 11)
    assert due_month(datetime(2027, 1, 1, 8, tzinfo=CHINA_TZ)) == Month(2026, 12)


class Receiver:
    """A local webhook: records each POST; answers 500 while ``fail`` is set."""

    def __init__(self):
        self.posts, self.fail = [], False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append(json.loads(body))
                self.send_response(500 if outer.fail else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.mark.browser
def test_generated_once_notified_with_a_link_retried_until_accepted(two_months, tmp_path, receiver):
    store, db, registry = two_months
    args = dict(directory=tmp_path / "bulletins", link_base="https://manyi.example.gov.cn", targets=[receiver.url])
    receiver.fail = True
    assert run_schedule(store, registry, db, china(12, 1, 7, 59), **args) == "generated+notify failed"  # October's
    assert bulletin_row(db, "2026-10") is not None and bulletin_row(db, "2026-11") is None   # November: not yet
    assert run_schedule(store, registry, db, china(12, 1, 8, 1), **args) == "generated+notify failed+notify failed"
    row = bulletin_row(db, "2026-11")
    assert set(row["files"]) == {"pdf", "xlsx"} and row["notified_at"] is None and "500" in row["notify_error"]
    assert (tmp_path / "bulletins" / "bulletin-2026-11.pdf").read_bytes()[:4] == b"%PDF"
    receiver.fail = False
    assert run_schedule(store, registry, db, china(12, 1, 8, 2), **args) == "notified+notified"   # both retried
    assert run_schedule(store, registry, db, china(12, 1, 8, 3), **args) is None   # nothing more to do
    nov = [p for p in receiver.posts if "2026年11月" in p["text"]["content"]]
    assert len(nov) == 2 and nov[-1]["url"] == "https://manyi.example.gov.cn/bulletins/files/2026-11.pdf"
    assert len(json.dumps(nov[-1])) < 1000                                        # a link, never the file
    assert bulletin_row(db, "2026-11")["notified_at"] is not None


def test_the_page_lists_the_generated_bulletin_and_serves_its_file(app, client, auth, tmp_path):
    from analytics.center.documents import record_bulletin
    from analytics.web.context import get_db

    path = tmp_path / "b.xlsx"
    path.write_bytes(b"PK\x03\x04 not really")
    record_bulletin(get_db(app), "2026-10", "2026-11-01T00:00:00+00:00",
                    {"xlsx": {"path": str(path), "bytes": 16, "sha256": "0"}})
    auth.login("city")
    page = client.get("/bulletins").get_data(as_text=True)
    assert "/bulletins/files/2026-10.xlsx" in page
    assert client.get("/bulletins/files/2026-10.xlsx").data == path.read_bytes()
    assert client.get("/bulletins/files/2026-10.pdf").status_code == 404
