"""SQLiteStore: the conformance kit, and the file itself (WAL, locking, schema, damage)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from oturn._exceptions import (
    ClosedError,
    CorruptRecordError,
    SchemaVersionError,
    SessionLockedError,
    StoreError,
    UsageError,
)
from oturn.store import schema
from oturn.store.protocol import Store
from oturn.store.records import SignalRecord, SnapshotRecord
from oturn.store.sqlite import SQLiteStore
from oturn.testing.store_kit import T0, StoreKit, event, events, signal, signals


class TestSQLiteStore(StoreKit):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        async with SQLiteStore(tmp_path / "sessions.db") as store:
            yield store


class TestSQLiteInMemory(StoreKit):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        async with SQLiteStore(":memory:") as store:
            yield store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(db_path, busy_timeout=0.2) as store:
        yield store


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# -- the file -----------------------------------------------------------------------------------


async def test_the_file_is_in_wal_mode_with_the_current_schema(store: SQLiteStore, db_path: Path) -> None:
    assert store.journal_mode == "wal"
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS) == 1
        assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"sessions", "signals", "events", "snapshots"}
    finally:
        conn.close()


async def test_opening_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "s.db"
    async with SQLiteStore(path) as store:
        await store.create("s1", now=T0)
    assert path.is_file()
    assert (path.parent.stat().st_mode & 0o777) == 0o700


async def test_a_writer_waits_up_to_busy_timeout_for_another_connections_lock(
    store: SQLiteStore, db_path: Path
) -> None:
    await store.create("s1", now=T0)
    blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        with pytest.raises(StoreError, match="busy_timeout") as caught:
            await store.append("s1", signals(1, 1), [])
        waited = time.perf_counter() - started
        assert 0.15 <= waited < 2.0
        assert str(db_path) in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        # a lock released within the timeout is waited for
        threading.Timer(0.05, lambda: blocker.execute("COMMIT")).start()
        await store.append("s1", signals(1, 1), [])
        assert await store.signals("s1") == signals(1, 1)
    finally:
        blocker.close()


async def test_readers_are_not_blocked_by_a_writer(store: SQLiteStore, db_path: Path) -> None:
    await store.create("s1", now=T0)
    await store.append("s1", signals(1, 2), [])
    blocker = raw(db_path)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("UPDATE sessions SET meta = '{}'")
        assert await store.signals("s1") == signals(1, 2)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


# -- schema versions ------------------------------------------------------------------------------


async def test_a_new_version_is_added_by_appending_a_migration(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with SQLiteStore(db_path) as store:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 2), [])
    ran: list[int] = []

    def v2_add_tags(conn: sqlite3.Connection) -> None:
        ran.append(2)
        conn.execute("ALTER TABLE sessions ADD COLUMN tags TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, v2_add_tags])
    for _ in range(2):
        async with SQLiteStore(db_path) as store:
            assert await store.signals("s1") == signals(1, 2)
    assert ran == [2]
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT tags FROM sessions").fetchall() == [("",)]
    finally:
        conn.close()


async def test_a_failing_migration_leaves_the_old_version_intact(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteStore(db_path) as store:
        await store.create("s1", now=T0)

    def v2_broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE sessions ADD COLUMN half TEXT")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, v2_broken])
    with pytest.raises(RuntimeError, match="migration bug"):
        async with SQLiteStore(db_path):
            pass
    monkeypatch.undo()
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = [r[1] for r in conn.execute("PRAGMA table_info(sessions)")]
        assert "half" not in columns
    finally:
        conn.close()
    async with SQLiteStore(db_path) as store:
        assert await store.info("s1") is not None


def test_migrate_runs_every_missing_step_in_order(tmp_path: Path) -> None:
    conn = raw(tmp_path / "m.db")
    try:
        steps: list[int] = []
        fake = [*(lambda c, i=i: steps.append(i) for i in range(3))]
        assert schema.migrate(conn, "m.db", fake) == 0
        assert steps == [0, 1, 2]
        assert schema.schema_version(conn) == 3
        assert schema.migrate(conn, "m.db", fake) == 3
        assert steps == [0, 1, 2]
    finally:
        conn.close()


async def test_a_database_of_a_newer_oturn_is_refused(db_path: Path) -> None:
    async with SQLiteStore(db_path) as store:
        await store.create("s1", now=T0)
    conn = raw(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaVersionError) as caught:
        async with SQLiteStore(db_path):
            pass
    assert (caught.value.found, caught.value.supported) == (99, 1)
    assert str(db_path) in str(caught.value)


async def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(StoreError) as caught:
        async with SQLiteStore(path):
            pass
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert path.read_bytes().startswith(b"these are my notes")


async def test_a_database_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = raw(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(StoreError, match="another application"):
        async with SQLiteStore(path):
            pass


# -- damage ----------------------------------------------------------------------------------------


async def test_a_null_data_row_is_a_corrupt_record_naming_its_seq(store: SQLiteStore, db_path: Path) -> None:
    await store.create("s1", now=T0)
    await store.append("s1", signals(1, 5), events(1, [1, 2, 3]))
    conn = raw(db_path)
    try:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute("UPDATE signals SET data = NULL WHERE session = 's1' AND seq = 3")
        conn.execute("UPDATE events SET data = 'text, not bytes' WHERE session = 's1' AND seq = 2")
    finally:
        conn.close()
    # a read stops before the bad record; a read that starts at it raises
    assert await store.signals("s1") == signals(1, 2)
    with pytest.raises(CorruptRecordError) as caught:
        await store.signals("s1", after=2)
    assert (caught.value.session, caught.value.seq) == ("s1", 3)
    assert "NULL" in str(caught.value)
    assert await store.signals("s1", after=3) == signals(4, 5)
    assert await store.events("s1") == events(1, [1])
    with pytest.raises(CorruptRecordError) as caught:
        await store.events("s1", after=1, limit=5)
    assert (caught.value.session, caught.value.seq) == ("s1", 2)


async def test_a_corrupt_snapshot_names_its_seq(store: SQLiteStore, db_path: Path) -> None:
    await store.create("s1", now=T0)
    await store.append("s1", signals(1, 5), [])
    await store.snapshot("s1", SnapshotRecord(5, 0, T0, b"state"))
    conn = raw(db_path)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute("UPDATE snapshots SET data = NULL")
    conn.close()
    with pytest.raises(CorruptRecordError) as caught:
        await store.latest_snapshot("s1")
    assert (caught.value.session, caught.value.seq) == ("s1", 5)


async def test_bad_data_is_refused_on_the_way_in(store: SQLiteStore) -> None:
    await store.create("s1", now=T0)
    bad = SignalRecord(2, T0, "tick", "a str, not bytes")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="s1") as caught:
        await store.append("s1", [signal(1), bad], [])
    assert not isinstance(caught.value, UsageError)
    assert await store.signals("s1") == []
    with pytest.raises(StoreError):
        await store.snapshot("s1", SnapshotRecord(0, 0, T0, None))  # type: ignore[arg-type]


def _fill(path: Path, n: int) -> None:
    async def main() -> None:
        async with SQLiteStore(path) as store:
            await store.create("s1", now=T0)
            big = [SignalRecord(i, T0 + i, "tick", bytes([i % 251]) * 300) for i in range(1, n + 1)]
            await store.append("s1", big, [])
        # fold the WAL into the main file, so that damaging the file damages the data
        conn = raw(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.close()

    asyncio.run(main())


@pytest.fixture
def full_db(tmp_path: Path) -> Path:
    path = tmp_path / "full.db"
    _fill(path, 2000)
    return path


def _truncate_half(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)


def _garble_a_late_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    victim = (len(data) // page) * 3 // 4  # a leaf page late in the signals table
    data[victim * page : (victim + 1) * page] = b"\xa5" * page
    path.write_bytes(bytes(data))


async def test_a_truncated_database_is_a_clear_store_error(full_db: Path) -> None:
    # SQLite notices at once (even PRAGMA user_version fails): the store does not open
    _truncate_half(full_db)
    with pytest.raises(StoreError) as caught:
        async with SQLiteStore(full_db) as store:
            await store.signals("s1")  # the whole log: reaches into the missing half
    assert str(full_db) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


async def test_a_damaged_page_leaves_the_prefix_before_it_readable(full_db: Path) -> None:
    _garble_a_late_page(full_db)
    readable: list[SignalRecord] = []
    failure: CorruptRecordError | None = None
    async with SQLiteStore(full_db) as store:
        try:
            while batch := await store.signals("s1", after=len(readable), limit=500):
                readable.extend(batch)
        except CorruptRecordError as exc:
            failure = exc
    assert failure is not None
    assert 0 < len(readable) < 2000
    assert [r.seq for r in readable] == list(range(1, len(readable) + 1))
    assert all(r.data == bytes([r.seq % 251]) * 300 for r in readable)
    assert failure.seq == len(readable) + 1
    assert str(full_db) in str(failure)
    assert isinstance(failure.__cause__, sqlite3.DatabaseError)


# -- several connections ----------------------------------------------------------------------------


async def test_two_stores_on_one_file_see_each_others_writes_and_leases(db_path: Path) -> None:
    async with SQLiteStore(db_path) as one, SQLiteStore(db_path) as two:
        await one.create("s1", now=T0)
        await one.acquire("s1", "host-a:1:x", ttl=30, now=T0)
        await one.append("s1", signals(1, 2), events(1, [1]), owner="host-a:1:x")
        assert await two.signals("s1") == signals(1, 2)
        with pytest.raises(SessionLockedError) as caught:
            await two.acquire("s1", "host-b:2:y", ttl=30, now=T0 + 1)
        assert caught.value.holder == "host-a:1:x"
        with pytest.raises(SessionLockedError):
            await two.append("s1", signals(3, 3), [], owner="host-b:2:y")
        await one.release("s1", "host-a:1:x")
        await two.acquire("s1", "host-b:2:y", ttl=30, now=T0 + 2)
        await two.append("s1", signals(3, 3), [event(2, 3)], owner="host-b:2:y")
        assert await one.signals("s1") == signals(1, 3)
        info = await one.info("s1")
        assert info is not None
        assert (info.signals, info.events) == (3, 2)


async def test_concurrent_calls_on_one_store_do_not_interleave(store: SQLiteStore) -> None:
    ids = [f"s{i}" for i in range(8)]
    await asyncio.gather(*(store.create(sid, now=T0) for sid in ids))

    async def write(sid: str) -> None:
        for first in range(1, 50, 7):
            await store.append(sid, signals(first, first + 6), events(first, [first] * 7))

    await asyncio.gather(*(write(sid) for sid in ids))
    for sid in ids:
        assert await store.signals(sid) == signals(1, 49)


# -- opening and closing ------------------------------------------------------------------------------


async def test_nested_async_with_shares_one_connection(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    async with store:
        async with store:
            await store.create("s1", now=T0)
        assert await store.info("s1") is not None
    with pytest.raises(ClosedError):
        await store.info("s1")
    async with store:  # and it can be opened again
        assert await store.info("s1") is not None
    assert repr(store) == f"<SQLiteStore {str(db_path)!r} closed>"


async def test_a_closed_store_says_so(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    with pytest.raises(ClosedError, match="async with"):
        await store.create("s1", now=T0)
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(ClosedError):
        await store.signals("s1")


async def test_a_path_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.touch()
    with pytest.raises(StoreError, match="cannot be opened") as caught:
        async with SQLiteStore(blocker / "s.db"):
            pass
    assert str(blocker / "s.db") in str(caught.value)


def test_options_are_checked() -> None:
    with pytest.raises(UsageError):
        SQLiteStore("x.db", busy_timeout=-1)
    with pytest.raises(UsageError):
        SQLiteStore("x.db", synchronous="SOMETIMES")
    with pytest.raises(UsageError):
        SQLiteStore("")
    assert SQLiteStore("x.db", synchronous="full").synchronous == "FULL"


def test_it_refuses_to_run_without_asyncio(tmp_path: Path) -> None:
    async def main() -> None:
        async with SQLiteStore(tmp_path / "x.db"):
            pass

    with pytest.raises(UsageError, match="asyncio only"):
        anyio.run(main, backend="trio")


async def test_concurrent_opens_share_one_connection(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await asyncio.gather(store.open(), store.open(), store.open())
    await store.create("s1", now=T0)
    await store.close()


def test_a_home_relative_path_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert SQLiteStore("~/s.db").path == str(tmp_path / "s.db")
    assert SQLiteStore(":memory:").path == ":memory:"


def test_a_sqlite_store_is_a_store(tmp_path: Path) -> None:
    assert isinstance(SQLiteStore(tmp_path / "x.db"), Store)
