"""SharedResults: concurrent requests share one computation; a stale value is served while it is recomputed."""

import threading
import time

import pytest

from analytics.web.shared import SharedResults


def test_concurrent_callers_share_one_computation():
    shared, calls, gate = SharedResults(), [], threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)
        return "figures"
    results = []
    threads = [threading.Thread(target=lambda: results.append(shared.get("k", compute, ttl=60))) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == ["figures"] * 8 and len(calls) == 1


def test_stale_value_while_one_caller_recomputes():
    shared, gate = SharedResults(), threading.Event()
    assert shared.get("k", lambda: 1, ttl=60, version="v1") == 1
    assert shared.get("k", lambda: 2, ttl=60, version="v1") == 1          # fresh: same version

    def slow():
        gate.wait(5)
        return 3
    worker = threading.Thread(target=lambda: shared.get("k", slow, ttl=60, version="v2"))
    worker.start()
    time.sleep(0.1)
    assert shared.get("k", lambda: 99, ttl=60, version="v2") == 1         # recomputing: the previous value
    gate.set()
    worker.join(5)
    assert shared.get("k", lambda: 99, ttl=60, version="v2") == 3


def test_no_sharing_and_failures():
    shared, calls = SharedResults(), []
    for _ in range(3):
        shared.get("k", lambda: calls.append(1), ttl=0)
    assert len(calls) == 3                                               # ttl 0: every call computes

    def broken():
        raise ValueError("bad period")
    with pytest.raises(ValueError):
        shared.get("bad", broken, ttl=60)
    assert "bad" not in shared.entries                                   # no empty entry kept
    assert shared.get("bad", lambda: "ok", ttl=60) == "ok"               # and the next caller computes


def test_the_map_figure_is_what_plotly_itself_writes():
    """county_map builds plain dicts; plotly validates them and writes the very same JSON."""
    import json

    import pandas as pd
    import plotly.graph_objects as go

    from analytics.output.map_chart import county_map
    from manyi.registry import COUNTIES_GEOJSON, heze_sample

    registry = heze_sample()
    codes = sorted(registry.counties)
    counties = pd.DataFrame({"code": codes, "name": [registry.counties[c].name + "<b>" for c in codes],
                             "n": [0, 3] + [40] * (len(codes) - 2),
                             "score": [float("nan"), 70.0] + [85.5] * (len(codes) - 2),
                             "rate": [float("nan"), 0.5] + [0.9] * (len(codes) - 2)})
    halls = pd.DataFrame([(h.id, h.name, "", h.lon, h.lat, i % 3 * 10, 80.0 if i % 3 else float("nan"), i % 7 == 0,
                           h.approximate) for i, h in enumerate(list(registry.halls.values())[:40])],
                         columns=["id", "name", "county_name", "lon", "lat", "n", "score", "offline", "approximate"])
    figure = county_map(counties, json.loads(COUNTIES_GEOJSON.read_text(encoding="utf-8")), halls, "今日 <i>")
    assert [t["type"] for t in figure["data"]] == ["choropleth", "choropleth", "scattergeo", "scattergeo", "scattergeo"]
    assert json.loads(go.Figure(figure).to_json()) == figure


def test_the_oldest_idle_results_make_room():
    shared = SharedResults(max_entries=3)
    for quarter in ("2026Q1", "2026Q2", "2026Q3", "2026Q4", "2027Q1"):
        shared.get(quarter, lambda q=quarter: q, ttl=60)
        time.sleep(0.01)
    assert sorted(shared.entries) == ["2026Q3", "2026Q4", "2027Q1"]
