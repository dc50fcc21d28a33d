"""open_store(): stores by URL, and the default SQLite path."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from oturn._exceptions import UsageError
from oturn.store.memory import MemoryStore
from oturn.store.sqlite import SQLiteStore
from oturn.store.url import default_store_path, open_store


def sqlite(url: str | Path) -> SQLiteStore:
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    return store


def test_memory() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    assert open_store("memory://") is not open_store("memory://")
    with pytest.raises(UsageError):
        open_store("memory://somewhere")


def test_a_store_passes_through() -> None:
    store = MemoryStore()
    assert open_store(store) is store


def test_sqlite_paths() -> None:
    assert sqlite("sqlite:///abs/path.db").path == "/abs/path.db"
    assert sqlite("sqlite://relative.db").path == "relative.db"
    assert sqlite("sqlite://dir/sub/s.db").path == "dir/sub/s.db"
    assert sqlite("sqlite:///with%20space.db").path == "/with space.db"
    assert sqlite("SQLite:///x.db").path == "/x.db"
    assert sqlite("sqlite://~/s.db").path == str(Path.home() / "s.db")
    assert sqlite("sqlite://:memory:").path == ":memory:"
    assert sqlite(Path("/a/b.db")).path == "/a/b.db"


def test_sqlite_options() -> None:
    store = sqlite("sqlite:///x.db?busy_timeout=0.5&synchronous=full")
    assert (store.path, store.busy_timeout, store.synchronous) == ("/x.db", 0.5, "FULL")
    for url in ("sqlite:///x.db?busy_timeout=soon", "sqlite:///x.db?colour=red", "sqlite:///x.db?synchronous=maybe"):
        with pytest.raises(UsageError):
            open_store(url)


def test_sqlite_without_a_path_is_the_default_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OTURN_HOME", str(tmp_path))
    assert sqlite("sqlite://").path == str(tmp_path / "sessions.db")


def test_default_store_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OTURN_HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / "sessions.db"
    monkeypatch.delenv("OTURN_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_store_path() == tmp_path / "data" / "oturn" / "sessions.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_store_path() == tmp_path / "user" / ".local" / "share" / "oturn" / "sessions.db"


def test_redis_urls_go_to_the_redis_store(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, dict[str, Any]]] = []

    class FakeRedisStore(MemoryStore):
        def __init__(self, url: str, **options: Any) -> None:
            super().__init__()
            made.append((url, options))

    fake = types.ModuleType("oturn.store.redis")
    fake.RedisStore = FakeRedisStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "oturn.store.redis", fake)
    for url in ("redis://localhost:6379/0?prefix=app", "rediss://h:1/2", "unix:///tmp/redis.sock?db=1"):
        assert isinstance(open_store(url), FakeRedisStore)
    assert made == [
        ("redis://localhost:6379/0", {"prefix": "app"}),
        ("rediss://h:1/2", {}),
        ("unix:///tmp/redis.sock?db=1", {}),
    ]
    with pytest.raises(UsageError):
        open_store("redis://h/0?prefix=")


def test_the_real_redis_store_is_made_from_a_url() -> None:
    pytest.importorskip("redis")
    store = open_store("redis://127.0.0.1:6399/3?prefix=myapp")
    assert type(store).__name__ == "RedisStore"
    assert (getattr(store, "url", None), getattr(store, "prefix", None)) == ("redis://127.0.0.1:6399/3", "myapp")


def test_unknown_schemes_and_non_urls_are_usage_errors() -> None:
    for bad in ("postgres://db/x", "sessions.db", "/abs/path.db", ""):
        with pytest.raises(UsageError):
            open_store(bad)
    with pytest.raises(UsageError):
        open_store(42)  # type: ignore[arg-type]
