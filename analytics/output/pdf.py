"""HTML to PDF with headless Chromium's own print (the browser the tests already use).

Why Chromium and not WeasyPrint: it is already a dependency of the test suite and of the
control center's screenshots, it lays out CJK text and tables exactly like the pages, and
it embeds the (subset) fonts it used, so the PDF reads the same on a machine without
Chinese fonts. The documents set their page size and margins in CSS (``@page``); the
server needs a Chinese font installed (Debian ``fonts-wqy-microhei`` or
``fonts-noto-cjk``; deploy/ and .ci/run install it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from manyi.exc import ConfigError, ManyiError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class RenderError(ManyiError, RuntimeError):
    """Chromium could not print the document (the message has its last words)."""


def find_chromium() -> str | None:
    """Path of a Chromium to print with: $MANYI_CHROMIUM, else the first of CANDIDATES on PATH."""
    chosen = os.environ.get("MANYI_CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def html_to_pdf(html: str, *, chromium: str | None = None, timeout: float = 120.0) -> bytes:
    """The PDF of an HTML document (its own ``@page`` CSS sets the paper); RenderError when printing fails."""
    exe = chromium or find_chromium()
    if exe is None:
        raise ConfigError("no Chromium to print PDFs with: install the Debian package chromium "
                          "(or set MANYI_CHROMIUM to a Chrome/Chromium executable)")
    with tempfile.TemporaryDirectory(prefix="manyi-pdf-") as tmp:
        source, target = Path(tmp) / "document.html", Path(tmp) / "document.pdf"
        source.write_text(html, encoding="utf-8")
        command = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-first-run", "--disable-extensions", "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
                   f"--user-data-dir={Path(tmp) / 'profile'}", f"--print-to-pdf={target}", source.as_uri()]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RenderError(f"Chromium did not print the document within {timeout:.0f} s") from None
        if not target.exists() or target.stat().st_size == 0:
            raise RenderError(f"Chromium printed no PDF (exit {result.returncode}): {result.stderr.strip()[-400:]}")
        return target.read_bytes()
