"""The ``manyi`` command: one entry point, one sub-command per task.

Each part registers its own sub-commands in a small ``cli`` module that imports only
the standard library at the top, so that ``manyi device`` works on a Raspberry Pi
without the server's dependencies. Domain errors become a message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .exc import ManyiError

# Modules with a ``register(subparsers)`` function, in the order they appear in --help.
PARTS = (
    "device.cli",
    "collector.cli",
    "analytics.cli",
    "analytics.quarter_cli",
    "analytics.web.cli",
    "manyi.demo",
)
# Commands whose part is known without importing the others. The terminal runs `manyi device`
# on a Pi Zero: loading the server's command modules there would cost memory (analytics.web
# brings Flask) and fail outright where only `.[device]` is installed (no Flask at all).
OWN_PACKAGES = {"manyi", "device", "collector", "analytics", "bench"}
LIGHT_COMMANDS = {"device": ("device.cli",), "simulate": ("device.cli",)}


def build_parser(parts: tuple[str, ...] = PARTS) -> argparse.ArgumentParser:
    """The argument parser with the sub-commands of every installed part (or only of ``parts``)."""
    parser = argparse.ArgumentParser(prog="manyi", description="满意: citizen-satisfaction system for 人社 service halls")
    parser.add_argument("--version", action="version", version=f"manyi {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in parts:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A part that is not installed, or whose libraries are not (the server's Flask and pandas
            # on a terminal with only `.[device]`), simply has no commands. A missing module of our
            # own packages is a bug and is raised.
            missing = (exc.name or "").split(".")[0]
            if missing and (name.startswith(missing) or missing not in OWN_PACKAGES):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``manyi`` command; return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(LIGHT_COMMANDS.get(command, PARTS))
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
