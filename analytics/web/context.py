"""Per-application resources of the control center: vote store, center db, registry, clock.

Each Flask app owns one :class:`Resources` in ``app.extensions["manyi"]``; the objects
are opened lazily on first use and shared by the request threads (the store and the
CenterDB are thread-safe). Nothing here is global, so tests can build many apps.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from flask import Flask, current_app

from manyi.clock import SystemClock


@dataclass
class Resources:
    """The lazily opened shared objects of one app."""

    config: dict
    store: object = None
    db: object = None
    registry: object = None
    clock: object = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    county_of: dict = field(default_factory=dict)    # device -> county code cache
    map_cache: dict = field(default_factory=dict)    # (period, figure, scope) -> (monotonic, payload)
    stopping: threading.Event = field(default_factory=threading.Event)   # set at close: streams end

    def close(self) -> None:
        """End the event streams, then close the store and the center db."""
        self.stopping.set()
        with self.lock:
            for name in ("store", "db"):
                thing = getattr(self, name)
                if thing is not None:
                    try:
                        thing.close()
                    finally:
                        setattr(self, name, None)


def init_app(app: Flask) -> None:
    """Attach a fresh Resources object to ``app`` (an injected CLOCK/STORE/REGISTRY/DB in config is used as is)."""
    res = Resources(config=app.config)
    res.clock = app.config.get("CLOCK") or SystemClock()
    res.store = app.config.get("STORE")
    res.registry = app.config.get("REGISTRY")
    res.db = app.config.get("DB")
    app.extensions["manyi"] = res


def resources(app: Flask | None = None) -> Resources:
    """The Resources of ``app`` (default: the current app)."""
    return (app or current_app).extensions["manyi"]


def get_store(app: Flask | None = None):
    """The app's vote store (collector.stores.VoteStore), opened from STORE_URL on first use."""
    res = resources(app)
    if res.store is None:
        with res.lock:
            if res.store is None:
                from collector.stores import open_store
                res.store = open_store(res.config["STORE_URL"])
    return res.store


def get_db(app: Flask | None = None):
    """The app's CenterDB, opened from CENTER_DB on first use."""
    res = resources(app)
    if res.db is None:
        with res.lock:
            if res.db is None:
                from analytics.center import CenterDB
                res.db = CenterDB(res.config["CENTER_DB"])
    return res.db


def get_registry(app: Flask | None = None):
    """The app's Registry, loaded once: REGISTRY_PATH, else the one last imported into the center db,
    else the shipped Heze sample."""
    res = resources(app)
    if res.registry is None:
        with res.lock:
            if res.registry is None:
                from manyi import registry as reg
                path = res.config.get("REGISTRY_PATH")
                if path:
                    res.registry = reg.Registry.load(path)
                else:
                    from analytics.center.registry import load_active
                    res.registry = load_active(get_db(app)) or reg.heze_sample()
    return res.registry


def reset_registry(app: Flask | None = None) -> None:
    """Forget the loaded registry (after an import) so the next request loads the new one."""
    res = resources(app)
    with res.lock:
        if res.config.get("REGISTRY") is None:
            res.registry = None
        res.county_of.clear()


def get_clock(app: Flask | None = None):
    """The app's clock (SystemClock, or the FakeClock a test put in config CLOCK)."""
    return resources(app).clock


def county_of(device: str, app: Flask | None = None) -> str | None:
    """County code of a terminal's current location (cached), or None when the registry does not know it."""
    res = resources(app)
    cache = res.county_of
    if device not in cache:
        location = get_registry(app).current_location(device)
        cache[device] = location.county_code if location else None
    return cache[device]


def start_worker(app: Flask, name: str, seconds: float, work) -> None:
    """Run ``work()`` every ``seconds`` in a daemon thread until ``app.extensions["manyi_<name>_stop"]``
    is set; a failed round is logged and the next one runs (one bad round must not end the worker)."""
    stop = threading.Event()
    app.extensions[f"manyi_{name}_stop"] = stop

    def run():
        while not stop.wait(seconds):
            try:
                work()
            except Exception:  # noqa: BLE001 - logged; the next round runs
                logging.getLogger(__name__).exception("background worker %s: a round failed; retrying", name)

    threading.Thread(target=run, name=f"manyi-{name}", daemon=True).start()
