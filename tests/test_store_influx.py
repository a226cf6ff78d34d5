"""InfluxDB store without a server: point identity, Flux text, URL settings, and failure on a dead port.

The store contract itself runs against a real InfluxDB 2 in test_store_contract.py when
INFLUXDB_V2_URL is set; nothing here pretends to be a database.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from collector.stores import FLAG_BURST, FLAG_CLOCK_REPLACED, DeadLetter, StoredVote, TerminalStatus
from collector.stores.influx import (
    InfluxStore, counts_flux, dead_letter_point, existing_flux, feed_flux, flux_string, gaps_flux, rfc3339,
    settings_from_url, status_point, vote_point, vote_time_ns,
)
from demo.broker import free_port
from manyi.exc import ConfigError, StoreError

T = datetime(2026, 11, 23, 1, 29, 58, 500000, tzinfo=timezone.utc)
DEV = "hz-371702001-w01"


def vote(seq=1, time=T, rating="satisfied", flags=frozenset(), received=None):
    return StoredVote(DEV, seq, rating, time, received or time + timedelta(seconds=1),
                      "2026-11-23T09:29:58.500+08:00", True, frozenset(flags))


def identity(point) -> str:
    """measurement + tag set + timestamp of a line-protocol point (the fields removed)."""
    line = point.to_line_protocol()
    series, _fields, stamp = line.rsplit(" ", 2)
    return f"{series} {stamp}"


def test_vote_point_line_protocol():
    line = vote_point(vote(seq=42, flags={FLAG_BURST})).to_line_protocol()
    assert line.startswith(f"vote,device={DEV},rating=satisfied ")
    assert "seq=42i" in line and "excluded=1i" in line and 'flags="burst"' in line and "clock_ok=true" in line
    assert line.endswith(" 1795397398500000042")
    assert vote_time_ns(vote(seq=42)) == 1795397398500000042


def test_distinct_votes_never_share_a_point_identity_and_redelivery_maps_to_the_same():
    same_ms = [vote(seq=s, time=T) for s in range(1, 2000)]                 # impossible in reality, still distinct
    assert len({identity(vote_point(v)) for v in same_ms}) == len(same_ms)
    spread = [vote(seq=s, time=T + timedelta(milliseconds=s)) for s in range(1, 2000)]
    assert len({identity(vote_point(v)) for v in same_ms + spread}) == 2 * len(same_ms)
    # Other ratings of the same seq go through the duplicate lookup; the same vote maps to the same point:
    redelivered = vote(seq=7, received=T + timedelta(hours=3))
    assert identity(vote_point(redelivered)) == identity(vote_point(vote(seq=7)))
    assert vote_point(redelivered).to_line_protocol() != vote_point(vote(seq=7)).to_line_protocol()  # received_us differs
    other_device = StoredVote("hz-371702002-w01", 7, "satisfied", T, T, "", True)
    assert identity(vote_point(other_device)) != identity(vote_point(vote(seq=7)))


def test_clock_replaced_redelivery_needs_the_lookup():
    first = vote(seq=3, time=T, flags={FLAG_CLOCK_REPLACED})
    again = vote(seq=3, time=T + timedelta(seconds=40), flags={FLAG_CLOCK_REPLACED})
    assert identity(vote_point(first)) != identity(vote_point(again))      # why write() looks up (device, seq)


def test_dead_letter_and_status_points():
    line = dead_letter_point(DeadLetter("manyi/v1/votes/x", b"\xff{", "bad_json", 'say "hi"', T), 5).to_line_protocol()
    assert line.startswith("dead_letter,reason=bad_json ") and 'payload_b64="/3s="' in line
    assert 'detail="say \\"hi\\""' in line and line.endswith(" 5000")
    status = status_point(TerminalStatus(DEV, online=False), 9).to_line_protocol()
    assert status == f"terminal_status,device={DEV} online=false 9000"
    assert status_point(TerminalStatus(DEV), 9) is None                    # nothing to record


def test_counts_flux_pushes_aggregation_to_the_server():
    start = int(datetime(2026, 7, 1, tzinfo=timezone.utc).timestamp()) * 10**9
    flux = counts_flux("manyi", start, start + 3600 * 10**9, "day", devices=[DEV])
    assert 'from(bucket: "manyi")' in flux
    assert "range(start: 2026-07-01T00:00:00.000000000Z, stop: 2026-07-01T01:00:00.000000000Z)" in flux
    assert 'r._measurement == "vote" and r._field == "excluded"' in flux
    assert f'contains(value: r.device, set: ["{DEV}"])' in flux
    assert 'group(columns: ["device", "rating"])' in flux and "window(every: 1d, offset: 16h)" in flux
    assert "reduce(identity: {total: 0, excluded: 0}" in flux
    assert "window(every: 1h)" in counts_flux("manyi", start, start + 1, "hour")


def test_other_flux_queries():
    assert 'r._field == "seq"' in existing_flux("b", 0, 10, [DEV]) and "keep(columns" in existing_flux("b", 0, 10, [DEV])
    feed = feed_flux("b", 1_000_000, 50)
    assert "range(start: 1970-01-01T00:00:01.000001000Z, stop: 2200-01-01T00:00:00Z)" in feed and 'r._measurement == "vote_feed"' in feed
    assert "desc: false" in feed and "limit(n: 50)" in feed
    latest = feed_flux("b", None, 10)
    assert "range(start: 1970-01-01T00:00:00Z, stop: 2200-01-01T00:00:00Z)" in latest
    assert "tail(n: 10)" in latest and "desc: true" in latest and "tail(" not in feed
    gaps = gaps_flux("b", DEV)
    assert "difference(" in gaps and 'sort(columns: ["_value"])' in gaps and DEV in gaps


def test_flux_strings_are_escaped():
    assert flux_string('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'
    assert rfc3339(1) == "1970-01-01T00:00:00.000000001Z"


def test_settings_from_url_and_environment():
    env = {"INFLUXDB_V2_URL": "http://influx:8086", "INFLUXDB_V2_ORG": "heze", "INFLUXDB_V2_TOKEN": "t0k"}
    assert settings_from_url("influxdb://", env) == {"url": "http://influx:8086", "org": "heze",
                                                    "bucket": "manyi", "token": "t0k"}
    got = settings_from_url("influxdb://db.local:8087?org=o2&bucket=votes&scheme=https", env)
    assert got == {"url": "https://db.local:8087", "org": "o2", "bucket": "votes", "token": "t0k"}
    assert settings_from_url("influxdb://", {**env, "INFLUXDB_V2_BUCKET": "b9"})["bucket"] == "b9"
    with pytest.raises(ConfigError, match="INFLUXDB_V2_TOKEN"):
        settings_from_url("influxdb://", {"INFLUXDB_V2_URL": "http://x:1", "INFLUXDB_V2_ORG": "o"})


def test_unreachable_server_raises_store_error_naming_it():
    port = free_port()
    store = InfluxStore(f"http://127.0.0.1:{port}", "heze", "manyi", "t", timeout_ms=2000)
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
        store.write([vote()])
    with pytest.raises(StoreError):
        store.counts(T, T + timedelta(hours=1))
    store.close()
    assert "token" not in store.url
