"""The ``manyi`` command: one entry point, one sub-command per task.

Each part registers its own sub-commands through an entry point of the group
``manyi.commands`` (setup.cfg), so this package imports none of the parts. Each part's
``cli`` module imports only the standard library at the top, so that ``manyi device``
works on a Raspberry Pi without the server's dependencies. Domain errors become a message and exit code 2.
"""

from __future__ import annotations

import argparse
from importlib import metadata
import logging
import sys

from . import __version__
from .exc import ManyiError

ENTRY_POINTS = "manyi.commands"
# Commands whose part is known without loading the others. The terminal runs `manyi device`
# on a Pi Zero: loading the server's command modules there would cost memory (analytics.web
# brings Flask) and fail outright where only `.[device]` is installed (no Flask at all).
LIGHT_COMMANDS = {"device": "device", "simulate": "device"}


def parts(only: str | None = None) -> list[metadata.EntryPoint]:
    """The installed parts' ``register`` entry points (group ``manyi.commands``), or only the one named ``only``."""
    found = sorted(metadata.entry_points(group=ENTRY_POINTS), key=lambda ep: ORDER.get(ep.name, len(ORDER)))
    return [ep for ep in found if only is None or ep.name == only]


# The order in which parts appear in --help.
ORDER = {name: i for i, name in enumerate(("device", "collector", "analytics", "quarter", "output", "web", "demo"))}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with the sub-commands of every installed part (or only of part ``only``)."""
    parser = argparse.ArgumentParser(prog="manyi", description="满意: citizen-satisfaction system for 人社 service halls")
    parser.add_argument("--version", action="version", version=f"manyi {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in parts(only):
        try:
            register = entry.load()
        except ModuleNotFoundError as exc:
            # A part whose libraries are not installed (the server's Flask and pandas on a terminal
            # with only `.[device]`) simply has no commands. A missing module of the part's own
            # package is a bug and is raised.
            missing = (exc.name or "").split(".")[0]
            if missing and missing != entry.value.split(".")[0]:
                continue
            raise
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``manyi`` command; return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(LIGHT_COMMANDS.get(command))
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except ManyiError as exc:
        print(f"manyi {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
