"""Properties of persistence over random signal logs (Hypothesis, on the in-memory store).

- a snapshot at any point plus the replay of the tail gives the state of the full replay;
- a fork at any seq restores the reduction of that prefix;
- an export imported into another store and exported again is byte-identical;
- a real nucleus's log, replayed, reproduces every event it published, byte for byte.

Agent logs come from ``turn_strategies.next_signal`` (plausible signals given the state,
stale ids included); generic ones from the demo reducer of ``oturn.testing.strategies``
(several events per signal, reducers that raise, terminal transitions).
"""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))

from turn_strategies import Run, Seen, configs, next_signal

from oturn.agent.codec import agent_codec
from oturn.agent.effects import CallModel, DeliverChoice, RunTool
from oturn.agent.state import AgentState
from oturn.agent.turn import TurnConfig, TurnReducer
from oturn.core.codec import Codec
from oturn.core.messages import Signal
from oturn.runtime.effects import EffectContext
from oturn.runtime.journal import Journal
from oturn.runtime.nucleus import Nucleus
from oturn.store.memory import MemoryStore
from oturn.store.records import SignalRecord, SnapshotRecord
from oturn.store.replay import reduce_log, replay, verify
from oturn.store.transfer import export_jsonl, import_jsonl
from oturn.testing.strategies import (
    Add,
    Boom,
    Burst,
    Delta,
    DemoState,
    Quiet,
    Say,
    Stop,
    Stopped,
    Stream,
    Tick,
    Total,
    demo_reducer,
    demo_signal_lists,
)

