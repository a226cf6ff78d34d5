"""The one exception hierarchy of manyi: domain errors raised by the library, turned
into exit codes by the CLI and HTTP statuses by the API."""


class ManyiError(Exception):
    """Base class of every error manyi raises on purpose."""


class ConfigError(ManyiError, ValueError):
    """A setting is missing, malformed or out of range."""


class ProtocolError(ManyiError, ValueError):
    """A message does not follow the wire protocol.

    ``reason`` is a short stable code (e.g. ``bad_json``, ``bad_rating``) used to count
    dead letters by reason; the message says what exactly was wrong.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


class StoreError(ManyiError, RuntimeError):
    """The vote store failed or is unavailable; the caller may retry."""


class ImportFileError(ManyiError, ValueError):
    """An import file cannot be read at all (encoding, format, missing columns)."""
