"""The journal: a nucleus's signal log and events, written to a store off the hot path.

The reduction loop hands every signal (with its time) and every envelope to
:meth:`Journal.record_signal` / :meth:`Journal.record_event`, which only encode and
buffer them; a writer task in the nucleus's task group appends the buffer to the store
in one transaction per batch (group commit: whatever accumulated while the previous
write ran goes in the next one; while the loop is busy recording and nobody waits for
durability, the writer lets the batch grow to half of ``max_pending`` first). The buffer
is bounded: when ``max_pending`` records wait, the loop waits for the writer (the journal
is a ``block``-policy subscriber).

Durability (``durability=``):

- ``"effects"`` (default): before a transition's effects start, every signal up to it
  is committed. No tool runs, no model is called, unless the signal that asked for it
  is durable; everything else is batched. After a crash the log shows exactly which
  effects may have started.
- ``"every"``: every signal is committed before the next is reduced (slowest).
- ``"batched"``: never wait; a crash may lose the last batch.

Snapshots of the reduced state are written every ``snapshot_every`` signals, so that a
restore reads the latest snapshot and replays only the tail.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import anyio
import msgspec

from oturn._exceptions import CorruptRecordError, InvalidPolicyError, StoreError
from oturn.core.codec import Codec
from oturn.core.envelope import Envelope
from oturn.core.messages import Signal
from oturn.core.transition import Transition
from oturn.store.protocol import Store
from oturn.store.records import EventRecord, SignalRecord, SnapshotRecord

__all__ = ["Durability", "Journal", "Restored"]

_TAGS: dict[type, str] = {}  # message type -> its wire tag

S = TypeVar("S")


class Durability(enum.StrEnum):
    """When the journal makes the nucleus wait for the store (see the module docstring)."""

    EFFECTS = "effects"
    EVERY = "every"
    BATCHED = "batched"


class Restored(Generic[S]):
    """What :meth:`Journal.restore` found: the state, the counters, and what it replayed."""

    __slots__ = ("event_seq", "fresh", "replayed", "signal_seq", "snapshot_seq", "state")

    def __init__(
        self, state: S, signal_seq: int, event_seq: int, *, fresh: bool, snapshot_seq: int, replayed: int
    ) -> None:
        self.state = state
        self.signal_seq = signal_seq
        self.event_seq = event_seq
        self.fresh = fresh
        self.snapshot_seq = snapshot_seq
        self.replayed = replayed

    def __repr__(self) -> str:
        return (
            f"<Restored signals={self.signal_seq} events={self.event_seq} fresh={self.fresh}"
            f" snapshot={self.snapshot_seq} replayed={self.replayed}>"
        )


class Journal(Generic[S]):
    """Writes one session's log to ``store``; give it to ``Nucleus(journal=...)``.

    ``owner`` identifies this writer for the store's lease (default: host, pid and a
    random part); the lease is taken on restore, renewed as the journal writes, and
    released when the nucleus closes. ``meta`` is stored with the session when the
    journal creates it (an agent session records its turn configuration there).
    """

    def __init__(
        self,
        store: Store,
        session: str,
        codec: Codec[S],
        *,
        durability: Durability | str = Durability.EFFECTS,
        max_pending: int = 4096,
        snapshot_every: int = 1000,
        owner: str | None = None,
        lease_ttl: float = 30.0,
        clock: Callable[[], float] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        try:
            self.durability = Durability(durability)
        except ValueError:
            raise InvalidPolicyError(f"durability is 'effects', 'every' or 'batched'; got {durability!r}") from None
        if not isinstance(max_pending, int) or max_pending < 1:
            raise InvalidPolicyError(f"max_pending is a whole number >= 1; got {max_pending!r}")
        if not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise InvalidPolicyError(f"snapshot_every is a whole number >= 1; got {snapshot_every!r}")
        if not (isinstance(lease_ttl, int | float) and lease_ttl > 0 and math.isfinite(lease_ttl)):
            raise InvalidPolicyError(f"lease_ttl is a number of seconds > 0; got {lease_ttl!r}")
        if owner is None:
            from oturn.store.lease import make_owner

            owner = make_owner()
        self.store = store
        self.session = session
        self.codec = codec
        self.max_pending = max_pending
        self.snapshot_every = snapshot_every
        self.owner = owner
        self.lease_ttl = float(lease_ttl)
        self.meta = dict(meta) if meta is not None else None
        self._now = clock
        encoder = getattr(codec, "_encoder", None)
        # the hot path calls msgspec's encoder itself when Codec.encode would only wrap it
        plain = type(codec).encode is Codec.encode and isinstance(encoder, msgspec.json.Encoder)
        self._encode: Callable[[object], bytes] = encoder.encode if plain else codec.encode  # type: ignore[union-attr]
        self._signals: list[SignalRecord] = []
        self._events: list[EventRecord] = []
        self._snapshot: SnapshotRecord | None = None
        self._recorded = 0  # highest signal seq recorded
        self._committed = 0  # highest signal seq known durable
        self._recorded_event = 0
        self._committed_event = 0
        self._writing = False
        self._flushing = 0  # flush() calls waiting
        self._wake: anyio.Event = anyio.Event()
        self._woken = False
        self._progress: anyio.Event = anyio.Event()
        self._failure: BaseException | None = None
        self._closed = False
        self._started = False
        self._done = anyio.Event()
        self._since_snapshot = 0
        self._lease_renewed_at = -math.inf
        self.batches = 0
        self.records_written = 0
        self.snapshot_problem: str | None = None
        """Set by :meth:`restore` when the latest snapshot could not be read (the whole log was replayed)."""

    # -- restore --------------------------------------------------------------------------

    async def restore(self, reducer: Callable[[S, Signal], Transition[S]], initial: S, *, now: float) -> Restored[S]:
        """Open the session (create it if new), take the lease, and rebuild the state.

        The state is the latest snapshot with the signals after it reduced again (their
        events and effects are not published or run again); a snapshot that cannot be
        read is ignored (see :attr:`snapshot_problem`) and the whole log is reduced. A
        reducer that raised on a signal originally leaves the state as it was, as it did
        then. Raises :class:`~oturn.CorruptRecordError` naming the first unreadable signal.
        """
        store, session = self.store, self.session
        info = await store.info(session)
        if info is None:
            await store.create(session, meta=self.meta, now=now)
            await store.acquire(session, self.owner, ttl=self.lease_ttl, now=now)
            self._lease_renewed_at = now
            return Restored(initial, 0, 0, fresh=True, snapshot_seq=0, replayed=0)
        await store.acquire(session, self.owner, ttl=self.lease_ttl, now=now)
        self._lease_renewed_at = now
        try:
            return await self._rebuild(reducer, initial)
        except BaseException:
            # A log that cannot be restored (a corrupt record, a store error, a cancel) must
            # not keep the session locked by a writer that will never write.
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):  # the original error says more
                await store.release(session, self.owner)
            raise

    async def _rebuild(self, reducer: Callable[[S, Signal], Transition[S]], initial: S) -> Restored[S]:
        store, session = self.store, self.session
        state = initial
        snapshot_seq = 0
        expected_events = 0  # the events the log's signals published (what a replay would produce)
        try:
            snapshot = await store.latest_snapshot(session)
            if snapshot is not None:
                state = self.codec.decode_state(snapshot.data)
                snapshot_seq = snapshot.signal_seq
                expected_events = snapshot.event_seq
        except (CorruptRecordError, msgspec.DecodeError) as exc:
            # A snapshot is derived data: when it cannot be read (damaged, or a state type
            # that changed), the log alone rebuilds the state, from its first signal.
            self.snapshot_problem = f"the latest snapshot was unreadable and was ignored: {exc}"
            state, snapshot_seq, expected_events = initial, 0, 0
        seq = snapshot_seq
        replayed = 0
        last: tuple[SignalRecord, Transition[S]] | None = None
        while True:
            batch = await store.signals(session, after=seq, limit=2048)
            if not batch:
                break
            for record in batch:
                if record.seq != seq + 1:
                    raise CorruptRecordError(
                        f"the log jumps from signal {seq} to {record.seq}", session=session, seq=record.seq
                    )
                signal = self.decode_signal(record)
                try:
                    t = reducer(state, signal)
                except Exception:
                    t = None
                if isinstance(t, Transition):
                    state = t.state
                    expected_events += len(t.events)
                    last = (record, t)
                else:
                    expected_events += 1  # the nucleus published an error event
                    last = None
                seq = record.seq
                replayed += 1
        self._recorded = self._committed = seq
        info = await store.info(session)
        event_seq = info.events if info is not None else 0
        if last is not None and event_seq < expected_events <= event_seq + len(last[1].events):
            # A crash between two writes of one signal's events (the loop waited for a
            # full `block` subscriber mid-way) left only the first of them durable:
            # write the rest, so that the log replays to exactly the stored events.
            event_seq = await self._complete_events(last[0], last[1], expected_events - event_seq, event_seq)
        self._recorded_event = self._committed_event = event_seq
        return Restored(state, seq, event_seq, fresh=False, snapshot_seq=snapshot_seq, replayed=replayed)

    async def _complete_events(self, record: SignalRecord, t: Transition[S], missing: int, event_seq: int) -> int:
        encode = self._encode
        events = t.events[len(t.events) - missing :]
        records = []
        for event in events:
            event_seq += 1
            tag = event.__struct_config__.tag
            records.append(EventRecord(event_seq, record.seq, record.at, t.turn, tag, encode(event)))  # type: ignore[arg-type]
        await self.store.append(self.session, [], records, owner=self.owner)
        return event_seq

    def decode_signal(self, record: SignalRecord) -> Signal:
        """The signal of ``record``, or :class:`~oturn.CorruptRecordError` naming it."""
        try:
            return self.codec.decode_signal(record.data)
        except Exception as exc:
            kind = "of an unknown type" if not self.codec.knows(record.type) else "unreadable"
            raise CorruptRecordError(
                f"signal record {record.seq} ({record.type!r}) is {kind}: {exc}", session=self.session, seq=record.seq
            ) from exc

    # -- the hot path (called from the reduction loop; no awaiting) ---------------------------

    def record_signal(self, seq: int, at: float, signal: Signal) -> None:
        """Buffer a reduced signal."""
        kind = type(signal)
        tag = _TAGS.get(kind)
        if tag is None:
            tag = _TAGS[kind] = kind.__struct_config__.tag  # type: ignore[assignment]
        self._signals.append(SignalRecord(seq, at, tag, self._encode(signal)))  # type: ignore[arg-type]
        self._recorded = seq
        if not self._writing and not self._woken:
            self._woken = True  # one wake-up per idle writer, not one per signal
            self._wake.set()

    def record_event(self, envelope: Envelope) -> None:
        """Buffer a published envelope."""
        event = envelope.event
        self._recorded_event = envelope.seq
        self._events.append(
            EventRecord(
                envelope.seq,
                envelope.cause,
                envelope.at,
                envelope.turn,
                event.__struct_config__.tag,  # type: ignore[arg-type]
                self._encode(event),
            )
        )

    def due_snapshot(self) -> bool:
        """Count a signal; True when a snapshot is due."""
        self._since_snapshot += 1
        return self._since_snapshot >= self.snapshot_every

    def record_snapshot(self, signal_seq: int, event_seq: int, at: float, state: S) -> None:
        """Buffer a snapshot of ``state`` (written after the records before it)."""
        self._since_snapshot = 0
        self._snapshot = SnapshotRecord(signal_seq, event_seq, at, self._encode(state))

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._signals) + len(self._events)

    def must_wait(self, has_effects: bool) -> bool:
        """Whether the loop must wait for the writer before going on."""
        if self._failure is not None:
            return True
        if len(self._signals) + len(self._events) >= self.max_pending:
            return True
        durability = self.durability
        if durability is Durability.EVERY:
            return True
        return durability is Durability.EFFECTS and has_effects

    # -- waiting and writing ------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until everything recorded so far is committed (re-raises a write failure)."""
        target, target_event = self._recorded, self._recorded_event
        self._flushing += 1
        try:
            await self._flush(target, target_event)
        finally:
            self._flushing -= 1

    async def _flush(self, target: int, target_event: int) -> None:
        while self._committed < target or self._committed_event < target_event:
            if self._failure is not None:
                raise StoreError(f"the journal of session {self.session!r} failed") from self._failure
            if not self._writing:
                self._wake.set()
            progress = self._progress
            await progress.wait()
        if self._failure is not None:
            raise StoreError(f"the journal of session {self.session!r} failed") from self._failure

    async def run(self, now: Callable[[], float]) -> None:
        """The writer: append whatever is buffered, one transaction per batch, until closed."""
        self._started = True
        try:
            await self._write_until_closed(now)
        finally:
            self._done.set()

    async def _gather(self) -> None:
        """Let a busy loop fill the batch before writing it (nobody waiting for it meanwhile).

        While the loop keeps recording (the buffer grew during one pass of the event loop)
        and no ``flush`` waits, the write is put off, up to half of ``max_pending``: a
        write running beside a busy loop is slowed down by the GIL at every row, and each
        small batch costs a transaction. An idle loop, or a flush, starts it at once.
        """
        self._writing = True  # the loop need not wake the writer meanwhile
        limit = self.max_pending // 2
        while not self._flushing and not self._closed:
            before = len(self._signals) + len(self._events)
            if before >= limit:
                break
            await anyio.lowlevel.checkpoint()
            if len(self._signals) + len(self._events) == before:
                break

    async def _write_until_closed(self, now: Callable[[], float]) -> None:
        store, session, owner = self.store, self.session, self.owner
        while True:
            if not self._signals and not self._events and self._snapshot is None:
                if self._closed:
                    return
                self._wake = anyio.Event()
                self._woken = False
                await self._wake.wait()
                continue
            await self._gather()
            signals, self._signals = self._signals, []
            events, self._events = self._events, []
            snapshot, self._snapshot = self._snapshot, None
            self._writing = True
            try:
                t = now()
                if t - self._lease_renewed_at > self.lease_ttl / 3:
                    await store.acquire(session, owner, ttl=self.lease_ttl, now=t)
                    self._lease_renewed_at = t
                if signals or events:
                    await store.append(session, signals, events, owner=owner)
                if snapshot is not None:
                    await store.snapshot(session, snapshot)
            except BaseException as exc:
                self._failure = exc
                self._writing = False
                self._progress.set()
                raise
            self._writing = False
            self.batches += 1
            self.records_written += len(signals) + len(events)
            if signals:
                self._committed = signals[-1].seq
            if events:
                self._committed_event = events[-1].seq
            progress, self._progress = self._progress, anyio.Event()
            progress.set()

    async def close(self, now: float) -> None:
        """Write what is left and give the lease up (called by the nucleus on exit)."""
        self._closed = True
        self._wake.set()
        if self._started:
            await self._done.wait()  # the writer drains the buffer before it returns
        if self._failure is None and (self._signals or self._events or self._snapshot is not None):
            store, session = self.store, self.session
            signals, self._signals = self._signals, []
            events, self._events = self._events, []
            snapshot, self._snapshot = self._snapshot, None
            if signals or events:
                await store.append(session, signals, events, owner=self.owner)
                if signals:
                    self._committed = signals[-1].seq
                if events:
                    self._committed_event = events[-1].seq
            if snapshot is not None:
                await store.snapshot(session, snapshot)
        if self._failure is None:
            await self.store.release(self.session, self.owner)

    async def read_events(self, after: int, upto: int) -> list[Envelope]:
        """Envelopes ``after < seq <= upto`` from the store (for ``subscribe(from_seq=...)``)."""
        if self._committed_event < upto:
            await self.flush()
        out: list[Envelope] = []
        cursor = after
        while cursor < upto:
            batch = await self.store.events(self.session, after=cursor, limit=min(2048, upto - cursor))
            if not batch:
                break
            for record in batch:
                try:
                    event = self.codec.decode_event(record.data)
                except Exception as exc:
                    raise CorruptRecordError(
                        f"event record {record.seq} ({record.type!r}) is unreadable: {exc}",
                        session=self.session,
                        seq=record.seq,
                    ) from exc
                out.append(
                    Envelope(
                        seq=record.seq,
                        at=record.at,
                        session=self.session,
                        turn=record.turn,
                        cause=record.cause,
                        event=event,
                    )
                )
                cursor = record.seq
        return out

    def __repr__(self) -> str:
        return (
            f"<Journal {self.session} {self.durability.value} recorded={self._recorded}"
            f" committed={self._committed} pending={self.pending}>"
        )
