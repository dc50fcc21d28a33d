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

Details every store shares (pinned by :mod:`oturn.testing.store_kit`):

- Time: a store never reads the clock; times come in as ``now`` and as the records'
  ``at``. ``updated_at`` is the latest of the creation time and the ``at`` of every
  record and snapshot written since (``fork`` sets both times to its ``now``).
- Unknown sessions: reads (``info``, ``signals``, ``events``, ``latest_snapshot``)
  return ``None`` / ``[]``; writes (``append``, ``snapshot``, ``acquire``, ``fork`` from
  it) raise :class:`~oturn.UsageError`; ``release`` is a no-op; ``delete`` returns ``False``.
- Seqs: signals and events are numbered separately, each 1, 2, ...; ``SessionInfo.signals``
  and ``.events`` are the last seq of each (= their count). Along the event log the
  ``cause`` never decreases (the nucleus reduces one signal at a time), so the events
  of signals ``<= n`` are a prefix of it.
- Damage: a store returns bytes and never decodes them. A record it cannot read (data
  missing or not bytes, a damaged page) is reported, never skipped: a read returns the
  readable records before it, and a read that starts at it raises
  :class:`~oturn.CorruptRecordError` naming the session and seq. So reading on from the
  last seq returned recovers the readable prefix of a damaged log.
- Calls may run concurrently on one store; each is atomic. The sequences passed to
  ``append`` must not change until it returns.
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
        """Create an empty session (``UsageError`` if it exists). ``meta`` maps strings to strings."""
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
        most recently updated; return the deleted ids.

        ``updated_at < now - older_than`` is old; ties in recency are broken by creation time, then
        id. Sessions whose lease is live at ``now`` are spared. The ids come least recently
        updated first. At least one of ``older_than`` and ``keep`` is required (``UsageError``).
        """
        ...

    async def fork(self, session: str, new: str, *, at_seq: int, now: float) -> None:
        """Copy signals ``1..at_seq`` (and the events and snapshots they caused) into a new session.

        Events with ``cause <= at_seq`` and snapshots with ``signal_seq <= at_seq`` are copied; the
        new session gets ``parent=session``, ``fork_seq=at_seq``, the parent's ``meta``, no lease,
        and goes its own way. ``UsageError`` if ``session`` is unknown, ``new`` exists, or
        ``at_seq`` is outside ``0..signals``.
        """
        ...

    # -- ownership --------------------------------------------------------------------------

    async def acquire(self, session: str, owner: str, *, ttl: float, now: float) -> None:
        """Take or renew the writer lease (``SessionLockedError`` if another owner holds it).

        The lease is held while ``now < expires`` (``expires = now + ttl`` of the last acquire). It
        can be taken when free, expired, already ``owner``'s, or held by a process of this host that
        is gone (:func:`oturn.store.lease.holder_is_dead`). ``ttl`` is finite and > 0.
        """
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
        ``append`` has no ``now``: the holder is checked by name, so a holder whose lease lapsed
        writes on until another owner acquires it, which fences it out from then on. Without
        ``owner`` the lease is not checked. A refused batch (gap, repeat, disorder, lease)
        leaves nothing behind; an empty batch writes nothing.
        """
        ...

    async def snapshot(self, session: str, record: SnapshotRecord) -> None:
        """Keep a snapshot (older ones may be dropped; the latest is kept).

        A snapshot at the same ``signal_seq`` replaces the old one. ``UsageError`` unless the records
        it follows are stored (``signal_seq <= signals`` and ``event_seq <= events``).
        """
        ...

    async def latest_snapshot(self, session: str) -> SnapshotRecord | None:
        """The snapshot with the highest ``signal_seq``, if any."""
        ...

    async def signals(self, session: str, *, after: int = 0, limit: int | None = None) -> list[SignalRecord]:
        """Signals with ``seq > after``, in order (at most ``limit``; ``after >= 0``, ``limit >= 0``).

        Fewer than ``limit`` may come back before a damaged record (see the module docstring).
        """
        ...

    async def events(self, session: str, *, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        """Events with ``seq > after``, in order (at most ``limit``)."""
        ...
