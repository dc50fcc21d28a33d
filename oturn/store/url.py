"""Stores by URL: ``open_store("sqlite:///path.db")``, and where the default SQLite file lives.

=============================================  ==========================================================
``memory://``                                  a new :class:`~oturn.store.memory.MemoryStore`
``sqlite:///abs/path.db``                      :class:`~oturn.store.sqlite.SQLiteStore` at ``/abs/path.db``
``sqlite://relative/path.db``                  ... at ``relative/path.db`` (from the working directory)
``sqlite://~/sessions.db``                     ... in the home directory
``sqlite://`` (no path)                        ... at :func:`default_store_path`
``sqlite://:memory:``                          ... a private in-memory SQLite database
``?busy_timeout=10&synchronous=FULL``          SQLite options
``redis://host:port/db?prefix=...``            ``oturn.store.redis.RedisStore(url, prefix=...)`` (also
                                               ``rediss://`` and ``unix://``; needs the ``redis`` extra;
                                               other query options go to redis-py)
a :class:`~oturn.store.Store`                  itself
an ``os.PathLike`` (``pathlib.Path``)          :class:`~oturn.store.sqlite.SQLiteStore` at that path
=============================================  ==========================================================

Percent-escapes in paths are decoded (``%20`` is a space). The store comes back
unopened: use it with ``async with``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from oturn._exceptions import UsageError
from oturn.store.protocol import Store

__all__ = ["default_store_path", "open_store"]

_SQLITE_OPTIONS = ("busy_timeout", "synchronous")


def default_store_path() -> Path:
    """Where sessions are kept by default: ``$OTURN_HOME/sessions.db``, else
    ``$XDG_DATA_HOME/oturn/sessions.db``, else ``~/.local/share/oturn/sessions.db``."""
    home = os.environ.get("OTURN_HOME")
    if home:
        return Path(home).expanduser() / "sessions.db"
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data else Path.home() / ".local" / "share"
    return base / "oturn" / "sessions.db"


def open_store(url_or_store: str | os.PathLike[str] | Store) -> Store:
    """The store a URL names (see the module docstring), or the store passed in; unopened.

    ``UsageError`` for an unknown scheme, a string that is not a URL, or a bad option.
    """
    if isinstance(url_or_store, Store):
        return url_or_store
    if isinstance(url_or_store, os.PathLike):
        from oturn.store.sqlite import SQLiteStore

        return SQLiteStore(url_or_store)
    if not isinstance(url_or_store, str):
        raise UsageError(f"a store is a Store, a URL string or a path; got {url_or_store!r}")
    url = url_or_store.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise UsageError(
            f"{url!r} is not a store URL: use 'memory://', 'sqlite:///absolute/path.db',"
            " 'sqlite://relative/path.db' or 'redis://host:port/db'"
        )
    if scheme == "memory":
        if rest:
            raise UsageError(f"{url!r}: a memory store takes no path (use 'memory://')")
        from oturn.store.memory import MemoryStore

        return MemoryStore()
    if scheme in ("sqlite", "sqlite3"):
        return _sqlite(url, rest)
    if scheme in ("redis", "rediss", "unix"):
        return _redis(url)
    raise UsageError(f"{url!r}: unknown store scheme {scheme!r} (use memory://, sqlite:// or redis://)")


def _sqlite(url: str, rest: str) -> Store:
    from oturn.store.sqlite import SQLiteStore

    parts = urlsplit("x://" + rest)
    raw = rest.split("?", 1)[0].split("#", 1)[0]
    path = unquote(raw)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _SQLITE_OPTIONS:
            raise UsageError(f"{url!r}: unknown SQLite option {key!r} (known: {', '.join(_SQLITE_OPTIONS)})")
        if key == "busy_timeout":
            try:
                options[key] = float(value)
            except ValueError:
                raise UsageError(f"{url!r}: busy_timeout is a number of seconds; got {value!r}") from None
        else:
            options[key] = value
    if not path:
        return SQLiteStore(default_store_path(), **options)
    if path != ":memory:":
        path = os.path.expanduser(path)
    return SQLiteStore(path, **options)


def _redis(url: str) -> Store:
    base, _, query_text = url.partition("?")
    query = parse_qsl(query_text, keep_blank_values=True)
    options: dict[str, Any] = {}
    rest = []
    for key, value in query:
        if key == "prefix":
            if not value:
                raise UsageError(f"{url!r}: prefix= must not be empty")
            options["prefix"] = value
        else:
            rest.append((key, value))
    plain = url if "prefix" not in options else base + (f"?{urlencode(rest)}" if rest else "")
    module: Any = importlib.import_module("oturn.store.redis")  # needs the redis extra
    store: Store = module.RedisStore(plain, **options)
    return store
