"""Smoke test of bench/bench_latency.py: a --quick run through real processes prints plausible figures (no time limits)."""

from __future__ import annotations

import re

import pytest

from bench.bench_latency import latencies, percentile

ROWS = {
    "raw": "floor: raw MQTT QoS 1 publish -> bare subscriber",
    "stored": "press -> stored",
    "received": "  of which press -> collector received",
    "commit": "  of which received -> committed",
    "poll": "floor: bare store.feed() poll",
    "live": "press -> live SSE event",
}


def parse(out: str) -> dict:
    """Label -> (p50, p95, p99, max, n) of the printed rows."""
    rows = {}
    for key, prefix in ROWS.items():
        line = next((line for line in out.splitlines() if line.startswith(prefix)), None)
        assert line is not None, f"no {key!r} row in:\n{out}"
        found = re.search(r"p50 +([\d.]+) +p95 +([\d.]+) +p99 +([\d.]+) +max +([\d.]+) ms +\(n=(\d+)\)", line)
        assert found, line
        rows[key] = tuple(float(v) for v in found.groups())
    return rows


@pytest.mark.slow
def test_quick_run_prints_plausible_figures(capsys):
    from bench.bench_latency import main

    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = parse(out)
    pressed = int(re.search(r"(\d+) votes pressed on 30 terminals", out).group(1))
    assert pressed == 40, out
    assert "MISSING" not in out, out
    for key, (p50, p95, p99, top, n) in rows.items():
        assert 0 <= p50 <= p95 <= p99 <= top < 60_000, (key, rows[key])
    # Every pressed vote was stored, streamed live and seen by the bare poller.
    for key in ("stored", "received", "commit", "poll", "live"):
        assert rows[key][4] == pressed, (key, out)
    assert rows["raw"][4] == pressed, out
    # A vote is stored after the collector received it, and shown live after it was stored.
    assert rows["received"][0] <= rows["stored"][0], out
    assert rows["stored"][0] <= rows["live"][0], out


def test_latencies_pair_each_press_with_its_first_observation():
    pressed = {("t1", 1): 10.0, ("t1", 2): 11.0, ("t2", 1): 12.0}
    seen = [{"d": "t1", "s": 1, "t": 10.5}, {"d": "t1", "s": 1, "t": 19.0}, {"d": "t2", "s": 1, "t": 12.25},
            {"d": "t9", "s": 1, "t": 1.0}]
    assert sorted(latencies(pressed, seen)) == [0.25, 0.5]


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50.0, 95.0, 99.0)
    assert percentile([3.0], 0.99) == 3.0