CODEC = agent_codec()
DEMO_CODEC: Codec[DemoState] = Codec(
    signals=[Add, Say, Stream, Burst, Quiet, Boom, Stop], events=[Total, Delta, Tick, Stopped], state=DemoState
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def canonical(state: Any) -> bytes:
    """The state's encoding with sets sorted (a frozenset's order follows the hash seed and its history)."""
    return msgspec.json.encode(state, order="deterministic")


@st.composite
def agent_logs(draw: st.DrawFn, max_size: int = 40) -> tuple[TurnConfig, list[Signal]]:
    """A turn configuration and a plausible signal sequence for it."""
    config = draw(configs())
    run = Run(config)
    seen = Seen()
    n = draw(st.integers(min_value=0, max_value=max_size), label="signals")
    for _ in range(n):
        seen.note(run.state)
        run(draw(next_signal(run.state, seen), label="signal"))
    return config, run.signals


async def stored_agent_log(config: TurnConfig, signals: list[Signal], session: str = "s") -> MemoryStore:
    """A store holding ``signals`` and the events the nucleus would have published for them."""
    store = MemoryStore()
    reducer = TurnReducer(config)
    records = [
        SignalRecord(i + 1, 1000.0 + i * 0.25, s.__struct_config__.tag, CODEC.encode(s))  # type: ignore[arg-type]
        for i, s in enumerate(signals)
    ]
    result = reduce_log(session, reducer, reducer.initial(), CODEC, list(zip(records, signals, strict=True)))
    await store.create(session, meta={"k": "v"}, now=999.0)
    await store.append(session, records, result.records)
    return store


def prefix_state(config: TurnConfig, signals: list[Signal], upto: int) -> AgentState:
    reducer = TurnReducer(config)
    state = reducer.initial()
    for signal in signals[:upto]:
        state = reducer(state, signal).state
    return state


@SETTINGS
@given(log=agent_logs(), data=st.data())
def test_a_snapshot_and_the_replay_of_the_tail_equal_the_full_replay(
    log: tuple[TurnConfig, list[Signal]], data: st.DataObject
) -> None:
    config, signals = log
    at = data.draw(st.integers(min_value=0, max_value=len(signals)), label="snapshot at")

    async def check() -> None:
        store = await stored_agent_log(config, signals)
        reducer = TurnReducer(config)
        prefix = reduce_log("s", reducer, reducer.initial(), CODEC, [])
        events = await store.events("s")
        event_seq = len([e for e in events if e.cause <= at])
        snapshot_state = prefix_state(config, signals, at)
        if at:
            await store.snapshot("s", SnapshotRecord(at, event_seq, 2000.0, CODEC.encode(snapshot_state)))
        journal = Journal(store, "s", CODEC)
        restored = await journal.restore(reducer, reducer.initial(), now=3000.0)
        full = await replay(store, "s", reducer, reducer.initial(), CODEC)
        assert (restored.snapshot_seq, restored.replayed) == (at, len(signals) - at)
        assert (restored.signal_seq, restored.event_seq) == (len(signals), len(events))
        assert restored.state == full.state == prefix_state(config, signals, len(signals))
        assert canonical(restored.state) == canonical(full.state)
        assert not prefix.records
        await store.release("s", journal.owner)

    asyncio.run(check())


@SETTINGS
@given(log=agent_logs(), data=st.data())
def test_a_fork_at_any_seq_restores_the_reduction_of_the_prefix(
    log: tuple[TurnConfig, list[Signal]], data: st.DataObject
) -> None:
    config, signals = log
    at = data.draw(st.integers(min_value=0, max_value=len(signals)), label="fork at")

    async def check() -> None:
        store = await stored_agent_log(config, signals)
        await store.fork("s", "f", at_seq=at, now=5000.0)
        reducer = TurnReducer(config)
        restored = await Journal(store, "f", CODEC).restore(reducer, reducer.initial(), now=5001.0)
        expected = prefix_state(config, signals, at)
        assert restored.state == expected
        assert canonical(restored.state) == canonical(expected)
        assert restored.signal_seq == at
        # the fork's events are the parent's events of that prefix, and it replays to them
        assert await verify(store, "f", reducer, reducer.initial(), CODEC) is None
        parent = await store.events("s")
        assert await store.events("f") == [e for e in parent if e.cause <= at]

    asyncio.run(check())


@SETTINGS
@given(log=agent_logs(), snapshot=st.booleans(), upto=st.none() | st.integers(min_value=0, max_value=40))
def test_an_export_imported_and_exported_again_is_byte_identical(
    log: tuple[TurnConfig, list[Signal]], snapshot: bool, upto: int | None
) -> None:
    config, signals = log

    async def check() -> None:
        store = await stored_agent_log(config, signals)
        if snapshot and signals:
            state = prefix_state(config, signals, len(signals) // 2)
            events = len([e for e in await store.events("s") if e.cause <= len(signals) // 2])
            await store.snapshot("s", SnapshotRecord(len(signals) // 2, events, 1500.0, CODEC.encode(state)))
        first = io.BytesIO()
        await export_jsonl(store, "s", CODEC, first, snapshots=snapshot, upto=upto)
        other = MemoryStore()
        await import_jsonl(other, first.getvalue(), CODEC, session="t")
        second = io.BytesIO()
        await export_jsonl(other, "t", CODEC, second, snapshots=snapshot)
        a, b = first.getvalue().splitlines(), second.getvalue().splitlines()
        assert a[1:] == b[1:]
        assert a[0].replace(b'"session":"s"', b'"session":"t"') == b[0]
        last = len(signals) if upto is None else min(upto, len(signals))
        assert await other.signals("t") == (await store.signals("s"))[:last]
        assert await other.events("t") == [e for e in await store.events("s") if e.cause <= last]

    asyncio.run(check())


@settings(SETTINGS, max_examples=40)
@given(signals=demo_signal_lists(max_size=25, stop=None), stop_on_error=st.booleans())
def test_the_log_of_a_real_nucleus_replays_to_every_event_it_published(
    signals: list[Signal], stop_on_error: bool
) -> None:
    policy = "stop" if stop_on_error else "continue"

    async def check() -> None:
        store = MemoryStore()
        journal = Journal(store, "g", DEMO_CODEC, snapshot_every=4)
        async with Nucleus(demo_reducer, DemoState(), session="g", journal=journal, on_reducer_error=policy) as n:
            for signal in signals:
                if n.closed:
                    break
                await n.send(signal)
        result = await replay(store, "g", demo_reducer, DemoState(), DEMO_CODEC, on_reducer_error=policy)
        assert await verify(store, "g", demo_reducer, DemoState(), DEMO_CODEC, result=result) is None
        assert result.envelopes == n.history()  # what subscribers saw
        assert result.state == n.state

    asyncio.run(check())


async def _noop(effect: Any, ctx: EffectContext[Any]) -> None:
    return None


@settings(SETTINGS, max_examples=40)
@given(log=agent_logs(max_size=30))
def test_an_agent_nucleus_log_replays_to_every_event_it_published(log: tuple[TurnConfig, list[Signal]]) -> None:
    """Random agent signals through a real nucleus (effects answered by no-op handlers, so their
    outcomes and the fed-back ``StartQueued`` land in the log too): replay reproduces everything."""
    config, signals = log

    async def check() -> None:
        store = MemoryStore()
        reducer = TurnReducer(config)
        journal = Journal(store, "a", CODEC, snapshot_every=5)
        handlers: Any = {CallModel: _noop, RunTool: _noop, DeliverChoice: _noop}
        async with Nucleus(reducer, reducer.initial(), session="a", journal=journal, handlers=handlers) as n:
            for signal in signals:
                await n.send(signal)
        state = n.state
        assert await verify(store, "a", reducer, reducer.initial(), CODEC) is None
        result = await replay(store, "a", reducer, reducer.initial(), CODEC)
        assert result.state == state
        restored = await Journal(store, "a", CODEC).restore(reducer, reducer.initial(), now=1e12)
        assert restored.state == state

    asyncio.run(check())
