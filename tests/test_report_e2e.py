"""End to end: votes published over MQTT, stored by the real collector in SQLite, reported by ``manyi report``."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import openpyxl
from plugin_collector import make_vote, wait_until

from analytics.center import CenterDB
from analytics.quarter import load_published
from manyi import protocol
from manyi.cli import main
from manyi.periods import CHINA_TZ

RATING_LABEL = {"satisfied": "S", "basic": "B", "unsatisfied": "U"}


def test_report_from_votes_stored_by_the_collector(running_collector, vote_store, publisher, tiny_registry, tmp_path):
    rng = random.Random(7)
    devices = tiny_registry.devices()
    county_of = {a.device: tiny_registry.location_of_window(a.window_id).county_code for a in tiny_registry.assignments}
    expected = {code: {"S": 0, "B": 0, "U": 0} for code in tiny_registry.counties}
    votes, seqs = [], {d: 0 for d in devices}
    start = datetime(2026, 7, 6, 9, 0, tzinfo=CHINA_TZ)
    for i in range(300):  # ordinary votes: one every 7 minutes per terminal, never a burst
        device = devices[i % len(devices)]
        seqs[device] += 1
        rating = rng.choice(protocol.RATINGS)
        at = start + timedelta(days=(i // len(devices)) % 80, minutes=7 * seqs[device])
        votes.append(make_vote(device, seqs[device], rating, at))
        expected[county_of[device]][RATING_LABEL[rating]] += 1
    burst_device = "hz-371721101-w02"
    burst_at = datetime(2026, 9, 15, 10, 0, tzinfo=CHINA_TZ)
    for j in range(8):  # 8 不满意 presses in 8 s: the 6th, 7th and 8th are flagged as a burst
        seqs[burst_device] += 1
        votes.append(make_vote(burst_device, seqs[burst_device], protocol.UNSATISFIED, burst_at + timedelta(seconds=j)))
    expected["371721"]["U"] += 5
    seqs[devices[0]] += 1  # 00:30 on 1 October in Heze: belongs to Q4, not to this report
    votes.append(make_vote(devices[0], seqs[devices[0]], protocol.SATISFIED,
                           datetime(2026, 9, 30, 16, 30, tzinfo=timezone.utc)))
    publisher.votes(votes)
    wait_until(lambda: vote_store.stats()["votes"] == len(votes), 60, message=f"{len(votes)} votes stored")

    tiny_registry.save(tmp_path / "registry")
    out = tmp_path / "2026Q3.xlsx"
    assert main(["report", "--quarter", "2026Q3", "--format", "xlsx", "--out", str(out), "--publish",
                 "--store", vote_store.url, "--db", str(tmp_path / "center.db"),
                 "--registry", str(tmp_path / "registry")]) == 0

    sheet = openpyxl.load_workbook(out)["县区"]
    headers = [c.value for c in sheet[1]]
    col = {h: i for i, h in enumerate(headers)}
    rows = {r[0].value: r for r in sheet.iter_rows(min_row=2)}
    for code, want in expected.items():
        got = rows[code]
        assert (got[col["终端满意"]].value, got[col["终端基本满意"]].value, got[col["终端不满意"]].value) == \
            (want["S"], want["B"], want["U"]), code
    assert rows["371721"][col["剔除票数"]].value == 3
    assert rows["371702"][col["剔除票数"]].value == 0
    assert sum(rows[c][col["终端评价数 n"]].value for c in rows) == 305

    db = CenterDB(tmp_path / "center.db")
    try:
        result = load_published(db, 1)
    finally:
        db.close()
    assert result.input_counts["votes"] == 305 and result.input_counts["excluded"] == 3
    assert result.counties.set_index("code").loc["371721", "excluded_T"] == 3
