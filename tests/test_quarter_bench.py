"""The quarter benchmark runs end to end with tiny sizes: generated store, both ways, same counts.

No time is asserted (benchmarks print figures; tests check behaviour only)."""

import sqlite3

from bench.bench_quarter import main
from bench.data import build_store, province_registry


def test_bench_quarter_runs_with_tiny_sizes(tmp_path, capsys):
    assert main(["--votes", "3000", "--repeat", "1", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "generated in" in out and "manyi" in out and "plain pandas" in out
    assert "same county counts both ways" in out
    assert main(["--votes", "3000", "--repeat", "1", "--cache-dir", str(tmp_path), "--no-plain"]) == 0
    assert "cached (not regenerated)" in capsys.readouterr().out


def test_generated_store_is_what_the_collector_leaves(tmp_path):
    registry = province_registry(7, cities=2)
    summary = registry.summary()
    assert registry.sample and summary["counties"] >= 16 and summary["devices"] > 300
    registry.validate()
    path = tmp_path / "votes.db"
    build_store(path, registry, 5000, seed=7, log=lambda *_: None)
    conn = sqlite3.connect(path)
    by_votes = conn.execute("SELECT device, time_us / 3600000000 * 3600, rating, sum(1 - excluded), sum(excluded)"
                            " FROM votes GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()
    assert by_votes == conn.execute("SELECT device, hour, rating, kept, excluded FROM rollup ORDER BY 1, 2, 3").fetchall()
    assert conn.execute("SELECT sum(kept + excluded) FROM rollup_month").fetchone()[0] == 5000
    terminals = conn.execute("SELECT device, max(received_us), max(time_us), max(seq), count(*) FROM votes"
                             " GROUP BY device ORDER BY device").fetchall()
    assert terminals == conn.execute("SELECT device, last_seen_us, last_vote_us, max_seq, vote_count FROM terminals"
                                     " ORDER BY device").fetchall()
    # seqs are 1..n per terminal in time order; excluded votes carry the burst flag
    assert conn.execute("SELECT count(*) FROM (SELECT device, seq, time_us, lag(time_us) OVER"
                        " (PARTITION BY device ORDER BY seq) AS prev FROM votes) WHERE prev > time_us").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM votes WHERE (flags = 'burst') != (excluded = 1)").fetchone()[0] == 0
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
