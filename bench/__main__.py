"""Run every ``bench/bench_*.py`` module's ``main()`` in turn: ``python -m bench [NAME ...]``.

Each benchmark prints its own figures; a NAME (e.g. ``quarter``) runs only the matching ones.
"""

from __future__ import annotations

import importlib
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def machine() -> str:
    """One line describing this machine, printed first so every figure has its context."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    try:
        load = "load %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "load ?"
    mosquitto = "mosquitto ?"
    for path in ("/usr/sbin/mosquitto", "mosquitto"):
        try:
            out = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=5)
            mosquitto = (out.stdout or out.stderr).splitlines()[0].strip()
            break
        except (OSError, IndexError, subprocess.SubprocessError):
            continue
    return (f"machine: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {mosquitto}, {load}")


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; the exit code is the number that failed."""
    wanted = argv if argv is not None else sys.argv[1:]
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if wanted:
        names = [n for n in names if any(w in n for w in wanted)]
    failed = 0
    print(machine(), flush=True)
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            code = module.main([]) or 0
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"{name} failed: {type(exc).__name__}: {exc}")
            code = 1
        failed += bool(code)
        print(f"== {name}: {time.perf_counter() - started:.1f} s\n", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
