"""Session stores: the protocol, its records, and the stores.

``MemoryStore`` and :func:`open_store` are light; ``SQLiteStore`` (aiosqlite) and
``RedisStore`` (redis-py) load their drivers on first use of their names.
"""

from typing import TYPE_CHECKING, Any

from oturn.store.lease import holder_is_dead, make_owner
from oturn.store.memory import MemoryStore
from oturn.store.protocol import Store
from oturn.store.records import EventRecord, SessionInfo, SignalRecord, SnapshotRecord
from oturn.store.url import default_store_path, open_store

if TYPE_CHECKING:
    from oturn.store.redis import RedisStore
    from oturn.store.sqlite import SQLiteStore

_LAZY = {"RedisStore": "oturn.store.redis", "SQLiteStore": "oturn.store.sqlite"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oturn.store' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "EventRecord",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "SessionInfo",
    "SignalRecord",
    "SnapshotRecord",
    "Store",
    "default_store_path",
    "holder_is_dead",
    "make_owner",
    "open_store",
]
