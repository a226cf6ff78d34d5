"""Benchmark: the control center's API (live map, rankings) over a 10-million-vote store.

Setup: the province-sized SAMPLE registry and store of bench/data.py (cached under
``var/bench/``), a fresh center db with one ``city`` account and an API token (as
``manyi token add`` issues it), and the control center served by waitress exactly as
``manyi serve`` runs it (same config builder, 32 threads, ``--no-workers``) in a child
process on loopback. The only change: the app's clock starts at 2026-09-30 15:00 China
time (the last workday of the generated quarter) and ticks in real time, so that
"today", "this week" and "this quarter" hold votes.

Load: ``wrk`` (Debian package wrk) with 50 connections over 2 threads for ``--duration``
seconds per endpoint, ``Authorization: Bearer <token>``, and a Lua ``done()`` that
prints p50/p95/p99 and the error counts; without wrk a pool of 50 Python threads with
keep-alive connections does the same (the script says which was used). Every client
sends ``Accept-Encoding: gzip, deflate`` as browsers do; sizes are as sent.

Endpoints: /api/v1/map?period=today|quarter (with the plotly figure, as the page asks),
/api/v1/rankings?quarter=2026Q3&level=county|township. Baselines in the same run:
/favicon.ico (a static file: the server's ceiling), /api/v1/me (a trivial authenticated
API call: the ceiling of any API call), and the map and ranking endpoints on a second
server with result sharing switched off (MAP_CACHE_SECONDS = RANKINGS_CACHE_SECONDS = 0:
every request computes its own result; measured with one client and ``--sequential``
requests, since 50 clients would only queue behind each other). Target: p95 ≤ 100 ms.

Run: ``python -m bench.bench_api [--votes N] [--duration S] [--quick]`` or ``python -m bench api``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

CONNECTIONS = 50
ACCEPT_ENCODING = "gzip, deflate"      # as a browser's fetch() sends it
TARGET_P95_MS = 100.0
NOW = "2026-09-30T15:00:00+08:00"
ENDPOINTS = [  # label, path, needs the token
    ("static file (ceiling)", "/favicon.ico", False),
    ("api me (ceiling)", "/api/v1/me", True),
    ("map today", "/api/v1/map?period=today", True),
    ("map quarter", "/api/v1/map?period=quarter", True),
    ("rankings county", "/api/v1/rankings?quarter=2026Q3&level=county", True),
    ("rankings township", "/api/v1/rankings?quarter=2026Q3&level=township", True),
]
LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "p50": %d, "p95": %d, "p99": %d, '
    .. '"errors": %d, "status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status, e.timeout))
end
"""
WRK = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)


class TickingClock:
    """A clock that starts at a given instant and runs at real speed."""

    def __init__(self, start: datetime):
        self.start, self.t0 = start, time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)

    def monotonic(self) -> float:
        return time.monotonic()


def serve(args) -> int:
    """Child: the control center as ``manyi serve`` runs it (waitress), with the ticking clock."""
    import waitress

    from analytics.web import create_app
    from analytics.web.cli import build_config

    ns = argparse.Namespace(store=args.store, db=args.db, registry=args.registry, host="127.0.0.1", port=args.port,
                            threads=32, secret_file=None, cookie_secure="auto", proxies=None, no_workers=True)
    config = build_config(ns)
    config["CLOCK"] = TickingClock(datetime.fromisoformat(NOW))
    if args.no_sharing:
        config.update(MAP_CACHE_SECONDS=0.0, RANKINGS_CACHE_SECONDS=0.0)
    app = create_app(config)
    print("ready", flush=True)
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=32, ident="manyi", channel_timeout=120)
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The control center in a child process."""

    def __init__(self, store: Path, db: Path, registry: Path, no_sharing: bool):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "bench.bench_api", "--serve", "--store", f"sqlite:///{store}",
                   "--db", str(db), "--registry", str(registry), "--port", str(self.port)]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent),
                   # 50 clients share one token: the per-token API rate limit would measure itself.
                   MANYI_WEB_API_RATE_PER_SECOND="1000000", MANYI_WEB_API_RATE_BURST="1000000")
        # The server's log goes to a file: waitress warns about queue depth under load, and a
        # full pipe nobody reads would stall its main loop.
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(command + (["--no-sharing"] if no_sharing else []), env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read().decode(errors='replace')[-2000:]}")
            try:
                urllib.request.urlopen(self.base + "/favicon.ico", timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start in 120 s")

    def get(self, path: str, token: str | None) -> tuple[int, int, float]:
        """One request: status, body bytes, seconds."""
        headers = {"Accept-Encoding": ACCEPT_ENCODING, **({"Authorization": f"Bearer {token}"} if token else {})}
        request = urllib.request.Request(self.base + path, headers=headers)
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, len(response.read()), time.perf_counter() - started
        except urllib.error.HTTPError as exc:
            return exc.code, 0, time.perf_counter() - started

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_wrk(url: str, token: str | None, duration: float, script: Path) -> dict:
    """wrk with CONNECTIONS connections; p50/p95/p99 in ms, requests/s, errors."""
    command = [WRK, "-t2", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--timeout", "60s", "-s", str(script),
               "-H", f"Accept-Encoding: {ACCEPT_ENCODING}"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith('{"requests"'))
    raw = json.loads(line)
    seconds = raw["duration_us"] / 1e6
    return {"rps": raw["requests"] / seconds, "p50": raw["p50"] / 1000, "p95": raw["p95"] / 1000,
            "p99": raw["p99"] / 1000, "requests": raw["requests"], "errors": raw["errors"] + raw["status_errors"],
            "clients": CONNECTIONS}


def _percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


def run_sequential(server: "Server", path: str, token: str | None, n: int) -> dict:
    """``n`` requests one after the other (one client): the cost of one uncached request."""
    latencies, errors = [], 0
    started = time.perf_counter()
    for _ in range(n):
        status, _, seconds = server.get(path, token)
        errors += status != 200
        latencies.append(seconds * 1000)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": n / elapsed, "p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95),
            "p99": _percentile(latencies, 99), "requests": n, "errors": errors, "clients": 1}


def run_pool(url: str, token: str | None, duration: float) -> dict:
    """The fallback load: CONNECTIONS Python threads, each with one keep-alive connection."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {"Accept-Encoding": ACCEPT_ENCODING, **({"Authorization": f"Bearer {token}"} if token else {})}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        mine = []
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[0] += 1
                mine.append(time.perf_counter() - started)
            except OSError:
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ms = sorted(x * 1000 for x in latencies)
    return {"rps": len(ms) / elapsed, "p50": _percentile(ms, 50), "p95": _percentile(ms, 95),
            "p99": _percentile(ms, 99), "requests": len(ms), "errors": errors[0], "clients": CONNECTIONS}


