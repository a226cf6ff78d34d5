"""Settings: defaults in code, overridden by a TOML file, overridden by ``MANYI_`` variables.

Each part declares its settings as a dataclass with defaults and loads it with
:func:`load`. Secrets are never printed: :func:`redacted` masks them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .exc import ConfigError

T = TypeVar("T")
ENV_PREFIX = "MANYI_"
SECRET_WORDS = ("password", "token", "secret", "salt")

# Where the server keeps its data by default (relative to the working directory; the
# systemd units and the compose file set absolute ones). Every command and the control
# center take them from here, overridden by MANYI_STORE / MANYI_DB, overridden by options.
DEFAULT_STORE_URL = "sqlite:///var/votes.db"
DEFAULT_CENTER_DB = "var/center.db"


def env_value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The environment variable ``MANYI_<NAME>``, or None when unset or empty (the one place they are read)."""
    env = os.environ if env is None else env
    return env.get(f"{ENV_PREFIX}{name.upper()}") or None


def store_url(given: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The vote store's URL: ``given`` (an option), else MANYI_STORE, else DEFAULT_STORE_URL."""
    return given or env_value("STORE", env) or DEFAULT_STORE_URL


def center_db_path(given: str | Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """The control center database's path: ``given``, else MANYI_DB, else DEFAULT_CENTER_DB."""
    return str(given or env_value("DB", env) or DEFAULT_CENTER_DB)


def _coerce(name: str, kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or value == "":
            return None
        kind = args[0]
        origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if kind is int:
            if isinstance(value, bool):
                raise ValueError("boolean given")
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("boolean given")
            return float(value)
        if kind is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(f"not a string: {value!r}")
            return str(value)
        if kind is Path:
            return Path(value)
        if origin in (tuple, list):
            items = value.split(",") if isinstance(value, str) else list(value)
            (item_kind, *_) = typing.get_args(kind) or (str,)
            items = [_coerce(name, item_kind, item.strip() if isinstance(item, str) else item, where) for item in items if item != ""]
            return tuple(items) if origin is tuple else items
        if origin is dict or kind is dict:
            if not isinstance(value, dict):
                raise ValueError("expected a table")
            return dict(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: setting {name!r}: {exc}") from None
    return value


def read_toml(path: str | Path) -> dict:
    """Read a TOML file, with an error that names the file and the problem."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load(cls: type[T], path: str | Path | None = None, *, section: str | None = None,
         env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> T:
    """Build settings of dataclass ``cls``: defaults < file < environment < overrides.

    ``section`` picks a table of the file (e.g. ``[collector]``); keys at the top level
    are used when the table is absent. Environment variables are ``MANYI_<FIELD>``
    (or ``MANYI_<SECTION>_<FIELD>``, which wins). ``overrides`` (command-line options)
    ignores None values. Unknown keys in the file are an error, so typos are seen.
    """
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
        if section and isinstance(data.get(section), dict):
            data = data[section]
        elif section:
            data = {k: v for k, v in data.items() if not isinstance(v, dict)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
        for name, value in data.items():
            values[name] = _coerce(name, hints[name], value, str(path))
    for name in fields:
        for key in (f"{ENV_PREFIX}{name.upper()}", f"{ENV_PREFIX}{section.upper()}_{name.upper()}" if section else None):
            if key and key in env:
                values[name] = _coerce(name, hints[name], env[key], f"environment {key}")
    for name, value in (overrides or {}).items():
        if value is not None:
            if name not in fields:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = _coerce(name, hints[name], value, "command line")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def parse_broker(text: str, default_port: int = 1883) -> tuple[str, int]:
    """Split a broker address ``host:port`` (``[v6]:port``; port 1883 when absent); ConfigError when malformed."""
    host, sep, port = str(text).rpartition(":")
    if not sep or "]" in port:
        host, port = str(text), str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"broker {text!r} must be HOST:PORT")
    return host.strip("[]"), int(port)


def is_secret(name: str) -> bool:
    """True for settings whose value must never be printed or logged."""
    return any(word in name.lower() for word in SECRET_WORDS)


def redacted(settings: Any) -> dict:
    """The settings as a dict with every secret replaced by ``***`` (or None if unset)."""
    data = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    return {k: ("***" if is_secret(k) and v not in (None, "") else v) for k, v in data.items()}
