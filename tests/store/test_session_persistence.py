"""Agent sessions kept in a store: restore, snapshots, fork, retention, durability, and bad data."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from oturn import CorruptRecordError, SchemaVersionError, SessionLockedError, UsageError
from oturn.agent.agent import Agent
from oturn.agent.codec import agent_codec
from oturn.agent.events import ApprovalRequest, SessionResumed, ToolExit, TurnFinished
from oturn.agent.session import Session
from oturn.agent.signals import ModelDone
from oturn.agent.turn import TurnReducer
from oturn.runtime.journal import Journal
from oturn.store.memory import MemoryStore
from oturn.store.protocol import Store
from oturn.store.replay import read_signals, replay, verify
from oturn.store.sessions import delete, fork, list_sessions, parse_duration, prune, readable_prefix, salvage
from oturn.store.sqlite import SQLiteStore
from oturn.testing.fake_model import FakeModel
from oturn.tools.tool import tool

F = FakeModel
CODEC = agent_codec()


def script() -> list[list[Any]]:
    return [
        [F.reasoning("hm"), F.text("Looking up."), F.tool_call("lookup", {"city": "Oslo"}, id="c1"), F.usage(10, 5)],
        [F.tool_call("save", {"text": "note"}, id="c2"), F.usage(3, 1)],
        [F.text("Done."), F.usage(4, 2)],
        [F.text("Bye.")],
        [F.text("More.")],
    ]


def make_agent(skip: int = 0, *, probe: list[int] | None = None, store: Store | None = None) -> Agent:
    @tool
    async def lookup(city: str) -> str:
        """Look a city up."""
        if probe is not None and store is not None:
            info = await store.info("s1")
            assert info is not None
            probe.append(info.signals)  # what was durable when the tool started
        return f"{city}: sunny"

    @tool(approval="ask")
    def save(text: str) -> str:
        """Save a note."""
        return "saved"

    return Agent(FakeModel(script()[skip:]), tools=[lookup, save])


async def converse(session: Session, *inputs: str, approve: bool = True) -> None:
    with anyio.fail_after(10):
        async with session.subscribe(types=[TurnFinished, ApprovalRequest]) as sub:
            for text in inputs:
                await session.send(text)
            finished = 0
            async for envelope in sub:
                event = envelope.event
                if isinstance(event, ApprovalRequest):
                    if not approve:
                        return
                    await session.approve(event.id)
                elif isinstance(event, TurnFinished):
                    finished += 1
                    if finished == len(inputs):
                        return


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    async with s:
        yield s


async def pure_state(store: Store, session: str, upto: int | None = None) -> bytes:
    """The state reduced from the first ``upto`` logged signals by a fresh reducer (no snapshot)."""
    reducer = TurnReducer(make_agent().turn_config)
    state = reducer.initial()
    for _, signal in await read_signals(store, session, CODEC, upto=upto):
        state = reducer(state, signal).state
    return CODEC.encode(state)


# -- restore and snapshots ---------------------------------------------------------------------


async def test_a_reopened_session_has_the_state_it_had_and_goes_on(store: Store) -> None:
    async with make_agent().session(id="s1", store=store, snapshot_every=3) as session:
        await converse(session, "hello", "again")
        before = CODEC.encode(session.state)
    async with make_agent(skip=4).session(id="s1", store=store, snapshot_every=3) as session:
        assert session.restored
        restored = session.nucleus.restored
        assert restored is not None
        assert CODEC.encode(session.state) == before == await pure_state(store, "s1")
        assert restored.snapshot_seq > 0  # restore = the latest snapshot + the tail
        assert restored.replayed == restored.signal_seq - restored.snapshot_seq < 3
        async with session.subscribe(from_seq=1) as sub:  # older events come from the store
            seen = [envelope.seq async for envelope in _until(sub, restored.event_seq)]
        assert seen == list(range(1, restored.event_seq + 1))
        await converse(session, "more")
        assert session.state.turns == 3
    reducer = TurnReducer(make_agent().turn_config)
    assert await verify(store, "s1", reducer, reducer.initial(), CODEC) is None


async def _until(sub: Any, last: int) -> AsyncIterator[Any]:
    async for envelope in sub:
        yield envelope
        if envelope.seq >= last:
            return


async def test_an_idle_session_reopens_without_a_resumed_signal(store: Store) -> None:
    async with make_agent().session(id="s1", store=store) as session:
        await converse(session, "hello")
        signals = session.statistics().signals_reduced
    async with make_agent().session(id="s1", store=store) as session:
        assert session.restored
    info = await store.info("s1")
    assert info is not None
    assert info.signals == signals  # nothing was in flight: no Resumed


async def test_an_unreadable_snapshot_is_ignored_and_the_whole_log_replayed() -> None:
    store = MemoryStore()
    async with make_agent().session(id="s1", store=store, snapshot_every=2) as session:
        await converse(session, "hello")
        before = CODEC.encode(session.state)
    snapshot = await store.latest_snapshot("s1")
    assert snapshot is not None
    info = await store.info("s1")
    assert info is not None
    await store.snapshot("s1", msgspec.structs.replace(snapshot, data=b'{"phase": 42}'))
    journal = Journal(store, "s1", CODEC)
    reducer = TurnReducer(make_agent().turn_config)
    restored = await journal.restore(reducer, reducer.initial(), now=1.0)
    assert journal.snapshot_problem is not None
    assert "ignored" in journal.snapshot_problem
    assert (restored.snapshot_seq, restored.replayed) == (0, info.signals)
    assert CODEC.encode(restored.state) == before


async def test_events_half_written_before_a_crash_are_completed_on_restore() -> None:
    """The loop waits for a full ``block`` subscriber between two events of one signal; the
    writer commits what it has; the process dies. On restore the journal writes the rest."""
    live = MemoryStore()
    crashed = MemoryStore()
    session = make_agent().session(id="s1", store=live, durability="batched")
    async with session, session.subscribe(policy="block", buffer=1) as sub:
        await session.send("hello")  # message_sent, turn_started, state_changed: one signal
        await anyio.sleep(0.05)
        info = await live.info("s1")
        assert info is not None
        assert (info.signals, info.events) == (1, 2)  # torn: the third event waits for `sub`
        await _copy(live, "s1", crashed)
        async for envelope in sub:
            if isinstance(envelope.event, ToolExit):
                break
    async with make_agent().session(id="s1", store=crashed) as session:
        restored = session.nucleus.restored
        assert restored is not None
        assert (restored.signal_seq, restored.event_seq) == (1, 3)
        await converse(session, "next")
    reducer = TurnReducer(make_agent().turn_config)
    assert await verify(crashed, "s1", reducer, reducer.initial(), CODEC) is None


async def _copy(source: Store, session: str, target: Store) -> None:
    """``target`` gets what ``source`` holds now (what a crash would leave on disk)."""
    info = await source.info(session)
    assert info is not None
    await target.create(session, meta=info.meta, now=info.created_at)
    await target.append(session, await source.signals(session), await source.events(session))
    snapshot = await source.latest_snapshot(session)
    if snapshot is not None:
        await target.snapshot(session, snapshot)


@pytest.mark.parametrize("durability", ["effects", "every", "batched"])
async def test_every_durability_restores_the_same_session(durability: str) -> None:
    store = MemoryStore()
    async with make_agent().session(id="s1", store=store, durability=durability) as session:
        await converse(session, "hello")
        before = CODEC.encode(session.state)
    async with make_agent().session(id="s1", store=store) as session:
        assert CODEC.encode(session.state) == before


async def test_with_effects_durability_a_tool_runs_only_once_its_cause_is_durable() -> None:
    store = MemoryStore()
    probe: list[int] = []
    async with make_agent(probe=probe, store=store).session(id="s1", store=store) as session:
        await converse(session, "hello")
    signals = await read_signals(store, "s1", CODEC)
    asked = next(r.seq for r, s in signals if isinstance(s, ModelDone) and s.call == "t1.1")
    assert probe
    assert probe[0] >= asked


# -- fork, list, delete, prune -------------------------------------------------------------------


async def test_a_fork_at_any_seq_restores_the_prefix_state(store: Store) -> None:
    async with make_agent().session(id="s1", store=store) as session:
        await converse(session, "hello", "again")
    info = await store.info("s1")
    assert info is not None
    for seq in range(info.signals + 1):
        new = await fork(store, "s1", at_seq=seq, new=f"f{seq}", now=5.0)
        forked = await store.info(new)
        assert forked is not None
        assert (forked.parent, forked.fork_seq, forked.signals) == ("s1", seq, seq)
        journal = Journal(store, new, CODEC)
        reducer = TurnReducer(make_agent().turn_config)
        restored = await journal.restore(reducer, reducer.initial(), now=6.0)
        assert CODEC.encode(restored.state) == await pure_state(store, "s1", upto=seq)
        await store.release(new, journal.owner)
    generated = await fork(store, "s1", at_seq=1)
    assert generated.startswith("s1-fork-")
    with pytest.raises(UsageError, match="no session"):
        await fork(store, "nope", at_seq=0)


async def test_a_fork_taken_while_an_approval_waited_opens_and_continues(store: Store) -> None:
    async with make_agent().session(id="s1", store=store) as session:
        await converse(session, "hello")
    signals = await read_signals(store, "s1", CODEC)
    asked = next(r.seq for r, s in signals if isinstance(s, ModelDone) and s.call == "t1.2")
    await fork(store, "s1", at_seq=asked, new="branch")
    async with make_agent(skip=2).session(id="branch", store=store) as session:
        pending = [c.key for c in session.state.calls if c.status == "approval"]
        assert pending == ["t1.2.0"]
        async with session.subscribe(types=[TurnFinished, SessionResumed]) as sub:
            await session.deny(pending[0], "changed my mind")
            with anyio.fail_after(10):
                async for envelope in sub:
                    if isinstance(envelope.event, TurnFinished):
                        assert envelope.event.text == "Done."
                        break
    # the branch went its own way; the original is untouched
    original = await store.info("s1")
    assert original is not None
    assert original.signals == len(signals)
    reducer = TurnReducer(make_agent().turn_config)
    assert await verify(store, "branch", reducer, reducer.initial(), CODEC) is None


async def test_sessions_are_listed_deleted_and_pruned(store: Store) -> None:
    for n, sid in enumerate(["a", "b", "c", "d"]):
        await store.create(sid, now=100.0 * n)
    assert [i.id for i in await list_sessions(store)] == ["d", "c", "b", "a"]  # most recent first
    assert await delete(store, "d")
    assert not await delete(store, "d")
    assert await prune(store, older_than=250.0, now=300.0) == ["a"]  # updated at 0 < 300 - 250
    await store.acquire("b", "someone:1:x", ttl=1000.0, now=300.0)
    assert await prune(store, keep=0, now=300.0) == ["c"]  # "b" has a live lease
    assert [i.id for i in await list_sessions(store)] == ["b"]


def test_durations_read_like_people_write_them() -> None:
    assert parse_duration("90") == 90.0
    assert parse_duration("90s") == 90.0
    assert parse_duration("15m") == 900.0
    assert parse_duration("12h") == 43200.0
    assert parse_duration("30d") == 30 * 86400.0
    assert parse_duration("2w") == 14 * 86400.0
    assert parse_duration("1d12h") == 1.5 * 86400.0
    assert parse_duration("1.5H") == 5400.0
    for bad in ("", "d", "30x", "-1d", "1d nonsense"):
        with pytest.raises(UsageError, match="duration"):
            parse_duration(bad)


# -- bad data ------------------------------------------------------------------------------------


async def _stored_session(path: Path) -> int:
    async with SQLiteStore(path) as store, make_agent().session(id="s1", store=store) as session:
        await converse(session, "hello", "again")
        return session.statistics().signals_reduced


def _damage(path: Path, sql: str, *args: Any) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("damage", "type", "message"),
    [
        (b"\x8f\x00garbage\xff", None, r"signal record 5 \('tool_finished'\) is unreadable: JSON is malformed"),
        (b'{"type":"tool_finished","ca', None, r"signal record 5 \('tool_finished'\) is unreadable"),
        (b'{"type":"martian","x":1}', "martian", r"signal record 5 \('martian'\) is of an unknown type"),
        (b'{"type":"martian","x":1}', None, r"signal record 5 \('tool_finished'\) is unreadable"),
        ("text, not bytes", None, "signal 5 is unreadable"),
        (None, None, "signal 5 is unreadable"),
    ],
    ids=["garbage", "truncated", "unknown-type", "unknown-data", "text", "null"],
)
async def test_a_damaged_signal_is_named_and_the_readable_prefix_salvaged(
    tmp_path: Path, damage: object, type: str | None, message: str
) -> None:
    path = tmp_path / "s.db"
    total = await _stored_session(path)
    _damage(
        path, "UPDATE signals SET data = ?, type = coalesce(?, type) WHERE session = 's1' AND seq = 5", damage, type
    )
    with pytest.raises(CorruptRecordError, match=message) as caught:
        async with make_agent().session(id="s1", store=f"sqlite:///{path}"):
            pass
    assert (caught.value.session, caught.value.seq) == ("s1", 5)
    assert "session 's1', seq 5" in str(caught.value)
    # the failed open gave its lease back: opening again fails the same way, not as "locked"
    with pytest.raises(CorruptRecordError):
        async with make_agent().session(id="s1", store=f"sqlite:///{path}"):
            pass
    async with SQLiteStore(path) as store:
        upto, problem = await readable_prefix(store, "s1", CODEC)
        assert upto == 4
        assert problem is not None
        assert "seq 5" in problem
        saved = await salvage(store, "s1", CODEC)
        assert (saved.source, saved.session, saved.upto) == ("s1", "s1-salvaged", 4)
        original = await store.info("s1")
        assert original is not None
        assert original.signals == total  # the damaged session is kept as it was
        expected = await pure_state(store, "s1", upto=4)
    async with make_agent().session(id="s1-salvaged", store=f"sqlite:///{path}") as session:
        restored = session.nucleus.restored
        assert restored is not None
        assert CODEC.encode(restored.state) == expected
        assert session.restored


async def test_a_damaged_event_cuts_the_salvaged_prefix_before_its_cause(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _stored_session(path)
    async with SQLiteStore(path) as store:
        events = await store.events("s1")
    victim = events[10]
    _damage(path, "UPDATE events SET data = ? WHERE session = 's1' AND seq = ?", b'{"type":"turn_', victim.seq)
    async with SQLiteStore(path) as store:
        upto, problem = await readable_prefix(store, "s1", CODEC)
        assert upto == victim.cause - 1
        assert problem is not None
        assert f"event record {victim.seq}" in problem
        # the state does not depend on events: the session itself still opens
        async with make_agent(skip=4).session(id="s1", store=store) as session:
            assert session.restored


async def test_a_database_of_a_newer_schema_is_refused_naming_the_versions(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _stored_session(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaVersionError, match="schema version 99") as caught:
        async with make_agent().session(id="s1", store=f"sqlite:///{path}"):
            pass
    assert caught.value.found == 99


async def test_a_second_writer_of_a_session_is_refused_while_the_first_holds_it() -> None:
    store = MemoryStore()
    async with make_agent().session(id="s1", store=store):
        with pytest.raises(SessionLockedError, match="s1"):
            async with make_agent().session(id="s1", store=store):
                pass
    async with make_agent().session(id="s1", store=store) as session:  # released on close
        assert session.restored


async def test_replay_agrees_with_restore_at_every_prefix() -> None:
    store = MemoryStore()
    async with make_agent().session(id="s1", store=store) as session:
        await converse(session, "hello", "again")
    info = await store.info("s1")
    assert info is not None
    reducer = TurnReducer(make_agent().turn_config)
    for upto in range(0, info.signals + 1, 3):
        result = await replay(store, "s1", reducer, reducer.initial(), CODEC, upto=upto)
        assert CODEC.encode(result.state) == await pure_state(store, "s1", upto=upto)
