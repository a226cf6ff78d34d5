"""Every Flux query the InfluxDB store can issue is valid Flux, by InfluxData's own checker.

No InfluxDB 2 server runs on the build machines, so the store's contract tests run only
with INFLUXDB_V2_URL. This test still catches a misspelled function, a wrong argument or a
type error in any query: it calls every read and write path of a real InfluxStore whose
``_query`` records the script instead of sending it, and type-checks each script with
@influxdata/flux-lsp-node (WebAssembly, run with Node; installed by npm into tests/flux/).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.stores.base import StoredVote
from collector.stores.influx import InfluxStore
from manyi.exc import StoreError

FLUX_DIR = Path(__file__).parent / "flux"
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def flux_checker():
    """A function: list of Flux scripts -> list of booleans (valid?)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are not installed (Debian packages nodejs and npm)")
    package = FLUX_DIR / "node_modules/@influxdata/flux-lsp-node"
    if not package.exists():
        result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--silent"], cwd=FLUX_DIR,
                                capture_output=True, text=True, timeout=240)
        if result.returncode != 0 or not package.exists():
            pytest.skip(f"npm could not install @influxdata/flux-lsp-node: {result.stderr.strip()[:300]}")

    def check(scripts: list[str]) -> list[bool]:
        result = subprocess.run([node, str(FLUX_DIR / "check.js")], input=json.dumps(scripts), capture_output=True,
                                text=True, timeout=120, cwd=FLUX_DIR)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    return check


def issued_queries() -> dict[str, str]:
    """Every Flux script the store sends, by what it was for (nothing is sent: ``_query`` records)."""
    store = InfluxStore("http://127.0.0.1:9", "org", "votes", "token")
    sent: dict[str, str] = {}

    def record(flux: str, what: str) -> list[dict]:
        sent.setdefault(f"{what} #{sum(1 for k in sent if k.startswith(what + ' #')) + 1}", flux)
        return []

    store._query = record
    devices = ["hz-371702001-w01", "hz-371702002-w01"]
    calls = [
        lambda: store.counts(T0, T0 + timedelta(days=1)),
        lambda: store.counts(T0, T0 + timedelta(days=30), bucket="day", devices=devices),
        lambda: store.feed(),
        lambda: store.feed(after="1700000000000000", limit=50),
        lambda: store.feed(limit=5, devices=devices),
        lambda: store.feed(after="1700000000000000", devices=devices),
        lambda: list(store.votes(T0, T0 + timedelta(hours=1))),
        lambda: list(store.votes(T0, T0 + timedelta(hours=1), devices=devices, ratings=["unsatisfied"])),
        lambda: store.dead_letters(),
        lambda: store.dead_letters(reason="bad_json"),
        lambda: store.dead_letter_counts(),
        lambda: store.terminals(),
        lambda: store.heard_hours(T0, T0 + timedelta(days=30)),
        lambda: store.heard_hours(T0, T0 + timedelta(days=1), devices=devices),
        lambda: store.gaps(),
        lambda: store.gaps(devices[0]),
        lambda: store.stats(),
        lambda: store.write([StoredVote(devices[0], 1, "satisfied", T0, T0, T0.isoformat(), True)]),
        # a terminal whose highest stored seq is 99 sends seq 1 again: the all-time seq reuse lookup
        lambda: store._max_seq.update({devices[0]: (99, time.monotonic())}),
        lambda: store.write([StoredVote(devices[0], 1, "basic", T0, T0, T0.isoformat(), True)]),
    ]
    for call in calls:
        try:
            call()
        except (IndexError, KeyError, ValueError, TypeError, StoreError):
            pass          # an empty answer may not satisfy the caller, and no server answers the write;
                          # the script was recorded first
    store.close()
    return sent


def test_every_query_of_the_influx_store_is_valid_flux(flux_checker):
    queries = issued_queries()
    assert len(queries) >= 15, sorted(queries)
    valid = flux_checker(list(queries.values()))
    invalid = [name for name, ok in zip(queries, valid) if not ok]
    assert not invalid, {name: queries[name] for name in invalid}


def test_the_checker_rejects_what_influxdb_would(flux_checker):
    """The checker is not a formality: a misspelled function, a wrong argument and a type error fail."""
    good = 'from(bucket: "votes") |> range(start: -1h) |> filter(fn: (r) => r._measurement == "vote")'
    assert flux_checker([good, good.replace("filter(", "filtr("), good.replace("start:", "begin:"),
                         good.replace('"vote"', "1 + \"x\"")]) == [True, False, False, False]
