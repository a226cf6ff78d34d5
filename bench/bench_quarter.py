"""Benchmark: the quarterly report over 10 million votes of a province-sized registry.

Data (bench/data.py, fixed seed, SAMPLE): a synthetic Shandong-like registry (16 cities,
~138 county-level units, ~1,870 townships, ~2,000 halls, ~5,950 terminals, a few terminals
moved mid-quarter and windows whose staff changes at midnight) and ``--votes`` votes of
2026Q3 written into a real SQLiteStore file (votes table, hourly roll-up, terminals,
month roll-up) exactly as the collector leaves them. The file is cached under
``var/bench/`` by seed and size; its generation time is printed separately.

Two runs, each in its own child process (peak RSS = the child's VmHWM, so numpy,
pandas and SQLite memory count; tracemalloc would miss them):

1. ``manyi``: :func:`analytics.quarter.compute_quarter` over the store (period totals
   from the roll-ups, the registry joins, staff, the model), plus ``--report`` the XLSX
   report. Time: the best of ``--repeat`` runs (the first, cold run is printed too).
2. ``plain pandas``: the common way: ``pd.read_sql`` of the quarter's raw votes from the
   same file, attribution to the window valid at each vote's time (merge with the
   assignment history), group-by window × rating, join to the registry's counties.

Both must give the same county counts (checked). Targets: manyi ≤ 1 s, ≥ 20× the plain
way, peak RSS ≤ 500 MB.

Run: ``python -m bench.bench_quarter [--votes N] [--quick]`` or ``python -m bench quarter``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS, TARGET_RATIO, TARGET_MB = 1.0, 20.0, 500.0


def _rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM (reset by exec, unlike ru_maxrss, which a
    child started right after the parent generated the data would inherit)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _county_counts_from_result(result) -> dict:
    frame = result.windows.groupby("county_code")[["S_T", "B_T", "U_T"]].sum()
    return {code: [int(v) for v in row] for code, row in zip(frame.index, frame.to_numpy()) if code}


def child_manyi(store_path: str, seed: int, repeat: int, report: bool) -> dict:
    """compute_quarter over the store (best of ``repeat``), optionally the XLSX report."""
    from analytics.quarter import compute_quarter
    from bench.data import QUARTER, province_registry
    from collector.stores.sqlite import SQLiteStore

    base = _rss_mb()
    registry = province_registry(seed)
    store = SQLiteStore(store_path)
    times, result, report_s = [], None, None
    for _ in range(repeat):
        started = time.perf_counter()
        result = compute_quarter(store, registry, None, QUARTER)
        times.append(time.perf_counter() - started)
    if report:
        from analytics.output.report import write_report
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            write_report(result, Path(tmp) / "report.xlsx")
            report_s = time.perf_counter() - started
    store.close()
    return {"first": times[0], "best": min(times), "report_s": report_s, "peak_mb": _rss_mb(), "base_mb": base,
            "votes": result.input_counts["votes"] + result.input_counts["excluded"],
            "rows": result.input_counts["count_rows"], "counties": _county_counts_from_result(result)}


def child_plain(store_path: str, seed: int) -> dict:
    """The common way: read_sql of the raw votes, attribution, group-by, join to the registry."""
    import sqlite3

    import pandas as pd

    from analytics.model.attribution import assignment_frame
    from analytics.quarter import registry_frames
    from bench.data import QUARTER, province_registry
    from collector.stores.base import to_us

    base = _rss_mb()
    registry = province_registry(seed)
    started = time.perf_counter()
    conn = sqlite3.connect(store_path)
    votes = pd.read_sql("SELECT device, rating, time_us, excluded FROM votes WHERE time_us >= ? AND time_us < ?",
                        conn, params=(to_us(QUARTER.start), to_us(QUARTER.end)))
    conn.close()
    n_votes = len(votes)
    votes["at"] = pd.to_datetime(votes["time_us"], unit="us", utc=True)
    joined = votes.merge(assignment_frame(registry), on="device", how="inner")
    joined = joined[(joined["valid_from"] <= joined["at"]) & (joined["at"] < joined["valid_to"])]
    kept = joined[joined["excluded"] == 0]
    per_window = kept.groupby(["window_id", "rating"]).size().unstack(fill_value=0)
    windows = registry_frames(registry)["windows"].set_index("window_id")
    per_window = per_window.join(windows["county_code"], how="inner")
    per_county = per_window.groupby("county_code")[["satisfied", "basic", "unsatisfied"]].sum()
    seconds = time.perf_counter() - started
    counties = {code: [int(v) for v in row] for code, row in zip(per_county.index, per_county.to_numpy()) if code}
    return {"best": seconds, "first": seconds, "peak_mb": _rss_mb(), "base_mb": base, "votes": n_votes,
            "rows": n_votes, "counties": counties}


def _run_child(kind: str, path: Path, args) -> dict:
    command = [sys.executable, "-m", "bench.bench_quarter", "--child", kind, "--store", str(path),
               "--seed", str(args.seed), "--repeat", str(args.repeat)] + (["--report"] if args.report else [])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures (exit code 0 even when a target is missed)."""
    from bench.data import add_store_arguments

    parser = argparse.ArgumentParser(prog="python -m bench.bench_quarter", description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--repeat", type=int, default=3, help="compute_quarter runs; the best is reported")
    parser.add_argument("--quick", action="store_true", help="1 million votes, one run")
    parser.add_argument("--report", action="store_true", help="also time writing the XLSX report")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain pandas baseline")
    parser.add_argument("--child", choices=("manyi", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from bench.data import SEED, cached_store, province_registry

    args.seed = SEED if args.seed is None else args.seed
    if args.child:
        figures = (child_manyi(args.store, args.seed, args.repeat, args.report) if args.child == "manyi"
                   else child_plain(args.store, args.seed))
        print(json.dumps(figures))
        return 0
    if args.quick:
        args.votes, args.repeat = min(args.votes, 1_000_000), 1

    registry = province_registry(args.seed)
    summary = registry.summary()
    print(f"bench_quarter: SAMPLE province registry (seed {args.seed}): {summary['counties']} counties, "
          f"{summary['townships']} townships, {summary['halls']} halls, {summary['devices']} terminals; "
          f"{args.votes:,} votes in 2026Q3")
    path, generated = cached_store(args.votes, args.seed, registry, cache_dir=args.cache_dir)
    size_mb = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()) / 2**20
    print(f"store: {path} ({size_mb:,.0f} MiB); "
          + (f"generated in {generated:.1f} s (cached for later runs)" if generated else "cached (not regenerated)"))

    runs = {"manyi": _run_child("manyi", path, args)}
    if not args.no_plain:
        runs["plain pandas"] = _run_child("plain", path, args)
    print(f"{'run':<14}{'votes':>12}{'rows read':>12}{'first s':>9}{'best s':>9}{'peak RSS MB':>13}{'imports MB':>12}")
    for label, r in runs.items():
        print(f"{label:<14}{r['votes']:>12,}{r['rows']:>12,}{r['first']:>9.3f}{r['best']:>9.3f}"
              f"{r['peak_mb']:>13.0f}{r['base_mb']:>12.0f}")
    manyi = runs["manyi"]
    if manyi["report_s"] is not None:
        print(f"XLSX report of that result: {manyi['report_s']:.2f} s")
    if manyi["votes"] != args.votes:
        print(f"LOST VOTES: the store holds {args.votes:,}, the quarter counted {manyi['votes']:,}")
        return 1
    verdict = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
    print(f"target time ≤ {TARGET_SECONDS:.0f} s: {manyi['best']:.3f} s {verdict(manyi['best'] <= TARGET_SECONDS)}; "
          f"peak RSS ≤ {TARGET_MB:.0f} MB: {manyi['peak_mb']:.0f} MB {verdict(manyi['peak_mb'] <= TARGET_MB)}")
    if "plain pandas" in runs:
        plain = runs["plain pandas"]
        if plain["counties"] != manyi["counties"]:
            print("MISMATCH: the plain way's county counts differ from compute_quarter's")
            return 1
        ratio = plain["best"] / manyi["best"]
        print(f"same county counts both ways; manyi is {ratio:.0f}x the plain way "
              f"(target ≥ {TARGET_RATIO:.0f}x: {verdict(ratio >= TARGET_RATIO)}), "
              f"using {plain['peak_mb'] / manyi['peak_mb']:.1f}x less memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
