"""The SQLite store: the embedded default, one file through aiosqlite (asyncio only).

Every operation is one function run on aiosqlite's connection thread, inside one
transaction where it writes (``BEGIN IMMEDIATE``, so that a writer waits for the
database lock up to ``busy_timeout`` instead of failing half-way): one hop to the thread
per call, no interleaving between calls sharing the connection, and an ``append`` that
is all or nothing. The file is in WAL mode, so readers (in this and other processes)
never wait for the writer. The schema and its migrations are in
:mod:`oturn.store.schema`.

Errors: sqlite3 and aiosqlite exceptions are translated here, at the edge, into
:class:`~oturn.StoreError` (the original on ``__cause__``) naming the file; a record
that cannot be read (``data`` NULL or not a BLOB, a damaged page) is a
:class:`~oturn.CorruptRecordError` naming the session and seq.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiosqlite
import anyio
import msgspec

from oturn._exceptions import ClosedError, CorruptRecordError, SessionLockedError, StoreError, UsageError
from oturn.store import schema
from oturn.store._checks import (
    check_batch,
    check_continues,
    check_fork,
    check_lease_for_append,
    check_meta,
    check_now,
    check_owner,
    check_prune,
    check_read,
    check_session_id,
    check_snapshot,
    check_ttl,
    may_acquire,
    no_session,
    prune_victims,
)
from oturn.store.records import EventRecord, SessionInfo, SignalRecord, SnapshotRecord

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_KEEP_SNAPSHOTS = 2
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# primary result codes (sqlite3.SQLITE_* exist from Python 3.11; spelled out for clarity)
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26

_meta_encoder = msgspec.json.Encoder()
_meta_decoder = msgspec.json.Decoder(dict[str, str])

_SESSION_COLUMNS = "id, created_at, updated_at, signals, events, parent, fork_seq, meta"
_SELECT_SIGNALS = "SELECT seq, at, type, data FROM signals WHERE session = ? AND seq > ? ORDER BY seq LIMIT ?"
_SELECT_SIGNAL = "SELECT seq, at, type, data FROM signals WHERE session = ? AND seq = ?"
_SELECT_EVENTS = (
    "SELECT seq, cause, at, turn, type, data FROM events WHERE session = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_SELECT_EVENT = "SELECT seq, cause, at, turn, type, data FROM events WHERE session = ? AND seq = ?"
_INSERT_SIGNALS = "INSERT INTO signals (session, seq, at, type, data) VALUES (?, ?, ?, ?, ?)"
_INSERT_EVENTS = "INSERT INTO events (session, seq, cause, at, turn, type, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
_SELECT_COUNTERS = "SELECT signals, events, owner, lease_expires FROM sessions WHERE id = ?"
_UPDATE_COUNTERS = "UPDATE sessions SET signals = ?, events = ?, updated_at = max(updated_at, ?) WHERE id = ?"


class SQLiteStore:
    """A :class:`~oturn.store.Store` in one SQLite file (``path``), through aiosqlite.

    **asyncio only** (aiosqlite hands results back through asyncio futures; uvloop is
    fine, trio is not): under trio use :class:`~oturn.store.memory.MemoryStore` or the
    Redis store.

    Open it with ``async with SQLiteStore(path) as store:`` (or ``await store.open()`` /
    ``await store.close()``); nested ``async with`` blocks share one connection, which
    closes when the outermost ends. Opening creates the file and its missing parent
    directories (mode 0o700), switches it to WAL, sets ``busy_timeout`` (seconds a
    writer waits for another connection's lock before :class:`~oturn.StoreError`) and
    ``synchronous`` (``"NORMAL"``: a commit survives a crash of the process, and of the
    machine once the WAL is checkpointed; ``"FULL"``: every commit survives power loss)
    and migrates the schema (:class:`~oturn.SchemaVersionError` for a file written by a
    newer oturn). ``":memory:"`` gives a private database with no file (no WAL).

    Several stores, in one or many processes, may open the same file: the writer lease
    (``acquire``) keeps their sessions apart. A call cancelled while its transaction runs
    on the connection thread still completes (or not) as a whole.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, synchronous: str = "NORMAL") -> None:
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or not busy_timeout >= 0:
            raise UsageError(f"busy_timeout is a number of seconds >= 0; got {busy_timeout!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise UsageError(f"synchronous is one of {', '.join(_SYNCHRONOUS)}; got {synchronous!r}")
        self.path = os.fspath(path)
        if not self.path:
            raise UsageError("SQLiteStore needs a file path (or ':memory:')")
        if self.path != ":memory:" and not self.path.startswith("file:"):
            self.path = os.path.expanduser(self.path)
        self.busy_timeout = float(busy_timeout)
        self.synchronous = synchronous.upper()
        self.journal_mode: str | None = None
        """The journal mode SQLite reported when the store opened (``"wal"`` for a file)."""
        self._db: aiosqlite.Connection | None = None
        self._conn: sqlite3.Connection | None = None
        self._entered = 0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = "open" if self._db is not None else "closed"
        return f"<SQLiteStore {self.path!r} {state}>"

    # -- opening and closing ----------------------------------------------------------------

    async def open(self) -> None:
        """Connect, configure and migrate (a no-op if open)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise UsageError(
                "SQLiteStore runs on asyncio only (aiosqlite); under trio use oturn.store.memory.MemoryStore"
            ) from None
        async with self._lock:
            if self._db is None:
                await self._open()

    async def _open(self) -> None:
        if self.path != ":memory:" and not self.path.startswith("file:"):
            _make_parent(self.path)
        db = aiosqlite.connect(self.path, isolation_level=None)
        try:
            await db
        except sqlite3.Error as exc:
            # aiosqlite stops its thread without waiting for it when connecting fails; the
            # thread then reports to this event loop, which must still be running: wait.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(db._thread.join, 5.0)
            raise self._translate(exc, "opening it") from exc
        conn = db._conn
        try:
            self.journal_mode = await db._execute(  # type: ignore[no-untyped-call]
                _setup, conn, self.path, self.busy_timeout, self.synchronous, schema.MIGRATIONS
            )
        except BaseException as exc:
            # Shielded: a cancelled open must still stop aiosqlite's thread, or the thread
            # later reports a future of a closed event loop.
            with anyio.CancelScope(shield=True):
                await db.close()
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc, "opening it") from exc
            raise
        self._db, self._conn = db, conn

    async def close(self) -> None:
        """Close the connection (a no-op if closed); calls still running on it complete first."""
        db, self._db, self._conn = self._db, None, None
        self._entered = 0
        if db is not None:
            try:
                with anyio.CancelScope(shield=True):  # calls in flight finish on their thread first
                    await db.close()
            except sqlite3.Error as exc:
                raise self._translate(exc, "closing it") from exc

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        self._entered += 1
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._entered -= 1
        if self._entered <= 0:
            await self.close()

    async def _run(self, doing: str, fn: Callable[..., T], *args: Any) -> T:
        db, conn = self._db, self._conn
        if db is None or conn is None:
            raise ClosedError(f"the SQLite store {self.path!r} is not open (use 'async with store:')")
        try:
            result: T = await db._execute(fn, conn, *args)  # type: ignore[no-untyped-call]
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from exc
        except ValueError as exc:
            if self._db is None or "closed" in str(exc) or "no active connection" in str(exc):
                raise ClosedError(f"the SQLite store {self.path!r} was closed while {doing}") from exc
            raise
        return result

    def _translate(self, exc: sqlite3.Error, doing: str) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        where = self.path
        if primary in (_BUSY, _LOCKED):
            return StoreError(
                f"{where}: the database stayed locked by another connection for longer than busy_timeout="
                f"{self.busy_timeout:g}s while {doing} ({exc})"
            )
        if primary in (_CORRUPT, _NOTADB):
            return StoreError(f"{where} is damaged or is not a SQLite database ({exc}); found while {doing}")
        if primary == _CANTOPEN:
            return StoreError(f"{where} cannot be opened ({exc}): check the path and its permissions")
        if primary == _FULL:
            return StoreError(f"{where}: the disk is full ({exc}) while {doing}")
        if primary == _READONLY:
            return StoreError(f"{where} is read-only ({exc}) while {doing}")
        if primary == _IOERR:
            return StoreError(f"{where}: input/output error ({exc}) while {doing}")
        return StoreError(f"{where}: {doing} failed: {exc}")

    # -- sessions -------------------------------------------------------------------------

    async def create(self, session: str, *, meta: dict[str, str] | None = None, now: float) -> None:
        check_session_id(session)
        check_now(now)
        encoded = _meta_encoder.encode(check_meta(meta))
        await self._run(f"creating session {session!r}", _create, session, encoded, float(now))

    async def info(self, session: str) -> SessionInfo | None:
        return await self._run(f"reading session {session!r}", _info, session)

    async def sessions(self) -> list[SessionInfo]:
        return await self._run("listing sessions", _sessions)

    async def delete(self, session: str) -> bool:
        return await self._run(f"deleting session {session!r}", _delete, session)

    async def prune(self, *, older_than: float | None = None, keep: int | None = None, now: float) -> list[str]:
        check_prune(older_than, keep, now)
        return await self._run("pruning sessions", _prune, older_than, keep, float(now))

    async def fork(self, session: str, new: str, *, at_seq: int, now: float) -> None:
        check_now(now)
        await self._run(f"forking session {session!r} into {new!r}", _fork, session, new, at_seq, float(now))

    # -- ownership --------------------------------------------------------------------------

    async def acquire(self, session: str, owner: str, *, ttl: float, now: float) -> None:
        check_owner(owner)
        check_ttl(ttl)
        check_now(now)
        await self._run(f"taking the lease of session {session!r}", _acquire, session, owner, float(ttl), float(now))

    async def release(self, session: str, owner: str) -> None:
        await self._run(f"releasing the lease of session {session!r}", _release, session, owner)

    # -- the log ----------------------------------------------------------------------------

    async def append(
        self, session: str, signals: Sequence[SignalRecord], events: Sequence[EventRecord], *, owner: str | None = None
    ) -> None:
        await self._run(f"appending to session {session!r}", _append, session, signals, events, owner)

    async def snapshot(self, session: str, record: SnapshotRecord) -> None:
        await self._run(f"writing a snapshot of session {session!r}", _snapshot, session, record)

    async def latest_snapshot(self, session: str) -> SnapshotRecord | None:
        return await self._run(f"reading the snapshot of session {session!r}", _latest_snapshot, self.path, session)

    async def signals(self, session: str, *, after: int = 0, limit: int | None = None) -> list[SignalRecord]:
        check_read(after, limit)
        return await self._run(
            f"reading the signals of session {session!r}", _read_signals, self.path, session, after, limit
        )

    async def events(self, session: str, *, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        check_read(after, limit)
        return await self._run(
            f"reading the events of session {session!r}", _read_events, self.path, session, after, limit
        )


# -- everything below runs on the connection thread ----------------------------------------


def _make_parent(path: str) -> None:
    parent = Path(path).parent
    if not parent.exists():
        try:
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create its directory {str(parent)!r}: {exc}") from exc


def _setup(
    conn: sqlite3.Connection, where: str, busy_timeout: float, synchronous: str, migrations: list[schema.Migration]
) -> str:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    schema.migrate(conn, where, migrations)
    return mode


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def _create(conn: sqlite3.Connection, session: str, meta: bytes, now: float) -> None:
    with _Transaction(conn):
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session,)).fetchone() is not None:
            raise UsageError(f"session {session!r} already exists in this store")
        conn.execute(
            "INSERT INTO sessions (id, created_at, updated_at, meta) VALUES (?, ?, ?, ?)",
            (session, now, now, meta.decode()),
        )


def _session_info(row: tuple[Any, ...]) -> SessionInfo:
    sid, created_at, updated_at, signals, events, parent, fork_seq, meta = row
    try:
        decoded = _meta_decoder.decode(meta) if meta else {}
        return SessionInfo(
            id=sid,
            created_at=float(created_at),
            updated_at=float(updated_at),
            signals=int(signals),
            events=int(events),
            parent=parent,
            fork_seq=fork_seq,
            meta=decoded,
        )
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        raise CorruptRecordError(f"the session's summary row is unreadable: {exc}", session=str(sid), seq=None) from exc


def _info(conn: sqlite3.Connection, session: str) -> SessionInfo | None:
    row = conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session,)).fetchone()
    return None if row is None else _session_info(row)


def _sessions(conn: sqlite3.Connection) -> list[SessionInfo]:
    rows = conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY created_at, id").fetchall()
    return [_session_info(row) for row in rows]


def _delete_rows(conn: sqlite3.Connection, session: str) -> bool:
    conn.execute("DELETE FROM signals WHERE session = ?", (session,))
    conn.execute("DELETE FROM events WHERE session = ?", (session,))
    conn.execute("DELETE FROM snapshots WHERE session = ?", (session,))
    return conn.execute("DELETE FROM sessions WHERE id = ?", (session,)).rowcount > 0


def _delete(conn: sqlite3.Connection, session: str) -> bool:
    with _Transaction(conn):
        return _delete_rows(conn, session)


def _prune(conn: sqlite3.Connection, older_than: float | None, keep: int | None, now: float) -> list[str]:
    with _Transaction(conn):
        rows = conn.execute("SELECT id, created_at, updated_at, owner, lease_expires FROM sessions").fetchall()
        victims = prune_victims(rows, older_than=older_than, keep=keep, now=now)
        for sid in victims:
            _delete_rows(conn, sid)
    return victims


def _fork(conn: sqlite3.Connection, session: str, new: str, at_seq: int, now: float) -> None:
    with _Transaction(conn):
        row = conn.execute("SELECT signals, meta FROM sessions WHERE id = ?", (session,)).fetchone()
        if row is None:
            raise no_session(session)
        signals, meta = row
        check_fork(session, new, at_seq, signals)
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (new,)).fetchone() is not None:
            raise UsageError(f"cannot fork session {session!r} into {new!r}: {new!r} already exists")
        conn.execute(
            "INSERT INTO sessions (id, created_at, updated_at, parent, fork_seq, meta, signals)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new, now, now, session, at_seq, meta, at_seq),
        )
        conn.execute(
            "INSERT INTO signals (session, seq, at, type, data)"
            " SELECT ?, seq, at, type, data FROM signals WHERE session = ? AND seq <= ?",
            (new, session, at_seq),
        )
        # causes never decrease along the event log: the events of signals <= at_seq are a prefix
        conn.execute(
            "INSERT INTO events (session, seq, cause, at, turn, type, data)"
            " SELECT ?, seq, cause, at, turn, type, data FROM events WHERE session = ? AND cause <= ?",
            (new, session, at_seq),
        )
        conn.execute(
            "INSERT INTO snapshots (session, signal_seq, event_seq, at, data)"
            " SELECT ?, signal_seq, event_seq, at, data FROM snapshots WHERE session = ? AND signal_seq <= ?",
            (new, session, at_seq),
        )
        conn.execute(
            "UPDATE sessions SET events = (SELECT coalesce(max(seq), 0) FROM events WHERE session = ?) WHERE id = ?",
            (new, new),
        )


def _acquire(conn: sqlite3.Connection, session: str, owner: str, ttl: float, now: float) -> None:
    with _Transaction(conn):
        row = conn.execute("SELECT owner, lease_expires FROM sessions WHERE id = ?", (session,)).fetchone()
        if row is None:
            raise no_session(session)
        holder, expires = row
        if not may_acquire(owner, holder, expires, now):
            raise SessionLockedError(session, holder, expires)
        conn.execute("UPDATE sessions SET owner = ?, lease_expires = ? WHERE id = ?", (owner, now + ttl, session))


def _release(conn: sqlite3.Connection, session: str, owner: str) -> None:
    with _Transaction(conn):
        conn.execute(
            "UPDATE sessions SET owner = NULL, lease_expires = NULL WHERE id = ? AND owner = ?", (session, owner)
        )


def _append(
    conn: sqlite3.Connection,
    session: str,
    signals: Sequence[SignalRecord],
    events: Sequence[EventRecord],
    owner: str | None,
) -> None:
    # everything per record happens here, before the lock is taken: build the rows, check the seqs
    latest = -math.inf
    signal_rows = event_rows = None
    if signals:
        check_batch(session, "signal", signals)
        signal_rows = [(session, r.seq, r.at, r.type, r.data) for r in signals]
        latest = signals[-1].at
    if events:
        check_batch(session, "event", events)
        event_rows = [(session, r.seq, r.cause, r.at, r.turn, r.type, r.data) for r in events]
        latest = max(latest, events[-1].at)
    with _Transaction(conn):
        row = conn.execute(_SELECT_COUNTERS, (session,)).fetchone()
        if row is None:
            raise no_session(session)
        last_signal, last_event, holder, expires = row
        check_lease_for_append(session, owner, holder, expires)
        if signal_rows is None and event_rows is None:
            return
        if signals:
            check_continues(session, "signal", signals[0].seq, last_signal)
            last_signal = signals[-1].seq
        if events:
            check_continues(session, "event", events[0].seq, last_event)
            last_event = events[-1].seq
        try:
            if signal_rows is not None:
                conn.executemany(_INSERT_SIGNALS, signal_rows)
            if event_rows is not None:
                conn.executemany(_INSERT_EVENTS, event_rows)
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"session {session!r}: the batch (signals {_span(signals)}, events {_span(events)}) was refused: {exc}"
                " (a record's data must be bytes, its type a string)"
            ) from exc
        conn.execute(_UPDATE_COUNTERS, (last_signal, last_event, latest, session))


def _span(records: Sequence[SignalRecord] | Sequence[EventRecord]) -> str:
    return f"{records[0].seq}..{records[-1].seq}" if records else "none"


def _snapshot(conn: sqlite3.Connection, session: str, record: SnapshotRecord) -> None:
    with _Transaction(conn):
        row = conn.execute(_SELECT_COUNTERS, (session,)).fetchone()
        if row is None:
            raise no_session(session)
        check_snapshot(session, record.signal_seq, record.event_seq, row[0], row[1])
        try:
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (session, signal_seq, event_seq, at, data) VALUES (?, ?, ?, ?, ?)",
                (session, record.signal_seq, record.event_seq, record.at, record.data),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"session {session!r}: the snapshot after signal {record.signal_seq} was refused: {exc}"
                " (its data must be bytes)"
            ) from exc
        conn.execute(
            "DELETE FROM snapshots WHERE session = ? AND signal_seq < (SELECT signal_seq FROM snapshots"
            " WHERE session = ? ORDER BY signal_seq DESC LIMIT 1 OFFSET ?)",
            (session, session, _KEEP_SNAPSHOTS - 1),
        )
        conn.execute("UPDATE sessions SET updated_at = max(updated_at, ?) WHERE id = ?", (record.at, session))


def _latest_snapshot(conn: sqlite3.Connection, where: str, session: str) -> SnapshotRecord | None:
    row = conn.execute(
        "SELECT signal_seq, event_seq, at, data FROM snapshots WHERE session = ? ORDER BY signal_seq DESC LIMIT 1",
        (session,),
    ).fetchone()
    if row is None:
        return None
    signal_seq, event_seq, at, data = row
    if data.__class__ is not bytes or event_seq.__class__ is not int or at.__class__ is not float:
        raise CorruptRecordError(
            f"{where}: the snapshot after signal {signal_seq} is unreadable ({_describe(data)})",
            session=session,
            seq=signal_seq,
        )
    return SnapshotRecord(signal_seq, event_seq, at, data)


def _describe(data: object) -> str:
    if data is None:
        return "its data is NULL"
    if data.__class__ is not bytes:
        return f"its data is {type(data).__name__}, not bytes"
    return "a column has the wrong type"


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_CORRUPT, _NOTADB)


def _signal_rows(
    where: str, session: str, rows: list[tuple[Any, ...]], out: list[SignalRecord], limit: float
) -> list[SignalRecord]:
    """Append readable rows to ``out`` up to the first bad one; raise if that is the very first."""
    append = out.append
    for seq, at, type_, data in rows:
        if (
            data.__class__ is not bytes
            or type_.__class__ is not str
            or at.__class__ is not float
            or seq.__class__ is not int
        ):
            if not out:
                raise CorruptRecordError(
                    f"{where}: signal {seq} is unreadable ({_describe(data)})", session=session, seq=seq
                )
            break
        append(SignalRecord(seq, at, type_, data))
        if len(out) >= limit:
            break
    return out


def _read_signals(
    conn: sqlite3.Connection, where: str, session: str, after: int, limit: int | None
) -> list[SignalRecord]:
    try:
        rows = conn.execute(_SELECT_SIGNALS, (session, after, -1 if limit is None else limit)).fetchall()
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise
        return _salvage(conn, where, session, after, limit, exc, _SELECT_SIGNAL, _signal_rows)
    return _signal_rows(where, session, rows, [], math.inf)


def _event_rows(
    where: str, session: str, rows: list[tuple[Any, ...]], out: list[EventRecord], limit: float
) -> list[EventRecord]:
    append = out.append
    for seq, cause, at, turn, type_, data in rows:
        if (
            data.__class__ is not bytes
            or type_.__class__ is not str
            or at.__class__ is not float
            or seq.__class__ is not int
            or cause.__class__ is not int
            or not (turn is None or turn.__class__ is str)
        ):
            if not out:
                raise CorruptRecordError(
                    f"{where}: event {seq} is unreadable ({_describe(data)})", session=session, seq=seq
                )
            break
        append(EventRecord(seq, cause, at, turn, type_, data))
        if len(out) >= limit:
            break
    return out


def _read_events(
    conn: sqlite3.Connection, where: str, session: str, after: int, limit: int | None
) -> list[EventRecord]:
    try:
        rows = conn.execute(_SELECT_EVENTS, (session, after, -1 if limit is None else limit)).fetchall()
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise
        return _salvage(conn, where, session, after, limit, exc, _SELECT_EVENT, _event_rows)
    return _event_rows(where, session, rows, [], math.inf)


def _salvage(
    conn: sqlite3.Connection,
    where: str,
    session: str,
    after: int,
    limit: int | None,
    damage: sqlite3.DatabaseError,
    point_query: str,
    convert: Callable[[str, str, list[tuple[Any, ...]], list[T], float], list[T]],
) -> list[T]:
    """A range read hit a damaged page: read record by record up to the damage (the readable prefix)."""
    out: list[T] = []
    wanted = math.inf if limit is None else limit
    seq = after
    while len(out) < wanted:
        seq += 1
        try:
            row = conn.execute(point_query, (session, seq)).fetchone()
        except sqlite3.DatabaseError:
            break
        if row is None:
            break
        before = len(out)
        convert(where, session, [row], out, wanted)
        if len(out) == before:
            break
    if not out and wanted > 0:
        raise CorruptRecordError(
            f"{where} is damaged ({damage}); the log cannot be read past seq {after}", session=session, seq=after + 1
        ) from damage
    return out
