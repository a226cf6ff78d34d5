"""The device benchmark runs end to end with tiny sizes and prints every figure."""

from bench.bench_device import main, percentile


def test_percentile_by_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0 and percentile([3.0], 0.99) == 3.0


def test_bench_device_runs_with_tiny_sizes(capsys):
    assert main(["--presses", "5", "--outbox-votes", "100", "--sim-votes", "120"]) == 0
    out = capsys.readouterr().out
    assert "outbox FULL   keep_sent=0   : add" in out and "outbox NORMAL keep_sent=1000: add" in out
    assert out.count("press to confirmation, outbox") == 2
    assert out.count("120 votes, all acknowledged") == 2, out
    assert "peak RSS" in out
