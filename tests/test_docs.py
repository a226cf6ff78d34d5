"""Every `manyi` sub-command is documented in the README or docs/ (the sqlite-utils habit)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from manyi.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def commands(parser: argparse.ArgumentParser, prefix: str = "manyi") -> list[str]:
    """Every command path, e.g. 'manyi survey import', visible in --help."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            shown = {choice.dest for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if name not in shown:
                    continue   # hidden (help=SUPPRESS), e.g. test hooks
                path = f"{prefix} {name}"
                found.append(path)
                found += commands(sub, path)
    return found


ALL = commands(build_parser())


def test_the_command_has_its_parts():
    assert {"manyi device", "manyi simulate", "manyi collector", "manyi stats", "manyi report", "manyi serve",
            "manyi run", "manyi survey import", "manyi registry validate", "manyi user add"} <= set(ALL)


@pytest.mark.parametrize("command", ALL)
def test_every_command_is_documented(command):
    assert re.search(re.escape(command) + r"\b", DOCS), f"`{command}` appears in neither README.md nor docs/*.md"
