"""Smoke test of bench/bench_terminal.py (tiny windows, no time assertions) and the light `manyi device` entry point."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="psutil USS/PSS need Linux /proc")


def figures(line: str) -> dict:
    """RSS, USS, PSS, peak RSS and CPU of one printed row."""
    found = dict(re.findall(r"(RSS|USS|PSS|CPU) +([\d.]+)", line))
    found["peak"] = re.search(r"peak RSS +([\d.]+)", line).group(1)
    return {key: float(value) for key, value in found.items()}


@pytest.mark.slow
def test_quick_run_prints_plausible_figures(capsys):
    from bench.bench_terminal import main

    assert main(["--quick", "--rate", "2"]) == 0
    out = capsys.readouterr().out
    rows = {label: figures(line) for line in out.splitlines()
            for label in ("baseline", "manyi device, idle", "bench wrapper, idle", "manyi device, 2 press/s")
            if line.startswith(label)}
    assert len(rows) == 4, out
    for label, row in rows.items():
        assert 5 < row["USS"] <= row["PSS"] <= row["RSS"] <= row["peak"] < 500, (label, row)
        assert 0 <= row["CPU"] < 400, (label, row)
    # The terminal loads more than the bare interpreter with paho and sqlite3.
    assert rows["manyi device, idle"]["RSS"] > rows["baseline"]["RSS"], out
    # Presses became votes, and the broker acknowledged them (a subscriber was there).
    busy = re.search(r"busy terminal: (\d+) votes recorded, (\d+) acknowledged", out)
    assert busy and int(busy.group(1)) >= 2 and int(busy.group(2)) >= 1, out
    assert "server libraries loaded: none" in out, out
    assert "largest imports of manyi device" in out and "ms" in out.rsplit("largest imports", 1)[1], out


def manyi_without_server_libraries(*args: str) -> subprocess.CompletedProcess:
    """Run ``manyi ARGS`` in a Python where Flask, pandas, numpy ... cannot be imported (a Pi's `.[device]`)."""
    code = ("import sys\n"
            "for name in ('flask', 'pandas', 'numpy', 'werkzeug', 'jinja2', 'plotly', 'openpyxl'):\n"
            "    sys.modules[name] = None\n"
            "from manyi.cli import main\n"
            f"sys.exit(main({list(args)!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_manyi_device_starts_without_the_server_libraries():
    # A Pi has only `.[device]` installed: no Flask, pandas or numpy. Importing them must not be needed.
    result = manyi_without_server_libraries("device", "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


def test_other_commands_still_see_every_part():
    from manyi.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0


def test_manyi_help_on_a_terminal_lists_what_is_installed():
    # `manyi --help` on a Pi with only `.[device]`: the server's commands are absent, not a crash.
    result = manyi_without_server_libraries("--help")
    assert result.returncode == 0, result.stderr
    assert "device" in result.stdout and "simulate" in result.stdout
    assert "serve" not in result.stdout      # analytics.web (Flask) is not installed here
