"""``manyi device`` (run one terminal) and ``manyi simulate`` (many virtual terminals).

Only the standard library is imported here; gpiozero and paho are imported by the
handlers, so ``manyi --help`` works anywhere.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the device and simulate sub-commands."""
    p = subparsers.add_parser("device", help="run one terminal (buttons, LEDs, outbox, publisher)",
                              description="Run one terminal: gpiozero keys and LEDs, the on-disk outbox and the "
                                          "MQTT publisher. GPIOZERO_PIN_FACTORY=mock runs it without a Pi.")
    p.add_argument("--config", required=True, help="TOML file (see device/terminal.example.toml); MANYI_ variables override")
    p.add_argument("--print-config", action="store_true", help="print the settings (secrets masked) and exit")
    p.add_argument("--requeue-poisoned", action="store_true",
                   help="put the votes the broker refused back into the outbox (after fixing the ACL) and exit")
    p.add_argument("--seq-after", type=int, metavar="N",
                   help="number the next vote N+1 or later (after a lost or replaced outbox: N = the terminal's "
                        "last seq in `manyi stats`) and exit")
    # Test hook: press keys through mock pins once the terminal runs (GPIOZERO_PIN_FACTORY=mock only).
    p.add_argument("--mock-press", action="append", default=[], metavar="RATING", help=argparse.SUPPRESS)
    p.set_defaults(func=_device)

    s = subparsers.add_parser("simulate", help="many virtual terminals publishing votes (tests, benchmarks, demo)",
                              description="Many virtual terminals in one process, each the real terminal code on "
                                          "gpiozero mock pins, pressed by a citizen model on a virtual clock.")
    s.add_argument("--broker", required=True, metavar="HOST:PORT")
    s.add_argument("--username")
    s.add_argument("--password")
    s.add_argument("--tls-ca", help="CA certificate of a TLS listener")
    group = s.add_mutually_exclusive_group(required=True)
    group.add_argument("--terminals", type=int, metavar="N", help="N terminals named sim-0001 ...")
    group.add_argument("--devices", metavar="FILE",
                       help="one device id per line, optional 2nd column = satisfaction propensity 0..1; "
                            "'heze' = every device of the Heze sample registry")
    s.add_argument("--votes", type=int, metavar="N", help="publish exactly N votes, exit once all are acknowledged")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--speed", type=float, default=1.0, help="continuous mode: virtual time runs X times faster")
    s.add_argument("--rate", type=float, metavar="VOTES_PER_SEC", help="cap (votes mode) or fix (continuous) the vote rate")
    s.add_argument("--workdir", default="var/simulate", help="outboxes live here; reuse it to continue each seq")
    s.add_argument("--start", help="virtual start time (ISO 8601; default: a past midnight in votes mode, now otherwise)")
    s.add_argument("--lockout", type=float, default=3.0, help="lock-out seconds of every terminal")
    s.add_argument("--timeout", type=float, default=600.0, help="votes mode: give up waiting for acks after this")
    s.add_argument("--mqtt-version", choices=("5", "3.1.1"), default="5",
                   help="MQTT protocol of every terminal (default 5; 3.1.1 only for a broker without MQTT 5)")
    s.set_defaults(func=_simulate)


def _device(args) -> int:
    from manyi.settings import redacted

    from .config import load_settings
    from .run import run_terminal

    settings = load_settings(args.config)
    if args.print_config:
        for key, value in redacted(settings).items():
            print(f"{key} = {value}")
        return 0
    if args.requeue_poisoned:
        from .outbox import Outbox

        box = Outbox(settings.outbox_path, settings.device_id, limit=settings.outbox_limit)
        print(f"requeued {box.requeue_poisoned()} poisoned votes; outbox depth {box.depth}")
        box.close()
        return 0
    if args.seq_after is not None:
        from manyi.exc import ConfigError

        from .outbox import Outbox

        if args.seq_after < 0:
            raise ConfigError(f"--seq-after {args.seq_after}: must be 0 or more")
        box = Outbox(settings.outbox_path, settings.device_id, limit=settings.outbox_limit)
        try:
            print(f"{settings.device_id}: last seq {box.advance_seq(args.seq_after)}; the next vote is numbered after it")
        finally:
            box.close()
        return 0
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    run_terminal(settings, stop=stop, mock_presses=args.mock_press)
    return 0


def _simulate(args) -> int:
    from datetime import datetime

    from manyi.exc import ConfigError

    from .simulate import print_summary, run_simulation

    start = None
    if args.start:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise ConfigError(f"--start {args.start!r} is not an ISO 8601 time") from None
        if start.tzinfo is None:
            raise ConfigError(f"--start {args.start!r} needs a UTC offset, e.g. +08:00")
    summary = run_simulation(args.broker, terminals=args.terminals, devices=args.devices, votes=args.votes,
                             seed=args.seed, speed=args.speed, workdir=args.workdir, rate=args.rate,
                             username=args.username, password=args.password, tls_ca=args.tls_ca, start=start,
                             lockout_seconds=args.lockout, timeout=args.timeout, mqtt_version=args.mqtt_version,
                             install_signals=True)
    print_summary(summary)
    if args.votes is not None and (summary["acked"] < args.votes or summary["pending"] or summary["poisoned"]):
        return 1
    return 0
