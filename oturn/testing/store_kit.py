"""The store conformance kit: the behaviour every :class:`~oturn.store.Store` must have.

Subclass :class:`StoreKit` in a test module, name the subclass ``Test...`` and give it a
``store`` fixture that yields an open, empty store; pytest then runs every test of the
kit against it::

    import pytest
    from oturn.testing.store_kit import StoreKit

    class TestMyStore(StoreKit):
        @pytest.fixture
        async def store(self, tmp_path):
            async with MyStore(tmp_path / "s.db") as store:
                yield store

Needs pytest, pytest-asyncio (``asyncio_mode = "auto"``) and hypothesis (the ``dev``
extra). Stores never read the clock, so the kit passes every time as ``now=``.

What the kit pins down beyond the protocol's signatures (see :mod:`oturn.store.protocol`):

- reads (``signals``, ``events``, ``latest_snapshot``) of an unknown session are empty
  (``[]``, ``None``), like ``info`` (``None``); writes to one (``append``, ``snapshot``,
  ``acquire``, ``fork`` from it) are a ``UsageError``; ``release`` is a no-op, ``delete``
  returns ``False``;
- a batch whose seqs do not continue the log (gap, repeat, disorder) is a
  ``StoreError`` naming the session and the seqs, and leaves nothing behind;
- a snapshot is refused (``UsageError``) unless the records it follows are stored;
- ``prune`` spares sessions whose lease is live and needs a criterion;
- a lease is held while ``now < expires``; ``append(owner=...)`` checks the holder's
  name only (it has no ``now``), so a lapsed holder writes on until someone else takes
  the lease over.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oturn._exceptions import SessionLockedError, StoreError, UsageError
from oturn.store.protocol import Store
from oturn.store.records import EventRecord, SessionInfo, SignalRecord, SnapshotRecord

__all__ = ["T0", "StoreKit", "event", "events", "signal", "signals"]

T0 = 1_700_000_000.0
"""The kit's epoch: records of seq ``n`` are stamped ``T0 + n``."""

_NOT_UTF8 = b"\xff\xfe\x00\x80 \xc3\x28 \xed\xa0\x80 \x00\x00"


def signal(seq: int, *, at: float | None = None, type: str = "tick", data: bytes | None = None) -> SignalRecord:
    """A signal record of ``seq`` (time ``T0 + seq`` and a JSON body by default)."""
    body = data if data is not None else b'{"type":"%s","n":%d}' % (type.encode(), seq)
    return SignalRecord(seq, T0 + seq if at is None else at, type, body)


def signals(first: int, last: int) -> list[SignalRecord]:
    """Signal records ``first..last`` (inclusive)."""
    return [signal(seq) for seq in range(first, last + 1)]


def event(
    seq: int,
    cause: int,
    *,
    at: float | None = None,
    turn: str | None = "t1",
    type: str = "ticked",
    data: bytes | None = None,
) -> EventRecord:
    """An event record of ``seq`` caused by signal ``cause`` (time ``T0 + cause`` by default)."""
    body = data if data is not None else b'{"type":"%s","n":%d,"cause":%d}' % (type.encode(), seq, cause)
    return EventRecord(seq, cause, T0 + cause if at is None else at, turn, type, body)


def events(first: int, causes: list[int]) -> list[EventRecord]:
    """Event records ``first, first + 1, ...`` with these causes."""
    return [event(first + i, cause) for i, cause in enumerate(causes)]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


_hypothesis_runs = itertools.count()


