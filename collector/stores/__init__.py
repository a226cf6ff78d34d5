"""Vote stores: one interface (base.VoteStore), an embedded SQLite store and an InfluxDB 2 store.

``open_store(url)`` is the only way callers pick a backend:
``sqlite:///path/votes.db`` (default) or ``influxdb://`` (settings from INFLUXDB_V2_*).
"""

from .base import (  # noqa: F401
    BUCKETS, FLAG_BURST, FLAG_CLOCK_REPLACED, FLAG_TEST, MISUSE_FLAGS,
    CountRow, DeadLetter, FeedItem, Gap, StoredVote, TerminalStatus, VoteStore, WriteResult,
)


def open_store(url: str) -> VoteStore:
    """Open the store named by ``url``; raise ConfigError for an unknown scheme."""
    from manyi.exc import ConfigError

    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore
        return SQLiteStore.from_url(url)
    if url.startswith("influxdb:") or url.startswith("influxdb2:"):
        from .influx import InfluxStore
        return InfluxStore.from_url(url)
    raise ConfigError(f"store URL {url!r}: scheme must be sqlite:/// or influxdb://")
