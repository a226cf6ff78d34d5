"""``python -m demo.samples`` (``make samples``): pictures of the documents, made from the demo city.

Seeds ``var/samples`` like ``make run`` does (``manyi run --seed-only``: simulated, fixed seed),
renders the monthly bulletin of the month before and the quarterly report of the quarter
before, and takes a headless-Chromium picture of the top of each into docs/samples/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shoot(html: str, out: Path, width: int, height: int) -> None:
    """A picture of the top ``height`` pixels of ``html`` laid out ``width`` pixels wide."""
    from analytics.output.pdf import find_chromium

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html, encoding="utf-8")
        subprocess.run([find_chromium() or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
                        f"--screenshot={out}", page.as_uri()], check=True, capture_output=True, timeout=120)


def main(argv=None) -> int:
    """Seed, render, take the pictures."""
    parser = argparse.ArgumentParser(prog="python -m demo.samples", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(ROOT / "var" / "samples"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "samples"))
    args = parser.parse_args(argv)
    workdir, out = Path(args.workdir), Path(args.out)
    subprocess.run([sys.executable, "-m", "manyi", "run", "--workdir", str(workdir), "--seed-only"], check=True)

    from analytics.center import CenterDB
    from analytics.center.registry import load_active
    from analytics.output.bulletin import build_bulletin, render_html
    from analytics.output.report_pdf import printable_html
    from analytics.quarter import compute_quarter
    from collector.stores import open_store
    from manyi.periods import Month, Quarter
    from manyi.registry import heze_sample

    now = datetime.now(timezone.utc)
    out.mkdir(parents=True, exist_ok=True)
    db = CenterDB(workdir / "center.db")
    try:
        registry = load_active(db) or heze_sample()
        with open_store(f"sqlite:///{workdir / 'votes.db'}") as store:
            bulletin = build_bulletin(store, registry, db, Month.containing(now).previous(), now=now)
            shoot(render_html(bulletin), out / "bulletin.png", 794, 1123)
            result = compute_quarter(store, registry, db, Quarter.containing(now).previous(), now=now)
        # on screen the cover need not fill a printed page
        page = printable_html(result).replace('class="cover"', 'class="cover" style="height:auto"', 1)
        shoot(page, out / "report.png", 1123, 1300)
    finally:
        db.close()
    print(f"wrote {out / 'bulletin.png'} and {out / 'report.png'} (模拟数据)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
