"""Smoke test of the ingest benchmark (bench/bench_ingest.py): it runs end to end with tiny numbers
and prints its figures. No time is asserted: benchmarks print, tests check behaviour."""

from __future__ import annotations

import re

import pytest

from bench.bench_ingest import main, make_votes
from manyi import protocol
from demo.broker import find_mosquitto

pytestmark = pytest.mark.skipif(not find_mosquitto(), reason="mosquitto is not installed")


def test_votes_are_real_protocol_payloads_spread_over_terminals():
    votes = make_votes(30, terminals=4)
    assert len(votes) == 4 and sum(len(p) for p in votes.values()) == 30
    for device, payloads in votes.items():
        parsed = [protocol.parse_vote(protocol.vote_topic(device), p) for p in payloads]
        assert [v.seq for v in parsed] == list(range(1, len(parsed) + 1))
        assert {v.device for v in parsed} == {device}


def test_quick_run_prints_every_figure_and_stores_every_vote(capsys):
    assert main(["--quick", "--votes", "120", "--backlog", "200", "--terminals", "3", "--common-seconds", "5",
                 "--store-votes", "500"]) == 0
    out = capsys.readouterr().out
    for label in ("ceiling: bare paho, counts", "common way: row+commit", "manyi collector", "collector / ceiling",
                  "collector / common", "publishers alone", "store.write, new votes", "store.write, duplicates"):
        assert label in out, label
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^(ceiling|common way|manyi collector)\S*[^\n]*?"
                                                        r"((?:\s+[\d,]+){4})\s*$", out, re.M)}
    assert len(rows) == 3, out
    # The collector's store holds exactly the votes sent in both phases: nothing lost, nothing doubled.
    assert "sustained collector: 120 votes" in out and "store: 120 votes, 0 duplicates" in out
    assert "drain collector: 200 votes" in out and "store: 200 votes, 0 duplicates" in out
    assert "EXPECTED" not in out
    assert re.search(r"collector / ceiling\s+\d+\.\d\dx\s+\d+\.\d\dx", out)
