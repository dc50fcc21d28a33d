"""The SQLite store's on-disk schema and its migrations.

The schema version lives in ``PRAGMA user_version``; ``PRAGMA application_id`` marks the
file as oturn's. :data:`MIGRATIONS` is the ordered list of steps: step ``i`` takes a
database from version ``i`` to ``i + 1`` (version 0 is an empty file), so a new version
is added by appending one function. :func:`migrate` runs the missing steps in one
transaction (a crash leaves the old version intact) and refuses a database written by a
newer oturn (:class:`~oturn.SchemaVersionError`).

Version 1::

    sessions(id TEXT PRIMARY KEY, created_at REAL, updated_at REAL, parent TEXT, fork_seq INTEGER,
             meta TEXT (JSON object of strings), owner TEXT, lease_expires REAL,
             signals INTEGER (last signal seq), events INTEGER (last event seq))
    signals(session, seq, at REAL, type TEXT, data BLOB, PRIMARY KEY (session, seq)) WITHOUT ROWID
    events(session, seq, cause INTEGER, at REAL, turn TEXT, type TEXT, data BLOB,
           PRIMARY KEY (session, seq)) WITHOUT ROWID
    snapshots(session, signal_seq, event_seq INTEGER, at REAL, data BLOB, PRIMARY KEY (session, signal_seq))

``data`` columns are msgspec JSON kept as BLOBs (``CHECK (typeof(data) = 'blob')``);
nothing stored is ever unpickled or imported.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from oturn._exceptions import SchemaVersionError, StoreError

__all__ = ["APPLICATION_ID", "MIGRATIONS", "Migration", "migrate", "schema_version"]

Migration = Callable[[sqlite3.Connection], None]
"""One step: runs inside the migration transaction (never ``executescript``, which commits)."""

APPLICATION_ID = 0x6F74726E  # "otrn"

_V1 = (
    """CREATE TABLE sessions (
        id            TEXT PRIMARY KEY NOT NULL,
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL,
        parent        TEXT,
        fork_seq      INTEGER,
        meta          TEXT NOT NULL DEFAULT '{}',
        owner         TEXT,
        lease_expires REAL,
        signals       INTEGER NOT NULL DEFAULT 0,
        events        INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX sessions_by_update ON sessions (updated_at)",
    """CREATE TABLE signals (
        session TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL,
        at      REAL NOT NULL,
        type    TEXT NOT NULL,
        data    BLOB CHECK (typeof(data) = 'blob'),
        PRIMARY KEY (session, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE events (
        session TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL,
        cause   INTEGER NOT NULL,
        at      REAL NOT NULL,
        turn    TEXT,
        type    TEXT NOT NULL,
        data    BLOB CHECK (typeof(data) = 'blob'),
        PRIMARY KEY (session, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE snapshots (
        session    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        signal_seq INTEGER NOT NULL,
        event_seq  INTEGER NOT NULL,
        at         REAL NOT NULL,
        data       BLOB CHECK (typeof(data) = 'blob'),
        PRIMARY KEY (session, signal_seq)
    )""",
)


def _v1_initial(conn: sqlite3.Connection) -> None:
    for statement in _V1:
        conn.execute(statement)


MIGRATIONS: list[Migration] = [_v1_initial]
"""Step ``i`` migrates version ``i`` to ``i + 1``; append to add a version."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's ``user_version``."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, where: str, migrations: Sequence[Migration] | None = None) -> int:
    """Bring the database of ``conn`` (autocommit mode) to the newest version; return the version found.

    ``where`` names the database in errors. Raises :class:`~oturn.SchemaVersionError` for a
    newer version and :class:`~oturn.StoreError` for a database of another application.
    """
    steps = MIGRATIONS if migrations is None else migrations
    supported = len(steps)
    found = _check(conn, where, supported)
    if found == supported:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _check(conn, where, supported)  # another process may have migrated meanwhile
        for version in range(found, supported):
            steps[version](conn)
        conn.execute(f"PRAGMA user_version = {int(supported)}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def _check(conn: sqlite3.Connection, where: str, supported: int) -> int:
    found = schema_version(conn)
    if found > supported:
        raise SchemaVersionError(
            f"{where} was written by a newer oturn (schema version {found}; this oturn reads versions up to"
            f" {supported}): upgrade oturn to open it",
            found=found,
            supported=supported,
        )
    app = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if found == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables:
            raise StoreError(
                f"{where} is a SQLite database of another application (it has tables but no oturn schema);"
                " give oturn a file of its own"
            )
    elif app != APPLICATION_ID:
        raise StoreError(f"{where} is a SQLite database of another application (application_id {app:#x})")
    return found
