"""The API benchmark runs end to end with tiny sizes (Python client pool and, when installed, wrk).

No time is asserted (benchmarks print figures; tests check behaviour only)."""

import re

import pytest

from bench import bench_api


def _rows(out: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(shared|no sharing)\s+(.+?)\s{2,}(\d+)\s", line)
        if match:
            rows[(match.group(1), match.group(2))] = line.split()
    return rows


@pytest.mark.slow
def test_bench_api_runs_with_tiny_sizes(tmp_path, capsys):
    argv = ["--votes", "2000", "--duration", "1", "--sequential", "1", "--cache-dir", str(tmp_path), "--pool"]
    assert bench_api.main(argv) == 0
    out = capsys.readouterr().out
    assert "Python client pool" in out
    rows = _rows(out)
    for label, path, _ in bench_api.ENDPOINTS:
        assert ("shared", label) in rows, f"{label} not measured:\n{out}"
        assert rows[("shared", label)][-1] == "0", f"{label} had errors:\n{out}"
        if path.startswith(("/api/v1/map", "/api/v1/rankings")):
            assert ("no sharing", label) in rows
    assert "HTTP" not in out                       # every endpoint answered 200 with the Bearer token


@pytest.mark.skipif(bench_api.WRK is None, reason="wrk is not installed (Debian package wrk)")
def test_bench_api_with_wrk(tmp_path, capsys):
    argv = ["--votes", "2000", "--duration", "1", "--cache-dir", str(tmp_path), "--no-baseline"]
    assert bench_api.main(argv) == 0
    out = capsys.readouterr().out
    assert "load from wrk" in out
    rows = _rows(out)
    assert len(rows) == len(bench_api.ENDPOINTS) and all(r[-1] == "0" for r in rows.values())
