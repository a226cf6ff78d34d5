"""Benchmark: the quarterly computation over 10 million votes' worth of counts.

What is timed is :func:`analytics.quarter.compute_quarter` for the Heze sample registry
(523 terminals) and a quarter of office-hours traffic: the store's ``counts()`` (day
buckets; hour buckets and the raw votes of one hour for the terminals moved during the
quarter), the pandas joins to the assignment history, the survey and score joins and
the model, i.e. everything but the report.

Two stores:

1. ``counts-only``: an in-memory VoteStore holding the hourly roll-up of a synthetic
   quarter (about 10 million votes, ~800 k hourly rows), aggregating to days and
   building CountRow objects like a real store does. It stands in for the roll-up of
   SQLite/InfluxDB without writing 10 million votes to disk on a shared test machine.
   The baseline is the same computation over 1/10 of the votes in the same process.
2. ``sqlite``: the real SQLiteStore fed through ``store.write(StoredVote...)`` with a
   smaller number of votes (``--sqlite-votes``, default 200 000), to show the real
   store's counts() cost.

Figures printed: seconds (best of ``--repeat``), count rows read, votes, peak Python
memory of one run (tracemalloc, measured in a separate run because tracing slows
Python down).

Run: ``python -m bench.bench_quarter`` (or ``python -m bench`` for every benchmark).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.model import Params
from analytics.quarter import compute_quarter
from collector.stores.base import CountRow, StoredVote, VoteStore
from manyi.periods import CHINA_TZ, Quarter
from manyi.protocol import RATINGS

QUARTER = Quarter(2026, 3)
OFFICE_HOURS = (9, 10, 11, 13, 14, 15, 16, 17)   # local clock hours with traffic
HOUR = 3600
CHINA_OFFSET = 8 * HOUR


class CountsOnlyStore(VoteStore):
    """A VoteStore over an in-memory hourly roll-up (device × hour × rating → kept, excluded)."""

    url = "memory://counts"

    def __init__(self, devices: list[str], device_idx, hour_s, rating_idx, kept, excluded):
        self.devices = np.array(devices, dtype=object)
        self.frame = pd.DataFrame({"d": device_idx.astype("int32"), "t": hour_s.astype("int64"),
                                   "r": rating_idx.astype("int8"), "kept": kept.astype("int64"),
                                   "excl": excluded.astype("int64")})
        self.votes_total = int(self.frame["kept"].sum() + self.frame["excl"].sum())

    def counts(self, start, end, bucket="hour", devices=None):
        """Counts from the roll-up, aggregated to days (China time) when asked."""
        f = self.frame
        mask = (f["t"] >= int(start.timestamp())) & (f["t"] < int(end.timestamp()))
        if devices is not None:
            wanted = set(devices)
            codes = np.array([i for i, d in enumerate(self.devices) if d in wanted], dtype="int32")
            mask &= f["d"].isin(codes)
        f = f[mask]
        if bucket == "day":
            day = (f["t"] + CHINA_OFFSET) // 86400 * 86400 - CHINA_OFFSET
            f = f.assign(t=day).groupby(["d", "t", "r"], sort=True, as_index=False)[["kept", "excl"]].sum()
        stamps = {t: datetime.fromtimestamp(t, CHINA_TZ) for t in np.unique(f["t"].to_numpy()).tolist()}
        names = self.devices
        return [CountRow(names[d], stamps[t], RATINGS[r], k, e)
                for d, t, r, k, e in zip(f["d"].tolist(), f["t"].tolist(), f["r"].tolist(),
                                         f["kept"].tolist(), f["excl"].tolist())]

    def votes(self, start, end, devices=None, ratings=None):
        """Synthetic raw votes of an hour, spread evenly over it (for moved terminals only)."""
        for row in self.counts(start, end, "hour", devices):
            n = row.count + row.excluded
            for i in range(n):
                at = row.bucket + timedelta(seconds=HOUR * i / max(n, 1))
                if start <= at < end:
                    yield StoredVote(row.device, i, row.rating, at, at, at.isoformat(), True,
                                     frozenset({"burst"}) if i < row.excluded else frozenset())

    def write(self, votes=(), dead_letters=(), statuses=()):  # pragma: no cover - read-only store
        raise NotImplementedError("CountsOnlyStore is read-only")

    def feed(self, after=None, limit=200):
        return []

    def dead_letters(self, limit=100, reason=None):
        return []

    def dead_letter_counts(self):
        return {}

    def terminals(self):
        return []

    def gaps(self, device=None):
        return []

    def stats(self):
        return {"votes": self.votes_total}


def office_hours(quarter: Quarter) -> np.ndarray:
    """UTC epoch seconds of every office hour (Mon-Fri) of the quarter."""
    hours = []
    day = quarter.start
    while day < quarter.end:
        if day.weekday() < 5:
            hours += [int((day + timedelta(hours=h)).timestamp()) for h in OFFICE_HOURS]
        day += timedelta(days=1)
    return np.array(hours, dtype="int64")


def synthetic_store(devices: list[str], total_votes: int, seed: int = 1) -> CountsOnlyStore:
    """An hourly roll-up of about ``total_votes`` votes over the quarter's office hours."""
    rng = np.random.default_rng(seed)
    hours = office_hours(QUARTER)
    n_dev, n_hour = len(devices), len(hours)
    propensity = rng.uniform(0.75, 0.97, n_dev)
    share = np.stack([propensity, (1 - propensity) * 0.7, (1 - propensity) * 0.3], axis=1)  # S, B, U
    per_cell = total_votes / (n_dev * n_hour)
    d = np.repeat(np.arange(n_dev), n_hour * 3)
    t = np.tile(np.repeat(hours, 3), n_dev)
    r = np.tile(np.arange(3), n_dev * n_hour)
    counts = rng.poisson(per_cell * share[d, r])
    excluded = rng.binomial(counts, 0.002)
    keep = counts > 0
    return CountsOnlyStore(devices, d[keep], t[keep], r[keep], counts[keep] - excluded[keep], excluded[keep])


