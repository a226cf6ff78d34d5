"""``manyi collector`` (run the collector) and ``manyi stats`` (what an operator needs to see).

Only the standard library is imported at the top; paho and the stores load in the handlers.
"""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    """Add the ``collector`` and ``stats`` sub-commands."""
    p = subparsers.add_parser("collector", help="subscribe to votes and statuses and store them",
                              description="Run the collector: MQTT 5 subscriber that stores votes and "
                                          "acknowledges them only after commit.")
    p.add_argument("--broker", help="HOST:PORT of the MQTT broker (default 127.0.0.1:1883)")
    p.add_argument("--store", help="store URL: sqlite:///var/votes.db (default) or influxdb://")
    p.add_argument("--config", help="TOML file with a [collector] table")
    p.add_argument("--client-id", dest="client_id", help="fixed MQTT client id (the persistent session's name)")
    p.add_argument("--username")
    p.add_argument("--password", help="better: MANYI_COLLECTOR_PASSWORD in the environment")
    p.add_argument("--tls-ca", dest="tls_ca", help="CA file; turns TLS on")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="votes per transaction at most (default 500)")
    p.add_argument("--batch-ms", dest="batch_ms", type=int, help="max wait for a batch to fill, ms (default 200)")
    p.add_argument("--mqtt-version", dest="mqtt_version", choices=("5", "3.1.1"),
                   help="MQTT protocol (default 5; 3.1.1 only for brokers without MQTT 5, e.g. the demo's amqtt)")
    p.add_argument("--shared-group", dest="shared_group", metavar="NAME",
                   help="share the votes with other collectors in the group NAME ($share/NAME/...; keep NAME secret)")
    p.add_argument("--print-config", action="store_true", help="print the settings (secrets redacted) and exit")
    p.set_defaults(func=run_collector)

    s = subparsers.add_parser("stats", help="votes, duplicates, dead letters, terminals and seq gaps of a store")
    s.add_argument("--store", help="store URL (default: MANYI_STORE or sqlite:///var/votes.db)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--gaps", type=int, default=20, help="gap runs listed per terminal at most (default 20)")
    s.set_defaults(func=run_stats)


def load_settings(args):
    """CollectorSettings from defaults < --config file < MANYI_ env < command-line options."""
    from manyi.settings import load

    from .config import CollectorSettings

    overrides = {name: getattr(args, name, None) for name in
                 ("broker", "store", "client_id", "username", "password", "tls_ca", "batch_size", "batch_ms",
                  "mqtt_version", "shared_group")}
    if getattr(args, "shared_group", None):
        overrides["shared_subscription"] = True
    return load(CollectorSettings, args.config, section="collector", overrides=overrides)


def run_collector(args) -> int:
    """Run until SIGTERM/SIGINT; the current batch is finished before exit."""
    import logging
    import signal

    from manyi.settings import redacted

    from .service import Collector
    from .stores import open_store

    settings = load_settings(args)
    if args.print_config:
        print(json.dumps(redacted(settings), indent=2, ensure_ascii=False))
        return 0
    logging.getLogger("manyi.collector").info("settings: %s", redacted(settings))
    store = open_store(settings.store)
    collector = Collector(settings, store)

    def on_signal(signum, frame):
        collector.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        collector.run()
    finally:
        store.close()
    return 0


def gather_stats(store, max_gaps: int = 20) -> dict:
    """The operator's view of a store as one JSON-able dict."""
    totals = store.stats()
    gaps: dict[str, list[list[int]]] = {}
    for gap in store.gaps():
        runs = gaps.setdefault(gap.device, [])
        if len(runs) < max_gaps:
            runs.append([gap.first, gap.last])
    terminals = []
    for t in store.terminals():
        terminals.append({
            "device": t.device, "online": t.online, "last_seen": _iso(t.last_seen), "last_vote_at": _iso(t.last_vote_at),
            "last_seq": t.max_seq, "reported_last_seq": t.reported_last_seq, "votes": t.vote_count,
            "missing": t.missing, "gaps": gaps.get(t.device, []), "outbox_depth": t.outbox_depth,
            "firmware": t.firmware, "clock_ok": t.clock_ok,
        })
    return {"store": store.url, **totals, "terminal_list": terminals}


def run_stats(args) -> int:
    """Print votes accepted, duplicates, dead letters by reason, and per terminal last seq and gaps."""
    from manyi.settings import store_url

    from .stores import open_store

    url = store_url(args.store)
    with open_store(url) as store:
        data = gather_stats(store, args.gaps)
    if args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    out = sys.stdout
    print(f"store:        {data['store']}", file=out)
    print(f"votes:        {data['votes']} accepted ({data.get('excluded', 0)} flagged as misuse)", file=out)
    print(f"duplicates:   {data['duplicates']}", file=out)
    letters = data["dead_letters"]
    detail = ", ".join(f"{reason} {n}" for reason, n in sorted(letters.items()))
    print(f"dead letters: {sum(letters.values())}" + (f" ({detail})" if detail else ""), file=out)
    print(f"terminals:    {data['terminals']}, missing votes (seq gaps): {data['missing']}", file=out)
    if data["terminal_list"]:
        print(file=out)
        print(f"{'device':<28} {'online':<7} {'last seq':>8} {'votes':>7} {'missing':>7}  gaps", file=out)
        for t in data["terminal_list"]:
            online = {True: "yes", False: "no", None: "?"}[t["online"]]
            runs = " ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in t["gaps"])
            print(f"{t['device']:<28} {online:<7} {t['last_seq'] if t['last_seq'] is not None else '-':>8} "
                  f"{t['votes']:>7} {t['missing']:>7}  {runs}", file=out)
    return 0


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None
