"""Run every ``bench/bench_*.py`` module's ``main()`` in turn: ``python -m bench [NAME ...]``.

Each benchmark prints its own figures; a NAME (e.g. ``quarter``) runs only the matching ones.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; the exit code is the number that failed."""
    wanted = argv if argv is not None else sys.argv[1:]
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if wanted:
        names = [n for n in names if any(w in n for w in wanted)]
    failed = 0
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