def heze_with_moves(moves: int = 5):
    """The Heze sample with ``moves`` terminals retired mid-quarter at hh:20 (hour path + raw votes)."""
    from manyi.registry import heze_sample

    registry = heze_sample()
    for i, device in enumerate(registry.devices()[:moves]):
        registry.retire(device, datetime(2026, 8, 3 + i, 10, 20, tzinfo=CHINA_TZ))
    return registry


def _inputs(registry):
    rng = np.random.default_rng(3)
    survey = pd.DataFrame([("township", code, rating, int(rng.integers(0, 4)))
                           for code in list(registry.townships)[:100] for rating in RATINGS],
                          columns=["level", "code", "rating", "n"])
    scores = pd.DataFrame([("county", c, 90.0) for c in registry.counties]
                          + [("township", t, 85.0) for t in registry.townships], columns=["level", "code", "score"])
    return dict(survey=survey[survey["n"] > 0], scores=scores)


def time_quarter(store, registry, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs of compute_quarter, and the last result."""
    inputs = _inputs(registry)
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = compute_quarter(store, registry, None, QUARTER, Params(), **inputs)
        best = min(best, time.perf_counter() - t0)
    return best, result


def peak_memory(store, registry) -> float:
    """Peak traced Python memory (MiB) of one compute_quarter run."""
    inputs = _inputs(registry)
    gc.collect()
    tracemalloc.start()
    compute_quarter(store, registry, None, QUARTER, Params(), **inputs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def sqlite_run(registry, n_votes: int, repeat: int) -> dict:
    """Write ``n_votes`` through the real SQLiteStore, then time compute_quarter over it."""
    from collector.stores.sqlite import SQLiteStore

    rng = np.random.default_rng(5)
    devices = registry.devices()
    hours = office_hours(QUARTER)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "votes.db")
        try:
            dev = rng.integers(0, len(devices), n_votes)
            at = hours[rng.integers(0, len(hours), n_votes)] + rng.integers(0, HOUR, n_votes)
            rating = rng.choice(3, n_votes, p=[0.85, 0.1, 0.05])
            seq = {}
            t0 = time.perf_counter()
            batch = []
            for d, a, r in zip(dev.tolist(), at.tolist(), rating.tolist()):
                device = devices[d]
                seq[device] = seq.get(device, 0) + 1
                moment = datetime.fromtimestamp(a, timezone.utc)
                batch.append(StoredVote(device, seq[device], RATINGS[r], moment, moment, moment.isoformat(), True))
                if len(batch) == 5000:
                    store.write(batch)
                    batch = []
            if batch:
                store.write(batch)
            write_s = time.perf_counter() - t0
            seconds, result = time_quarter(store, registry, repeat)
            return {"votes": n_votes, "write_s": write_s, "seconds": seconds,
                    "rows": result.input_counts["count_rows"], "counted": result.input_counts["votes"]}
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_quarter", description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=10_000_000, help="votes in the big run (default 10 million)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is printed")
    parser.add_argument("--sqlite-votes", type=int, default=200_000, help="votes written to the real SQLite store (0 = skip)")
    args = parser.parse_args(argv)

    registry = heze_with_moves()
    devices = registry.devices()
    print(f"bench_quarter: {QUARTER}, {len(devices)} terminals, {len(office_hours(QUARTER))} office hours, "
          f"5 terminals moved mid-hour")
    print(f"{'run':<26}{'votes':>12}{'hour rows':>11}{'rows read':>11}{'seconds':>9}{'peak MiB':>10}")
    figures = {}
    for label, total in (("baseline (1/10)", args.votes // 10), ("counts-only", args.votes)):
        store = synthetic_store(devices, total)
        seconds, result = time_quarter(store, registry, args.repeat)
        peak = peak_memory(store, registry)
        figures[label] = seconds
        assert result.input_counts["votes"] + result.input_counts["excluded"] == store.votes_total, "votes lost"
        print(f"{label:<26}{store.votes_total:>12,}{len(store.frame):>11,}{result.input_counts['count_rows']:>11,}"
              f"{seconds:>9.2f}{peak:>10.1f}")
    ratio = figures["counts-only"] / figures["baseline (1/10)"]
    print(f"10x the votes took {ratio:.2f}x the time (rows, not votes, drive the cost)")
    if args.sqlite_votes:
        s = sqlite_run(registry, args.sqlite_votes, args.repeat)
        print(f"{'sqlite (real store)':<26}{s['votes']:>12,}{'':>11}{s['rows']:>11,}{s['seconds']:>9.2f}{'':>10}"
              f"   (writing took {s['write_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
