"""The store protocol: what every session store (memory, SQLite, Redis) provides.

A store is bytes in, bytes out: it never decodes signals, events or states (the
:class:`~oturn.Codec` does, at the edge), so it can neither import nor unpickle
anything. Every method is a coroutine; a store is opened with ``async with``.

Ordering and atomicity: :meth:`Store.append` writes one batch of signals and events
atomically and in order; a session's ``seq`` numbers have no gaps. A reader never
sees a half-written batch.

Ownership: one writer per session. :meth:`Store.acquire` takes a lease for ``owner``
(``ttl`` seconds, renewed by calling it again); another owner gets
:class:`~oturn.SessionLockedError` until the lease expires or is released. A holder
that died on this host (its pid is gone) may be taken over at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, runtime_checkable

from oturn.store.records import EventRecord, SessionInfo, SignalRecord, SnapshotRecord

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """A session store. See the module docstring for the guarantees."""

    async def __aenter__(self) -> Store: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    # -- sessions -------------------------------------------------------------------------

    async def create(self, session: str, *, meta: dict[str, str] | None = None, now: float) -> None:
        """Create an empty session (``UsageError`` if it exists)."""
        ...

    async def info(self, session: str) -> SessionInfo | None:
        """The session's summary, or ``None`` if there is no such session."""
        ...

    async def sessions(self) -> list[SessionInfo]:
        """Every session, oldest first."""
        ...

    async def delete(self, session: str) -> bool:
        """Delete a session and everything it holds; ``False`` if there was none."""
        ...

    async def prune(self, *, older_than: float | None = None, keep: int | None = None, now: float) -> list[str]:
        """Delete sessions not updated since ``now - older_than`` seconds and/or beyond the ``keep``
        most recently updated; return the deleted ids."""
        ...

    async def fork(self, session: str, new: str, *, at_seq: int, now: float) -> None:
        """Copy signals ``1..at_seq`` (and the events and snapshots they caused) into a new session."""
        ...

    # -- ownership --------------------------------------------------------------------------

    async def acquire(self, session: str, owner: str, *, ttl: float, now: float) -> None:
        """Take or renew the writer lease (``SessionLockedError`` if another owner holds it)."""
        ...

    async def release(self, session: str, owner: str) -> None:
        """Give the lease up (a no-op if ``owner`` does not hold it)."""
        ...

    # -- the log ----------------------------------------------------------------------------

    async def append(
        self, session: str, signals: Sequence[SignalRecord], events: Sequence[EventRecord], *, owner: str | None = None
    ) -> None:
        """Append a batch atomically; seqs must continue the log without gaps (``StoreError`` otherwise).

        With ``owner``, the write is refused (``SessionLockedError``) unless ``owner`` holds the lease.
        """
        ...

    async def snapshot(self, session: str, record: SnapshotRecord) -> None:
        """Keep a snapshot (older ones may be dropped; the latest is kept)."""
        ...

    async def latest_snapshot(self, session: str) -> SnapshotRecord | None:
        """The snapshot with the highest ``signal_seq``, if any."""
        ...

    async def signals(self, session: str, *, after: int = 0, limit: int | None = None) -> list[SignalRecord]:
        """Signals with ``seq > after``, in order (at most ``limit``)."""
        ...

    async def events(self, session: str, *, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        """Events with ``seq > after``, in order (at most ``limit``)."""
        ...
