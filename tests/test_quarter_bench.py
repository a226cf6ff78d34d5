"""The quarter benchmark still runs (tiny sizes) and loses no vote on the way."""

from bench.bench_quarter import main


def test_bench_quarter_runs_with_tiny_sizes(capsys):
    assert main(["--votes", "20000", "--repeat", "1", "--sqlite-votes", "2000"]) == 0
    out = capsys.readouterr().out
    assert "counts-only" in out and "baseline (1/10)" in out and "sqlite (real store)" in out
