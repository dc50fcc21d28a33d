"""Replay: a stored signal log, reduced again with no model and no tools, reproduces every stored event."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from oturn import CorruptRecordError, ReducerContractError, UsageError
from oturn.agent.agent import Agent
from oturn.agent.codec import agent_codec
from oturn.agent.events import ApprovalRequest, ChoiceRequest, TurnFinished
from oturn.agent.session import Session
from oturn.agent.turn import TurnReducer
from oturn.core.builtins import ErrorEvent
from oturn.core.codec import Codec
from oturn.runtime.journal import Journal
from oturn.runtime.nucleus import Nucleus
from oturn.store.memory import MemoryStore
from oturn.store.protocol import Store
from oturn.store.records import EventRecord
from oturn.store.replay import compare, render_transcript, replay, replay_transcript, verify
from oturn.store.sessions import AGENT_META_KEY, agent_meta, agent_reducer
from oturn.store.sqlite import SQLiteStore
from oturn.testing.fake_model import FakeModel
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
)
from oturn.tools.context import ToolContext
from oturn.tools.tool import tool

F = FakeModel
CODEC = agent_codec()
DEMO_CODEC: Codec[DemoState] = Codec(
    signals=[Add, Say, Stream, Burst, Quiet, Boom, Stop], events=[Total, Delta, Tick, Stopped], state=DemoState
)


def scenario(*, batch: bool = True, skip: int = 0) -> tuple[Agent, FakeModel, list[str]]:
    """An agent whose two turns use reasoning, text, parallel tools, an approval, a choice and progress.

    ``skip`` leaves out the first responses of the script (used before a restart).
    """
    ran: list[str] = []

    @tool
    def lookup(city: str) -> str:
        """Look a city up."""
        ran.append(f"lookup {city}")
        return f"{city}: sunny"

    @tool(approval="ask")
    def save(text: str) -> str:
        """Save a note (asks first)."""
        ran.append(f"save {text}")
        return "saved"

    @tool
    async def pick(ctx: ToolContext) -> str:
        """Ask the user to pick."""
        ran.append("pick")
        await ctx.progress("choosing…")
        value = await ctx.choose("which one?", {"a": "A", "b": "B"})
        return f"picked {value}"

    model = FakeModel(
        [
            [
                F.reasoning("Two lookups, in parallel."),
                F.text("Looking up."),
                F.tool_call("lookup", {"city": "Oslo"}, id="c1", fragments=3),
                F.tool_call("lookup", {"city": "Rome"}, id="c2"),
                F.usage(10, 5, cost=0.001),
            ],
            [F.tool_call("save", {"text": "a note"}, id="c3"), F.tool_call("pick", {}, id="c4"), F.usage(12, 4)],
            [F.text("All done, with a `backtick`."), F.usage(20, 3)],
            [F.text("Second answer."), F.usage(5, 2)],
        ][skip:],
        batch=batch,
    )
    agent = Agent(model, tools=[lookup, save, pick], system="be brief")
    return agent, model, ran


async def converse(session: Session, *inputs: str) -> None:
    """Send ``inputs`` back to back (the later ones queue) and answer every request until all turns end."""
    with anyio.fail_after(10):
        await _converse(session, inputs)


async def _converse(session: Session, inputs: tuple[str, ...]) -> None:
    async with session.subscribe(types=[TurnFinished, ApprovalRequest, ChoiceRequest]) as sub:
        for text in inputs:
            await session.send(text)
        finished = 0
        async for envelope in sub:
            event = envelope.event
            if isinstance(event, ApprovalRequest):
                await session.approve(event.id)
            elif isinstance(event, ChoiceRequest):
                await session.choose(event.id, "b")
            elif isinstance(event, TurnFinished):
                finished += 1
                if finished == len(inputs):
                    return


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    async with s:
        yield s


async def recorded(store: Store, *, batch: bool = True) -> tuple[Agent, FakeModel, list[str], bytes]:
    agent, model, ran = scenario(batch=batch)
    async with agent.session(id="s1", store=store) as session:
        await converse(session, "first question", "second question")
        state = CODEC.encode(session.state)
    return agent, model, ran, state


@pytest.mark.parametrize("batch", [True, False], ids=["ready", "per-delta"])
async def test_a_replayed_agent_session_reproduces_every_stored_event_byte_for_byte(store: Store, batch: bool) -> None:
    agent, model, ran, state = await recorded(store, batch=batch)
    calls, runs = len(model.calls), list(ran)
    reducer = TurnReducer(agent.turn_config)

    result = await replay(store, "s1", reducer, reducer.initial(), CODEC)

    info = await store.info("s1")
    assert info is not None
    assert result.signals == info.signals
    assert len(result.records) == info.events > 40
    assert CODEC.encode(result.state) == state
    assert await verify(store, "s1", reducer, reducer.initial(), CODEC, result=result) is None
    assert await verify(store, "s1", reducer, reducer.initial(), CODEC) is None
    # no model was called, no tool ran
    assert (len(model.calls), ran) == (calls, runs)
    # the envelopes are what subscribers saw: seq from 1, cause = the signal, at = its logged time
    stored = await store.events("s1")
    signals = {r.seq: r.at for r in await store.signals("s1")}
    assert [e.seq for e in result.envelopes] == list(range(1, len(stored) + 1))
    for envelope, record in zip(result.envelopes, stored, strict=True):
        assert (envelope.cause, envelope.at, envelope.turn) == (record.cause, record.at, record.turn)
        assert envelope.at == signals[envelope.cause]
        assert envelope.session == "s1"


async def test_the_session_records_its_turn_configuration_and_replay_rebuilds_the_reducer(store: Store) -> None:
    agent, _, _, _ = await recorded(store)
    info = await store.info("s1")
    assert info is not None
    assert AGENT_META_KEY in info.meta
    assert info.meta == agent_meta(agent)
    rebuilt = agent_reducer(info.meta)
    original = agent.turn_config
    for name in ("model", "system", "max_steps", "input_policy", "max_parallel_tools", "approval_timeout"):
        assert getattr(rebuilt.config, name) == getattr(original, name)
    assert rebuilt.config.tools == original.tools
    for name in ("lookup", "save", "pick", "other"):
        for always in (frozenset(), frozenset({"save"})):
            assert rebuilt.config.decide(name, always) == original.decide(name, always)
    assert await verify(store, "s1", rebuilt, rebuilt.initial(), CODEC) is None


def test_a_session_without_a_recorded_configuration_has_no_reducer_to_rebuild() -> None:
    with pytest.raises(UsageError, match="does not record"):
        agent_reducer({})
    with pytest.raises(UsageError, match="unreadable"):
        agent_reducer({AGENT_META_KEY: "{not json"})
    with pytest.raises(UsageError, match="version 7"):
        agent_reducer({AGENT_META_KEY: '{"version": 7' + agent_meta(scenario()[0])[AGENT_META_KEY][12:]})


async def test_a_session_resumed_after_a_restart_still_replays_exactly(store: Store) -> None:
    agent, _, _ = scenario()
    async with agent.session(id="s1", store=store) as session, session.subscribe(types=[ApprovalRequest]) as sub:
        await session.send("first question")
        async for _ in sub:
            break  # the process "stops" while the approval waits
    again, _, _ = scenario(skip=2)  # two responses were streamed before the restart
    async with again.session(id="s1", store=store) as session:
        assert session.restored
        pending = [c.key for c in session.state.calls if c.status == "approval"]
        assert pending
        async with session.subscribe(types=[TurnFinished, ChoiceRequest]) as sub:
            await session.approve(pending[0])
            async for envelope in sub:
                if isinstance(envelope.event, ChoiceRequest):
                    await session.choose(envelope.event.id, "a")
                else:
                    break
    reducer = agent_reducer((await _info(store, "s1")).meta)
    result = await replay(store, "s1", reducer, reducer.initial(), CODEC)
    assert any(type(e.event).__name__ == "SessionResumed" for e in result.envelopes)
    assert await verify(store, "s1", reducer, reducer.initial(), CODEC, result=result) is None


async def _info(store: Store, session: str) -> Any:
    info = await store.info(session)
    assert info is not None
    return info


async def demo_log(store: Store, signals: list[Any], *, on_reducer_error: str = "continue", sid: str = "g") -> None:
    journal = Journal(store, sid, DEMO_CODEC)
    async with Nucleus(demo_reducer, DemoState(), session=sid, journal=journal, on_reducer_error=on_reducer_error) as n:
        for signal in signals:
            await n.send(signal)


async def test_a_reducer_error_is_replayed_as_the_error_event_the_nucleus_published() -> None:
    store = MemoryStore()
    await demo_log(store, [Add(amount=2), Boom(message="bang"), Stream(parts=("a", "b")), Boom(), Burst(count=3)])
    result = await replay(store, "g", demo_reducer, DemoState(), DEMO_CODEC)
    assert result.errors == 2
    errors = [(e.event, e.turn, e.cause) for e in result.envelopes if isinstance(e.event, ErrorEvent)]
    assert [
        (event.signal_seq, event.message, turn, cause) for event, turn, cause in errors if isinstance(event, ErrorEvent)
    ] == [
        (2, "ValueError: bang", None, 2),
        (4, "ValueError: boom", None, 4),
    ]
    assert result.state == DemoState(total=2, text="ab", reduced=3)
    assert await verify(store, "g", demo_reducer, DemoState(), DEMO_CODEC, result=result) is None


async def test_a_nucleus_that_stopped_on_an_error_is_replayed_with_the_same_policy() -> None:
    store = MemoryStore()
    await demo_log(store, [Add(amount=1), Boom(), Add(amount=5)], on_reducer_error="stop")
    result = await replay(store, "g", demo_reducer, DemoState(), DEMO_CODEC, on_reducer_error="stop")
    assert result.terminated
    assert await verify(store, "g", demo_reducer, DemoState(), DEMO_CODEC, result=result) is None
    # replayed as if the nucleus had gone on, the error event differs (it was fatal)
    mismatch = await verify(store, "g", demo_reducer, DemoState(), DEMO_CODEC)
    assert mismatch is not None
    assert (mismatch.seq, mismatch.reason) == (2, "data differs")
    with pytest.raises(UsageError, match="on_reducer_error"):
        await replay(store, "g", demo_reducer, DemoState(), DEMO_CODEC, on_reducer_error="maybe")


async def test_a_terminal_transition_ends_the_replay() -> None:
    store = MemoryStore()
    await demo_log(store, [Add(amount=3), Stop()])
    result = await replay(store, "g", demo_reducer, DemoState(), DEMO_CODEC)
    assert result.terminated
    assert isinstance(result.envelopes[-1].event, Stopped)
    assert await verify(store, "g", demo_reducer, DemoState(), DEMO_CODEC) is None


async def test_replay_upto_a_seq_reduces_only_that_prefix() -> None:
    store = MemoryStore()
    signals: list[Any] = [Add(amount=1), Say(text="x"), Burst(count=2), Add(amount=4), Quiet()]
    await demo_log(store, signals)
    result = await replay(store, "g", demo_reducer, DemoState(), DEMO_CODEC, upto=3)
    assert result.signals == 3
    assert result.state == DemoState(total=1, text="x", reduced=3)
    assert [e.cause for e in result.envelopes] == [1, 2, 3, 3]
    assert await verify(store, "g", demo_reducer, DemoState(), DEMO_CODEC, upto=3) is None


async def copy_with(store: Store, sid: str, new: str, events: list[EventRecord]) -> None:
    info = await _info(store, sid)
    await store.create(new, meta=info.meta, now=info.created_at)
    await store.append(new, await store.signals(sid), events)


async def test_verify_reports_the_first_tampered_missing_or_extra_event() -> None:
    store = MemoryStore()
    await demo_log(store, [Add(amount=1), Say(text="x"), Burst(count=2)])
    events = await store.events("g")
    assert len(events) == 4

    changed = [*events]
    changed[2] = msgspec.structs.replace(changed[2], data=changed[2].data.replace(b"0", b"7"))
    await copy_with(store, "g", "changed", changed)
    mismatch = await verify(store, "changed", demo_reducer, DemoState(), DEMO_CODEC)
    assert mismatch is not None
    assert (mismatch.session, mismatch.seq, mismatch.reason) == ("changed", 3, "data differs")
    assert mismatch.expected == events[2]
    assert mismatch.found == changed[2]
    assert "event 3: data differs" in str(mismatch)

    await copy_with(store, "g", "short", events[:3])
    mismatch = await verify(store, "short", demo_reducer, DemoState(), DEMO_CODEC)
    assert mismatch is not None
    assert (mismatch.seq, mismatch.found, mismatch.expected) == (4, None, events[3])
    assert "does not hold" in mismatch.reason
    assert "(nothing)" in str(mismatch)


def test_compare_checks_every_field_of_an_event_record() -> None:
    a = EventRecord(1, 1, 5.0, "t1", "demo_total", b'{"type":"demo_total","value":1}')
    assert compare("s", [a], [a]) is None
    changes: list[tuple[dict[str, Any], str]] = [
        ({"cause": 2}, "cause differs"),
        ({"at": 5.5}, "at differs"),
        ({"turn": None}, "turn differs"),
        ({"type": "demo_tick"}, "type differs"),
        ({"data": b"{}"}, "data differs"),
        ({"seq": 2}, "seq differs"),
    ]
    for change, reason in changes:
        mismatch = compare("s", [a], [msgspec.structs.replace(a, **change)])
        assert mismatch is not None
        assert mismatch.reason.startswith(reason)
    extra = compare("s", [], [a])
    assert extra is not None
    assert (extra.seq, extra.expected, extra.found) == (1, None, a)
    assert "did not produce" in extra.reason


async def test_replay_names_an_unknown_session_and_the_first_unreadable_signal() -> None:
    store = MemoryStore()
    with pytest.raises(UsageError, match="no session 'nope'"):
        await replay(store, "nope", demo_reducer, DemoState(), DEMO_CODEC)
    await demo_log(store, [Add(amount=1), Say(text="x")])
    signals = await store.signals("g")
    await store.create("bad", now=0.0)
    await store.append("bad", [signals[0], msgspec.structs.replace(signals[1], data=b'{"type":"demo_say","te')], [])
    with pytest.raises(CorruptRecordError, match="signal record 2") as caught:
        await replay(store, "bad", demo_reducer, DemoState(), DEMO_CODEC)
    assert (caught.value.session, caught.value.seq) == ("bad", 2)
    await store.create("alien", now=0.0)
    await store.append("alien", [msgspec.structs.replace(signals[0], type="martian", data=b'{"type":"martian"}')], [])
    with pytest.raises(CorruptRecordError, match="unknown type") as caught:
        await replay(store, "alien", demo_reducer, DemoState(), DEMO_CODEC)
    assert (caught.value.session, caught.value.seq) == ("alien", 1)


async def test_the_transcript_shows_the_conversation(store: Store) -> None:
    agent, _, _, _ = await recorded(store)
    reducer = TurnReducer(agent.turn_config)
    out = io.StringIO()
    assert await replay_transcript(store, "s1", reducer, reducer.initial(), CODEC, out, check=True) is None
    text = out.getvalue()
    for piece in [
        "you> first question",
        "(thinking) Two lookups, in parallel.",
        "assistant> Looking up.",
        '-> lookup({"city": "Oslo"})',
        "<- lookup: Oslo: sunny",
        "? save(",
        "[approved: approved]",
        "? which one? ['a', 'b']",
        "     choosing…",
        "<- pick: picked b",
        "assistant> All done",
        "[turn t1 completed; 3 model call(s), 42 prompt + 12 completion tokens, $0.00100]",
        "you> second question",
        "[turn t2 completed",
    ]:
        assert piece in text, piece
    colored = "".join(
        render_transcript((await replay(store, "s1", reducer, reducer.initial(), CODEC)).envelopes, color=True)
    )
    assert "\033[1myou>" in colored


def contrary(state: DemoState, signal: Any) -> Any:
    """The demo reducer, except that ``Quiet`` returns no Transition and ``Boom`` breaks the contract."""
    if isinstance(signal, Quiet):
        return "not a transition"
    if isinstance(signal, Boom):
        raise ReducerContractError(f"a part broke the contract: {signal.message}")
    return demo_reducer(state, signal)


async def test_contract_errors_are_replayed_as_the_nucleus_reported_them() -> None:
    store = MemoryStore()
    journal = Journal(store, "c", DEMO_CODEC)
    async with Nucleus(contrary, DemoState(), session="c", journal=journal) as n:
        for signal in [Add(amount=1), Quiet(), Boom(message="x"), Add(amount=2)]:
            await n.send(signal)
    result = await replay(store, "c", contrary, DemoState(), DEMO_CODEC)
    kinds = [(e.event.kind, e.cause) for e in result.envelopes if isinstance(e.event, ErrorEvent)]
    assert kinds == [("contract", 2), ("contract", 3)]
    assert result.state == DemoState(total=3, reduced=2)
    assert await verify(store, "c", contrary, DemoState(), DEMO_CODEC, result=result) is None