def prepare(args, log=print) -> tuple[Path, Path, Path, str]:
    """The cached store and registry directory, a fresh center db with a city account and its token."""
    from analytics.center import CenterDB
    from analytics.center.accounts import create_token, create_user
    from bench.data import FORMAT_VERSION, cached_store, province_registry

    registry = province_registry(args.seed)
    store, generated = cached_store(args.votes, args.seed, registry, cache_dir=args.cache_dir, log=log)
    log(f"store: {store} " + (f"(generated in {generated:.1f} s, cached for later runs)" if generated
                               else "(cached, not regenerated)"))
    reg_dir = store.parent / f"registry-s{args.seed}-v{FORMAT_VERSION}"
    if not (reg_dir / "counties.csv").exists():
        registry.save(reg_dir)
    db_path = Path(args.workdir) / "center.db"
    db = CenterDB(db_path)
    try:
        create_user(db, "bench", "Latency-Pass-1234", "city")
        token = create_token(db, "bench", "bench_api")
    finally:
        db.close()
    return store, db_path, reg_dir, token


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures (exit code 0 even when a target is missed)."""
    from bench.data import add_store_arguments

    parser = argparse.ArgumentParser(prog="python -m bench.bench_api", description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per endpoint (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 s per endpoint")
    parser.add_argument("--pool", action="store_true", help="use the Python client pool even when wrk is installed")
    parser.add_argument("--no-baseline", action="store_true", help="skip the server without result sharing")
    parser.add_argument("--sequential", type=int, default=5, help="requests per endpoint without sharing (default 5)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-sharing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    from bench.data import SEED

    args.seed = SEED if args.seed is None else args.seed
    if args.quick:
        args.duration = min(args.duration, 3.0)
    use_wrk = WRK is not None and not args.pool
    print(f"bench_api: {args.votes:,} votes, {CONNECTIONS} concurrent clients over loopback, "
          f"{args.duration:g} s per endpoint, load from "
          + (f"wrk ({WRK}, 2 threads)" if use_wrk else "a Python client pool (wrk not used)"))
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        store, db, registry, token = prepare(args)
        script = Path(workdir) / "report.lua"
        script.write_text(LUA)
        plan = [("shared", e) for e in ENDPOINTS]
        if not args.no_baseline:
            plan += [("no sharing", e) for e in ENDPOINTS if e[1].startswith(("/api/v1/map", "/api/v1/rankings"))]
        print(f"{'server':<12}{'endpoint':<24}{'clients':>8}{'1st ms':>8}{'KiB':>7}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
              f"{'p99 ms':>9}{'errors':>8}")
        results = {}
        for mode in ("shared", "no sharing"):
            todo = [e for m, e in plan if m == mode]
            if not todo:
                continue
            server = Server(store, db, registry, no_sharing=(mode == "no sharing"))
            try:
                for label, path, needs_token in todo:
                    status, size, first = server.get(path, token if needs_token else None)
                    if status != 200:
                        print(f"{mode:<12}{label:<24} HTTP {status}: not measured")
                        continue
                    url = server.base + path
                    key = token if needs_token else None
                    if mode == "shared":
                        r = run_wrk(url, key, args.duration, script) if use_wrk else run_pool(url, key, args.duration)
                    else:   # every request computes: one client, a few requests (50 clients would queue minutes)
                        r = run_sequential(server, path, key, args.sequential)
                    results[(mode, label)] = r
                    print(f"{mode:<12}{label:<24}{r['clients']:>8}{first * 1000:>8.0f}{size / 1024:>7.0f}"
                          f"{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['p99']:>9.1f}{r['errors']:>8}",
                          flush=True)
            finally:
                server.stop()
    for label, path, _ in ENDPOINTS[2:]:
        r = results.get(("shared", label))
        if r is None:
            continue
        ok = "ok" if r["p95"] <= TARGET_P95_MS else "MISSED"
        base = results.get(("no sharing", label))
        versus = (f"; without sharing one request alone takes {base['p50']:.0f} ms (p50 of {base['requests']},"
                  f" {base['rps']:.1f} req/s with 1 client)" if base else "")
        print(f"{label}: p95 {r['p95']:.1f} ms (target ≤ {TARGET_P95_MS:.0f} ms: {ok}){versus}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
