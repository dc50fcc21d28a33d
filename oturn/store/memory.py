"""The in-memory store: plain dicts and lists in this process (tests, notebooks, the default session store)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from oturn._exceptions import SessionLockedError, UsageError
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

__all__ = ["MemoryStore"]

_KEEP_SNAPSHOTS = 2


class _Session:
    __slots__ = (
        "created_at",
        "events",
        "expires",
        "fork_seq",
        "holder",
        "meta",
        "parent",
        "signals",
        "snapshots",
        "updated_at",
    )

    def __init__(
        self, created_at: float, meta: dict[str, str], parent: str | None = None, fork_seq: int | None = None
    ) -> None:
        self.created_at = created_at
        self.updated_at = created_at
        self.meta = meta
        self.parent = parent
        self.fork_seq = fork_seq
        self.holder: str | None = None
        self.expires: float | None = None
        self.signals: list[SignalRecord] = []  # signals[i].seq == i + 1
        self.events: list[EventRecord] = []  # events[i].seq == i + 1
        self.snapshots: list[SnapshotRecord] = []  # ascending signal_seq, at most _KEEP_SNAPSHOTS

    def info(self, session: str) -> SessionInfo:
        return SessionInfo(
            id=session,
            created_at=self.created_at,
            updated_at=self.updated_at,
            signals=len(self.signals),
            events=len(self.events),
            parent=self.parent,
            fork_seq=self.fork_seq,
            meta=dict(self.meta),
        )


class MemoryStore:
    """A :class:`~oturn.store.Store` in this process's memory; gone when the process ends.

    Every method completes without waiting (no method awaits anything), so each is
    atomic, and the store works under any event loop (asyncio, uvloop, trio). It needs
    no opening: ``async with`` is accepted (and may be nested or repeated) but does
    nothing, so one instance can serve many sessions one after the other.

    Records are kept as given (they are immutable); lists returned by reads are new.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def __repr__(self) -> str:
        return f"<MemoryStore sessions={len(self._sessions)}>"

    def _get(self, session: str) -> _Session:
        s = self._sessions.get(session)
        if s is None:
            raise no_session(session)
        return s

    # -- sessions -------------------------------------------------------------------------

    async def create(self, session: str, *, meta: dict[str, str] | None = None, now: float) -> None:
        check_session_id(session)
        check_now(now)
        meta = check_meta(meta)
        if session in self._sessions:
            raise UsageError(f"session {session!r} already exists in this store")
        self._sessions[session] = _Session(float(now), meta)

    async def info(self, session: str) -> SessionInfo | None:
        s = self._sessions.get(session)
        return None if s is None else s.info(session)

    async def sessions(self) -> list[SessionInfo]:
        infos = [s.info(sid) for sid, s in self._sessions.items()]
        infos.sort(key=lambda i: (i.created_at, i.id))
        return infos

    async def delete(self, session: str) -> bool:
        return self._sessions.pop(session, None) is not None

    async def prune(self, *, older_than: float | None = None, keep: int | None = None, now: float) -> list[str]:
        check_prune(older_than, keep, now)
        rows = [(sid, s.created_at, s.updated_at, s.holder, s.expires) for sid, s in self._sessions.items()]
        victims = prune_victims(rows, older_than=older_than, keep=keep, now=now)
        for sid in victims:
            del self._sessions[sid]
        return victims

    async def fork(self, session: str, new: str, *, at_seq: int, now: float) -> None:
        src = self._get(session)
        check_fork(session, new, at_seq, len(src.signals))
        check_now(now)
        if new in self._sessions:
            raise UsageError(f"cannot fork session {session!r} into {new!r}: {new!r} already exists")
        copy = _Session(float(now), dict(src.meta), parent=session, fork_seq=at_seq)
        copy.signals = src.signals[:at_seq]
        # causes never decrease along the event log: the events of signals <= at_seq are a prefix
        events = src.events
        n = 0
        while n < len(events) and events[n].cause <= at_seq:
            n += 1
        copy.events = events[:n]
        copy.snapshots = [snap for snap in src.snapshots if snap.signal_seq <= at_seq]
        self._sessions[new] = copy

    # -- ownership --------------------------------------------------------------------------

    async def acquire(self, session: str, owner: str, *, ttl: float, now: float) -> None:
        check_owner(owner)
        check_ttl(ttl)
        check_now(now)
        s = self._get(session)
        if not may_acquire(owner, s.holder, s.expires, now):
            raise SessionLockedError(session, s.holder or "", s.expires)
        s.holder = owner
        s.expires = float(now + ttl)

    async def release(self, session: str, owner: str) -> None:
        s = self._sessions.get(session)
        if s is not None and s.holder == owner:
            s.holder = None
            s.expires = None

    # -- the log ----------------------------------------------------------------------------

    async def append(
        self, session: str, signals: Sequence[SignalRecord], events: Sequence[EventRecord], *, owner: str | None = None
    ) -> None:
        if signals:
            check_batch(session, "signal", signals)
        if events:
            check_batch(session, "event", events)
        s = self._get(session)
        check_lease_for_append(session, owner, s.holder, s.expires)
        latest = s.updated_at
        if signals:
            check_continues(session, "signal", signals[0].seq, len(s.signals))
            latest = max(latest, signals[-1].at)
        if events:
            check_continues(session, "event", events[0].seq, len(s.events))
            latest = max(latest, events[-1].at)
        s.signals.extend(signals)
        s.events.extend(events)
        s.updated_at = latest

    async def snapshot(self, session: str, record: SnapshotRecord) -> None:
        s = self._get(session)
        check_snapshot(session, record.signal_seq, record.event_seq, len(s.signals), len(s.events))
        kept = [snap for snap in s.snapshots if snap.signal_seq != record.signal_seq]
        kept.append(record)
        kept.sort(key=lambda snap: snap.signal_seq)
        s.snapshots = kept[-_KEEP_SNAPSHOTS:]
        s.updated_at = max(s.updated_at, record.at)

    async def latest_snapshot(self, session: str) -> SnapshotRecord | None:
        s = self._sessions.get(session)
        if s is None or not s.snapshots:
            return None
        return s.snapshots[-1]

    async def signals(self, session: str, *, after: int = 0, limit: int | None = None) -> list[SignalRecord]:
        check_read(after, limit)
        s = self._sessions.get(session)
        if s is None:
            return []
        return s.signals[after:] if limit is None else s.signals[after : after + limit]

    async def events(self, session: str, *, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        check_read(after, limit)
        s = self._sessions.get(session)
        if s is None:
            return []
        return s.events[after:] if limit is None else s.events[after : after + limit]