class StoreKit:
    """The conformance tests; subclass it (``class TestX(StoreKit)``) and override ``store``."""

    @pytest.fixture
    def store(self, *args: Any, **kwargs: Any) -> Any:
        """Override with an async fixture (taking whatever fixtures it needs) that yields an open, empty store."""
        raise NotImplementedError(f"{type(self).__name__} must define an async `store` fixture yielding an open store")

    @pytest.fixture
    def dead_owner(self) -> str:
        """An owner string of a process of this host that has exited (and was reaped)."""
        return f"{socket.gethostname()}:{_dead_pid()}:gone"

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    async def log(store: Store, session: str) -> tuple[list[SignalRecord], list[EventRecord]]:
        return await store.signals(session), await store.events(session)

    # -- sessions -------------------------------------------------------------------------

    async def test_a_created_session_is_empty_and_described_by_info(self, store: Store) -> None:
        await store.create("s1", meta={"title": "hello", "model": "x/y"}, now=T0)
        assert await store.info("s1") == SessionInfo(
            id="s1", created_at=T0, updated_at=T0, signals=0, events=0, meta={"title": "hello", "model": "x/y"}
        )
        assert await self.log(store, "s1") == ([], [])
        assert await store.latest_snapshot("s1") is None

    async def test_info_of_an_unknown_session_is_none(self, store: Store) -> None:
        assert await store.info("nope") is None

    async def test_creating_a_session_twice_is_a_usage_error_and_keeps_the_first(self, store: Store) -> None:
        await store.create("s1", meta={"a": "1"}, now=T0)
        with pytest.raises(UsageError, match="s1"):
            await store.create("s1", meta={"a": "2"}, now=T0 + 5)
        info = await store.info("s1")
        assert info is not None
        assert (info.created_at, info.meta) == (T0, {"a": "1"})

    async def test_session_ids_and_meta_are_checked(self, store: Store) -> None:
        with pytest.raises(UsageError):
            await store.create("", now=T0)
        with pytest.raises(UsageError):
            await store.create("s1", meta={"n": 1}, now=T0)  # type: ignore[dict-item]
        assert await store.sessions() == []

    async def test_sessions_are_listed_oldest_first(self, store: Store) -> None:
        assert await store.sessions() == []
        await store.create("b", now=T0 + 2)
        await store.create("a", now=T0 + 1)
        await store.create("c", now=T0 + 3)
        listed = await store.sessions()
        assert [i.id for i in listed] == ["a", "b", "c"]
        assert listed[0] == await store.info("a")

    async def test_delete_removes_a_session_and_everything_it_holds(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 3), events(1, [1, 2]))
        await store.snapshot("s1", SnapshotRecord(2, 2, T0 + 2, b"state"))
        await store.acquire("s1", "w1", ttl=30, now=T0)
        assert await store.delete("s1") is True
        assert await store.info("s1") is None
        assert await self.log(store, "s1") == ([], [])
        assert await store.latest_snapshot("s1") is None
        assert await store.delete("s1") is False
        # the id can be used again, for a new and empty session with no lease
        await store.create("s1", now=T0 + 9)
        await store.acquire("s1", "w2", ttl=30, now=T0 + 9)
        await store.append("s1", signals(1, 1), [], owner="w2")
        assert await self.log(store, "s1") == (signals(1, 1), [])

    async def test_delete_leaves_other_sessions_alone(self, store: Store) -> None:
        for sid in ("a", "b"):
            await store.create(sid, now=T0)
            await store.append(sid, signals(1, 2), events(1, [1]))
        assert await store.delete("a")
        assert await self.log(store, "b") == (signals(1, 2), events(1, [1]))
        assert [i.id for i in await store.sessions()] == ["b"]

    # -- the log ----------------------------------------------------------------------------

    async def test_appended_records_read_back_in_order_and_are_counted(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 3), events(1, [1, 1, 3]))
        assert await self.log(store, "s1") == (signals(1, 3), events(1, [1, 1, 3]))
        info = await store.info("s1")
        assert info is not None
        assert (info.signals, info.events) == (3, 3)

    async def test_appends_continue_the_log_batch_after_batch(self, store: Store) -> None:
        await store.create("s1", now=T0)
        for first in range(1, 40, 3):
            await store.append("s1", signals(first, first + 2), events(first, [first, first + 1, first + 2]))
        assert await store.signals("s1") == signals(1, 39)
        assert [e.seq for e in await store.events("s1")] == list(range(1, 40))
        info = await store.info("s1")
        assert info is not None
        assert (info.signals, info.events) == (39, 39)

    async def test_a_batch_may_hold_only_signals_only_events_or_nothing(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 2), [])
        await store.append("s1", [], events(1, [2, 2]))
        await store.append("s1", [], [])
        await store.append("s1", signals(3, 3), [])
        assert await self.log(store, "s1") == (signals(1, 3), events(1, [2, 2]))

    async def test_a_batch_that_leaves_a_gap_is_refused_naming_the_session_and_seqs(self, store: Store) -> None:
        await store.create("gappy", now=T0)
        await store.append("gappy", signals(1, 2), [])
        with pytest.raises(StoreError) as caught:
            await store.append("gappy", signals(4, 5), [])
        assert not isinstance(caught.value, SessionLockedError)
        message = str(caught.value)
        assert "gappy" in message
        assert "4" in message
        assert "2" in message
        assert await store.signals("gappy") == signals(1, 2)

    async def test_a_batch_that_repeats_a_seq_is_refused(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 3), events(1, [1]))
        with pytest.raises(StoreError, match="s1"):
            await store.append("s1", signals(3, 4), [])
        with pytest.raises(StoreError, match="s1"):
            await store.append("s1", [signal(4), signal(4)], [])
        with pytest.raises(StoreError, match="s1"):
            await store.append("s1", [], events(1, [2]))
        assert await self.log(store, "s1") == (signals(1, 3), events(1, [1]))

    async def test_a_batch_whose_seqs_are_out_of_order_is_refused(self, store: Store) -> None:
        await store.create("s1", now=T0)
        with pytest.raises(StoreError, match="s1"):
            await store.append("s1", [signal(1), signal(3), signal(2)], [])
        with pytest.raises(StoreError, match="s1"):
            await store.append("s1", [signal(1), signal(5), signal(3)], [])
        assert await store.signals("s1") == []
        await store.append("s1", signals(1, 3), [])
        assert await store.signals("s1") == signals(1, 3)

    async def test_a_refused_batch_leaves_nothing_behind(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 2), events(1, [1, 2]))
        before = await store.info("s1")
        # the signals are fine, the events leave a gap: none of it may land
        with pytest.raises(StoreError):
            await store.append("s1", signals(3, 5), events(4, [3, 4]))
        assert await self.log(store, "s1") == (signals(1, 2), events(1, [1, 2]))
        assert await store.info("s1") == before
        await store.append("s1", signals(3, 5), events(3, [3, 4]))
        assert await self.log(store, "s1") == (signals(1, 5), events(1, [1, 2, 3, 4]))

    async def test_appending_to_an_unknown_session_is_a_usage_error(self, store: Store) -> None:
        with pytest.raises(UsageError, match="nope"):
            await store.append("nope", signals(1, 1), [])
        assert await store.info("nope") is None

    async def test_signal_reads_take_after_and_limit(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 10), [])
        assert await store.signals("s1", after=0) == signals(1, 10)
        assert await store.signals("s1", after=4) == signals(5, 10)
        assert await store.signals("s1", after=4, limit=3) == signals(5, 7)
        assert await store.signals("s1", after=8, limit=5) == signals(9, 10)
        assert await store.signals("s1", limit=0) == []
        assert await store.signals("s1", after=10) == []
        assert await store.signals("s1", after=99, limit=1) == []

    async def test_event_reads_take_after_and_limit(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 4), events(1, [1, 1, 2, 2, 3, 4]))
        assert await store.events("s1") == events(1, [1, 1, 2, 2, 3, 4])
        assert await store.events("s1", after=2, limit=2) == events(3, [2, 2])
        assert await store.events("s1", after=5) == events(6, [4])
        assert await store.events("s1", after=6) == []
        assert await store.events("s1", limit=0) == []

    async def test_reads_of_an_unknown_session_are_empty(self, store: Store) -> None:
        assert await store.signals("nope") == []
        assert await store.events("nope", after=3, limit=5) == []
        assert await store.latest_snapshot("nope") is None

    async def test_bad_read_arguments_are_usage_errors(self, store: Store) -> None:
        await store.create("s1", now=T0)
        with pytest.raises(UsageError):
            await store.signals("s1", after=-1)
        with pytest.raises(UsageError):
            await store.events("s1", limit=-1)

    async def test_records_round_trip_exactly(self, store: Store) -> None:
        await store.create("s1", now=T0)
        sigs = [
            SignalRecord(1, T0 + 0.123456789, "user_input", b""),
            SignalRecord(2, T0 + 1e-6, "caf\u00e9 \u2603", _NOT_UTF8),
            SignalRecord(3, 0.0, "x" * 300, bytes(range(256)) * 4),
        ]
        evs = [
            EventRecord(1, 1, T0 + 0.5, None, "no_turn", b"\x00"),
            EventRecord(2, 2, T0 + 0.25, "turn \u00e9\u2603", "with_turn", _NOT_UTF8),
            EventRecord(3, 3, -1.5, "", "empty_turn", b"{}"),
        ]
        await store.append("s1", sigs, evs)
        got_signals, got_events = await self.log(store, "s1")
        assert got_signals == sigs
        assert got_events == evs
        assert all(type(r.data) is bytes for r in got_signals)
        assert all(type(r.data) is bytes for r in got_events)

    async def test_a_large_batch_round_trips_byte_exact(self, store: Store) -> None:
        await store.create("big", now=T0)
        n = 10_000
        sigs = [
            SignalRecord(i, T0 + i / 1000, f"t{i % 7}", i.to_bytes(4, "little") + _NOT_UTF8) for i in range(1, n + 1)
        ]
        evs = [
            EventRecord(i, i, T0 + i / 1000, None if i % 3 else f"turn{i // 100}", "e", _NOT_UTF8[i % 13 :] * (i % 5))
            for i in range(1, n + 1)
        ]
        await store.append("big", sigs, evs)
        assert await store.signals("big") == sigs
        assert await store.events("big") == evs
        paged: list[SignalRecord] = []
        while batch := await store.signals("big", after=len(paged), limit=999):
            paged.extend(batch)
        assert paged == sigs
        info = await store.info("big")
        assert info is not None
        assert (info.signals, info.events) == (n, n)

    async def test_updated_at_follows_the_latest_record_time(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", [signal(1, at=T0 + 50)], [event(1, 1, at=T0 + 60)])
        info = await store.info("s1")
        assert info is not None
        assert (info.created_at, info.updated_at) == (T0, T0 + 60)
        await store.snapshot("s1", SnapshotRecord(1, 1, T0 + 70, b"s"))
        info = await store.info("s1")
        assert info is not None
        assert info.updated_at == T0 + 70

    # -- snapshots ----------------------------------------------------------------------------

    async def test_the_latest_snapshot_is_the_one_after_the_highest_signal(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 10), events(1, [2, 5, 10]))
        assert await store.latest_snapshot("s1") is None
        await store.snapshot("s1", SnapshotRecord(5, 2, T0 + 5, b"five"))
        await store.snapshot("s1", SnapshotRecord(10, 3, T0 + 10, _NOT_UTF8))
        await store.snapshot("s1", SnapshotRecord(7, 2, T0 + 11, b"seven, written late"))
        assert await store.latest_snapshot("s1") == SnapshotRecord(10, 3, T0 + 10, _NOT_UTF8)

    async def test_a_snapshot_at_the_same_seq_replaces_the_older_one(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 3), [])
        await store.snapshot("s1", SnapshotRecord(3, 0, T0 + 3, b"old"))
        await store.snapshot("s1", SnapshotRecord(3, 0, T0 + 4, b"new"))
        assert await store.latest_snapshot("s1") == SnapshotRecord(3, 0, T0 + 4, b"new")

    async def test_a_snapshot_of_records_not_stored_is_refused(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 3), events(1, [1]))
        with pytest.raises(UsageError, match="s1"):
            await store.snapshot("s1", SnapshotRecord(4, 1, T0, b"ahead of the log"))
        with pytest.raises(UsageError, match="s1"):
            await store.snapshot("s1", SnapshotRecord(3, 2, T0, b"ahead of the events"))
        assert await store.latest_snapshot("s1") is None
        await store.snapshot("s1", SnapshotRecord(0, 0, T0, b"initial"))
        assert await store.latest_snapshot("s1") == SnapshotRecord(0, 0, T0, b"initial")

    async def test_a_snapshot_of_an_unknown_session_is_a_usage_error(self, store: Store) -> None:
        with pytest.raises(UsageError, match="nope"):
            await store.snapshot("nope", SnapshotRecord(0, 0, T0, b"x"))

    # -- fork ---------------------------------------------------------------------------------

    async def _forkable(self, store: Store) -> tuple[list[SignalRecord], list[EventRecord]]:
        sigs = signals(1, 10)
        evs = events(1, [0, 1, 1, 2, 4, 4, 4, 7, 9, 10, 10])
        await store.create("src", meta={"title": "source"}, now=T0)
        await store.append("src", sigs[:5], evs[:7])
        await store.snapshot("src", SnapshotRecord(4, 5, T0 + 4, b"after 4"))
        await store.append("src", sigs[5:], evs[7:])
        await store.snapshot("src", SnapshotRecord(8, 8, T0 + 8, b"after 8"))
        return sigs, evs

    async def test_fork_copies_exactly_the_prefix_up_to_at_seq(self, store: Store) -> None:
        sigs, evs = await self._forkable(store)
        await store.fork("src", "copy", at_seq=6, now=T0 + 100)
        assert await self.log(store, "copy") == (sigs[:6], evs[:7])  # events caused by signals 0..6
        assert await store.latest_snapshot("copy") == SnapshotRecord(4, 5, T0 + 4, b"after 4")
        assert await store.info("copy") == SessionInfo(
            id="copy",
            created_at=T0 + 100,
            updated_at=T0 + 100,
            signals=6,
            events=7,
            parent="src",
            fork_seq=6,
            meta={"title": "source"},
        )
        assert await self.log(store, "src") == (sigs, evs)

    async def test_a_fork_is_independent_of_its_parent(self, store: Store) -> None:
        sigs, _ = await self._forkable(store)
        await store.fork("src", "copy", at_seq=3, now=T0 + 100)
        other = SignalRecord(4, T0 + 200, "other", b"the fork goes its own way")
        await store.append("copy", [other], [event(5, 4, data=b"fork event")])
        await store.append("src", [signal(11)], [event(12, 11)])
        assert await store.signals("copy") == [*sigs[:3], other]
        assert await store.signals("src") == [*sigs, signal(11)]
        assert await store.delete("src")
        assert await store.signals("copy") == [*sigs[:3], other]
        info = await store.info("copy")
        assert info is not None
        assert (info.parent, info.signals, info.events) == ("src", 4, 5)

    async def test_fork_at_zero_and_at_the_end(self, store: Store) -> None:
        sigs, evs = await self._forkable(store)
        await store.fork("src", "empty", at_seq=0, now=T0)
        assert await self.log(store, "empty") == ([], evs[:1])  # the event of no signal (cause 0)
        assert await store.latest_snapshot("empty") is None
        await store.fork("src", "whole", at_seq=10, now=T0)
        assert await self.log(store, "whole") == (sigs, evs)
        assert await store.latest_snapshot("whole") == SnapshotRecord(8, 8, T0 + 8, b"after 8")
        await store.append("whole", [signal(11)], [event(12, 11)])

    async def test_fork_refuses_bad_arguments(self, store: Store) -> None:
        await self._forkable(store)
        await store.create("taken", now=T0)
        with pytest.raises(UsageError, match="nope"):
            await store.fork("nope", "x", at_seq=0, now=T0)
        with pytest.raises(UsageError, match="taken"):
            await store.fork("src", "taken", at_seq=1, now=T0)
        with pytest.raises(UsageError, match="src"):
            await store.fork("src", "src", at_seq=1, now=T0)
        with pytest.raises(UsageError, match="11"):
            await store.fork("src", "x", at_seq=11, now=T0)
        with pytest.raises(UsageError):
            await store.fork("src", "x", at_seq=-1, now=T0)
        assert await store.info("x") is None

    async def test_a_fork_does_not_inherit_the_lease(self, store: Store) -> None:
        await self._forkable(store)
        await store.acquire("src", "w1", ttl=30, now=T0)
        await store.fork("src", "copy", at_seq=2, now=T0 + 1)
        await store.acquire("copy", "w2", ttl=30, now=T0 + 1)
        with pytest.raises(SessionLockedError):
            await store.acquire("src", "w2", ttl=30, now=T0 + 1)

    # -- prune ----------------------------------------------------------------------------------

    async def _three(self, store: Store) -> None:
        # created in one order, last updated in another: old (T0+10), mid (T0+20), new (T0+30)
        await store.create("new", now=T0)
        await store.create("old", now=T0 + 1)
        await store.create("mid", now=T0 + 2)
        await store.append("old", [signal(1, at=T0 + 10)], [])
        await store.append("mid", [signal(1, at=T0 + 20)], [])
        await store.append("new", [signal(1, at=T0 + 30)], [])

    async def test_prune_deletes_sessions_not_updated_since_older_than(self, store: Store) -> None:
        await self._three(store)
        assert await store.prune(older_than=100, now=T0 + 120) == ["old"]  # mid, updated at T0 + 20 = cutoff, stays
        assert [i.id for i in await store.sessions()] == ["new", "mid"]
        assert await store.prune(older_than=100, now=T0 + 100) == []

    async def test_prune_keeps_only_the_most_recently_updated(self, store: Store) -> None:
        await self._three(store)
        assert await store.prune(keep=1, now=T0 + 40) == ["old", "mid"]
        assert [i.id for i in await store.sessions()] == ["new"]
        assert await store.prune(keep=0, now=T0 + 40) == ["new"]
        assert await store.sessions() == []

    async def test_prune_by_age_and_count_together(self, store: Store) -> None:
        await self._three(store)
        assert await store.prune(older_than=100, keep=2, now=T0 + 115) == ["old"]
        await self._three_more(store)
        assert await store.prune(older_than=15, keep=3, now=T0 + 45) == ["mid", "a"]

    async def _three_more(self, store: Store) -> None:
        for sid, t in (("a", 25.0), ("b", 40.0)):
            await store.create(sid, now=T0)
            await store.append(sid, [signal(1, at=T0 + t)], [])

    async def test_prune_spares_sessions_with_a_live_lease(self, store: Store) -> None:
        await self._three(store)
        await store.acquire("old", "w1", ttl=50, now=T0 + 100)
        assert await store.prune(keep=0, now=T0 + 149) == ["mid", "new"]
        assert [i.id for i in await store.sessions()] == ["old"]
        assert await store.prune(keep=0, now=T0 + 150) == ["old"]  # the lease ended at T0 + 150

    async def test_prune_needs_a_criterion(self, store: Store) -> None:
        await self._three(store)
        with pytest.raises(UsageError):
            await store.prune(now=T0)
        with pytest.raises(UsageError):
            await store.prune(keep=-1, now=T0)
        with pytest.raises(UsageError):
            await store.prune(older_than=-5, now=T0)
        assert len(await store.sessions()) == 3

    # -- leases ---------------------------------------------------------------------------------

    async def test_a_lease_is_renewed_by_its_owner_and_refused_to_others(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.acquire("s1", "w1", ttl=30, now=T0)
        await store.acquire("s1", "w1", ttl=30, now=T0 + 20)  # renewed: now held until T0 + 50
        with pytest.raises(SessionLockedError) as caught:
            await store.acquire("s1", "w2", ttl=30, now=T0 + 45)
        assert (caught.value.session, caught.value.holder, caught.value.expires) == ("s1", "w1", T0 + 50)

    async def test_a_lease_can_be_taken_once_it_expires(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.acquire("s1", "w1", ttl=30, now=T0)
        with pytest.raises(SessionLockedError):
            await store.acquire("s1", "w2", ttl=30, now=T0 + 29.999)
        await store.acquire("s1", "w2", ttl=30, now=T0 + 30)
        with pytest.raises(SessionLockedError) as caught:
            await store.acquire("s1", "w1", ttl=30, now=T0 + 31)
        assert caught.value.holder == "w2"

    async def test_release_frees_the_lease_and_ignores_others(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.acquire("s1", "w1", ttl=30, now=T0)
        await store.release("s1", "w2")  # not the holder: nothing happens
        with pytest.raises(SessionLockedError):
            await store.acquire("s1", "w2", ttl=30, now=T0 + 1)
        await store.release("s1", "w1")
        await store.acquire("s1", "w2", ttl=30, now=T0 + 1)
        await store.release("nope", "w1")  # an unknown session: a no-op

    async def test_append_with_an_owner_needs_the_lease(self, store: Store) -> None:
        await store.create("s1", now=T0)
        with pytest.raises(SessionLockedError):
            await store.append("s1", signals(1, 1), [], owner="w1")  # nobody holds it
        await store.acquire("s1", "w1", ttl=30, now=T0)
        with pytest.raises(SessionLockedError) as caught:
            await store.append("s1", signals(1, 1), events(1, [1]), owner="w2")
        assert caught.value.holder == "w1"
        assert await self.log(store, "s1") == ([], [])
        await store.append("s1", signals(1, 1), events(1, [1]), owner="w1")
        await store.append("s1", signals(2, 2), [])  # without owner= the lease is not checked
        assert await store.signals("s1") == signals(1, 2)

    async def test_a_lease_taken_over_fences_its_old_holder(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.acquire("s1", "w1", ttl=10, now=T0)
        await store.append("s1", signals(1, 1), [], owner="w1")
        await store.acquire("s1", "w2", ttl=10, now=T0 + 15)
        with pytest.raises(SessionLockedError):
            await store.append("s1", signals(2, 2), [], owner="w1")
        await store.append("s1", signals(2, 2), [], owner="w2")
        assert await store.signals("s1") == signals(1, 2)

    async def test_a_lapsed_holder_writes_on_until_someone_takes_over(self, store: Store) -> None:
        await store.create("s1", now=T0)
        await store.acquire("s1", "w1", ttl=10, now=T0)
        # append has no clock: the lease is checked by name; fencing happens when another owner acquires
        await store.append("s1", signals(1, 1), [], owner="w1")
        await store.acquire("s1", "w1", ttl=10, now=T0 + 60)  # and the holder may renew late
        await store.append("s1", signals(2, 2), [], owner="w1")

    async def test_a_dead_holder_of_this_host_is_taken_over_at_once(self, store: Store, dead_owner: str) -> None:
        await store.create("s1", now=T0)
        await store.acquire("s1", dead_owner, ttl=3600, now=T0)
        await store.acquire("s1", "w2", ttl=30, now=T0 + 1)
        await store.create("s2", now=T0)
        elsewhere = "some-other-host.invalid:1:abcd"
        await store.acquire("s2", elsewhere, ttl=3600, now=T0)
        with pytest.raises(SessionLockedError):
            await store.acquire("s2", "w2", ttl=30, now=T0 + 1)

    async def test_lease_arguments_are_checked(self, store: Store) -> None:
        with pytest.raises(UsageError, match="nope"):
            await store.acquire("nope", "w1", ttl=30, now=T0)
        await store.create("s1", now=T0)
        for ttl in (0, -1, float("inf"), float("nan")):
            with pytest.raises(UsageError):
                await store.acquire("s1", "w1", ttl=ttl, now=T0)
        with pytest.raises(UsageError):
            await store.acquire("s1", "", ttl=30, now=T0)

    # -- properties -------------------------------------------------------------------------------

    @settings(
        max_examples=25,
        deadline=None,
        # one store serves every example (each uses sessions of its own), and each StoreKit
        # subclass calls this method with its own store: both are intended
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
            HealthCheck.too_slow,
        ],
    )
    @given(data=st.data())
    async def test_random_interleavings_of_append_fork_and_read_preserve_every_byte(
        self, store: Store, data: st.DataObject
    ) -> None:
        run = next(_hypothesis_runs)
        model: dict[str, tuple[list[SignalRecord], list[EventRecord]]] = {}
        names = itertools.count()
        clock = itertools.count()

        async def create() -> str:
            sid = f"h{run}-{next(names)}"
            await store.create(sid, now=T0 + next(clock))
            model[sid] = ([], [])
            return sid

        await create()
        for _ in range(data.draw(st.integers(1, 14), label="steps")):
            if not model:
                await create()
            sid = data.draw(st.sampled_from(sorted(model)), label="session")
            sigs, evs = model[sid]
            op = data.draw(st.sampled_from(["append", "append", "append", "fork", "read", "create", "delete"]))
            if op == "append":
                n = data.draw(st.integers(0, 6), label="signals")
                first = len(sigs) + 1
                new_sigs = [
                    SignalRecord(
                        first + i, T0 + next(clock), data.draw(st.text(max_size=6)), data.draw(st.binary(max_size=24))
                    )
                    for i in range(n)
                ]
                low = evs[-1].cause if evs else 0
                causes = sorted(data.draw(st.lists(st.integers(low, len(sigs) + n), max_size=6), label="causes"))
                new_evs = [
                    EventRecord(
                        len(evs) + 1 + i,
                        cause,
                        T0 + next(clock),
                        data.draw(st.none() | st.text(max_size=5)),
                        "e",
                        data.draw(st.binary(max_size=24)),
                    )
                    for i, cause in enumerate(causes)
                ]
                await store.append(sid, new_sigs, new_evs)
                sigs.extend(new_sigs)
                evs.extend(new_evs)
            elif op == "fork":
                at = data.draw(st.integers(0, len(sigs)), label="at_seq")
                new = f"h{run}-{next(names)}"
                await store.fork(sid, new, at_seq=at, now=T0 + next(clock))
                model[new] = (sigs[:at], [e for e in evs if e.cause <= at])
            elif op == "read":
                after = data.draw(st.integers(0, len(sigs) + 2), label="after")
                limit = data.draw(st.none() | st.integers(0, 8), label="limit")
                end = None if limit is None else after + limit
                assert await store.signals(sid, after=after, limit=limit) == sigs[after:end]
                after = data.draw(st.integers(0, len(evs) + 2), label="event_after")
                end = None if limit is None else after + limit
                assert await store.events(sid, after=after, limit=limit) == evs[after:end]
            elif op == "create":
                await create()
            else:
                assert await store.delete(sid)
                del model[sid]
        for sid, (sigs, evs) in model.items():
            assert await self.log(store, sid) == (sigs, evs)
            info = await store.info(sid)
            assert info is not None
            assert (info.signals, info.events) == (len(sigs), len(evs))
        listed = {i.id for i in await store.sessions() if i.id.startswith(f"h{run}-")}
        assert listed == set(model)
