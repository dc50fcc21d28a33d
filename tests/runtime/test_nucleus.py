"""The nucleus on asyncio and trio: reduction, envelopes, effects, timers, termination, faults.

No test sleeps for real: time comes from FakeClock, progress from events, ``settle()``
(every other task is blocked) and ``capture().wait_for``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
import sniffio

from oturn import (
    CancelEffect,
    CancelTimer,
    ClosedError,
    Effect,
    EffectCancelled,
    EffectCompleted,
    EffectContext,
    EffectFailed,
    Envelope,
    ErrorEvent,
    Event,
    InboxFullError,
    InvalidPolicyError,
    InvalidSignalError,
    Nucleus,
    ProviderError,
    ReducerContractError,
    ReducerError,
    Signal,
    StartTimer,
    TimerFired,
    Transition,
    UsageError,
    WouldBlock,
)
from oturn.runtime.nucleus import _YIELD_EVERY
from oturn.testing import FakeClock, capture, drive, settle
from oturn.testing.strategies import Add, Boom, Burst, DemoState, Quiet, Say, demo_reducer
from strategies import on_backends

# -- a scripted reducer: each Script signal says what its transition holds ---------------


class Note(Event, frozen=True, kw_only=True, tag="tn_note"):
    text: str


class Saw(Event, frozen=True, kw_only=True, tag="tn_saw"):
    """Published for every signal that is not a Script (outcomes of effects, timers, ...)."""

    signal: Signal


class Work(Effect, frozen=True, kw_only=True, tag="tn_work"):
    value: str = ""


class SpecialWork(Work, frozen=True, kw_only=True, tag="tn_special_work"):
    pass


class Unhandled(Effect, frozen=True, kw_only=True, tag="tn_unhandled"):
    pass


class Script(Signal, frozen=True, kw_only=True, tag="tn_script"):
    events: tuple[Event, ...] = ()
    effects: tuple[Effect, ...] = ()
    terminal: bool = False
    turn: str | None = None


class Raise(Signal, frozen=True, kw_only=True, tag="tn_raise"):
    message: str = "broken"


class Garbage(Signal, frozen=True, kw_only=True, tag="tn_garbage"):
    pass


class Reply(Signal, frozen=True, kw_only=True, tag="tn_reply"):
    value: str


class NotASignal(Event, frozen=True, kw_only=True, tag="tn_not_a_signal"):
    pass


State = tuple[Signal, ...]


def reducer(state: State, signal: Signal) -> Transition[State]:
    if isinstance(signal, Raise):
        raise RuntimeError(signal.message)
    if isinstance(signal, Garbage):
        return "garbage"  # type: ignore[return-value]
    new = (*state, signal)
    if isinstance(signal, Script):
        return Transition(new, signal.events, effects=signal.effects, terminal=signal.terminal, turn=signal.turn)
    return Transition(new, [Saw(signal=signal)])


def note(text: str, *, turn: str | None = None) -> Script:
    return Script(events=(Note(text=text),), turn=turn)


def run(*effects: Effect) -> Script:
    return Script(effects=effects)


def saw(envelope: Envelope) -> Signal:
    assert isinstance(envelope.event, Saw), envelope
    return envelope.event.signal


def is_saw(signal_type: type[Signal]) -> Any:
    return lambda env: isinstance(env.event, Saw) and isinstance(env.event.signal, signal_type)


def assert_no_task_left() -> None:
    """On asyncio, only the test's own task may remain (trio's nurseries guarantee it)."""
    if sniffio.current_async_library() == "asyncio":
        assert asyncio.all_tasks() == {asyncio.current_task()}


# -- input, envelopes -------------------------------------------------------------------


@on_backends()
async def test_runs_on_the_named_backend(anyio_backend: str) -> None:
    assert sniffio.current_async_library() == anyio_backend
    async with Nucleus(reducer, ()) as nucleus, capture(nucleus) as cap:
        await nucleus.send(note("x"))
        await cap.wait_for(Note)
    assert_no_task_left()


@on_backends()
async def test_signals_are_reduced_in_order_into_envelopes_numbered_from_one() -> None:
    clock = FakeClock(1234.5, autojump=False)
    async with Nucleus(reducer, (), clock=clock, session="s1") as nucleus, capture(nucleus) as cap:
        await nucleus.send(note("a", turn="t1"))
        nucleus.send_nowait(Script(events=(Note(text="b"), Note(text="c")), turn="t2"))
        await nucleus.send(note("d"))
        envelopes = await cap.wait_count(4)
    assert [env.seq for env in envelopes] == [1, 2, 3, 4]
    assert [env.event for env in envelopes] == [Note(text=t) for t in "abcd"]
    assert [env.cause for env in envelopes] == [1, 2, 2, 3]
    assert [env.turn for env in envelopes] == ["t1", "t2", "t2", None]
    assert {env.at for env in envelopes} == {1234.5}
    assert {env.session for env in envelopes} == {"s1"}
    assert nucleus.state == (
        note("a", turn="t1"),
        Script(events=(Note(text="b"), Note(text="c")), turn="t2"),
        note("d"),
    )
    assert nucleus.last_seq == 4


@on_backends()
async def test_cause_counts_every_signal_even_those_without_events() -> None:
    async with Nucleus(reducer, ()) as nucleus, capture(nucleus) as cap:
        for signal in (Script(), Script(), note("third"), Script(), note("fifth")):
            await nucleus.send(signal)
        await cap.wait_count(2)
    assert [(env.seq, env.cause) for env in cap.envelopes] == [(1, 3), (2, 5)]


@on_backends()
async def test_at_is_the_injected_clock_time_when_the_transition_was_reduced() -> None:
    clock = FakeClock(10.0, autojump=False)
    async with Nucleus(reducer, (), clock=clock) as nucleus, capture(nucleus) as cap:
        await nucleus.send(note("a"))
        await cap.wait_count(1)
        clock.advance(2.5)
        await nucleus.send(Script(events=(Note(text="b"), Note(text="c"))))
        await cap.wait_count(3)
    assert [env.at for env in cap.envelopes] == [10.0, 12.5, 12.5]


@on_backends()
async def test_seq_strictly_increases_across_many_signals_and_yields_to_other_tasks() -> None:
    backlog_seen: list[int] = []
    count = 8 * _YIELD_EVERY  # the nucleus yields every _YIELD_EVERY signals: 8 chances to interleave
    async with Nucleus(reducer, (), inbox=count) as nucleus, nucleus.subscribe(buffer=count) as sub:
        for i in range(count):
            nucleus.send_nowait(note(str(i)))
        got: list[Envelope] = []
        while len(got) < count:
            got.append(await sub.get())
            backlog_seen.append(nucleus.statistics().inbox_depth)
    assert [env.seq for env in got] == list(range(1, count + 1))
    assert got[-1].cause == count
    # The reader ran while signals were still queued: the nucleus does not hog the loop.
    assert max(backlog_seen) > 0


@on_backends()
async def test_nucleus_output_equals_the_pure_drive_reduction() -> None:
    signals = [Add(amount=2), Say(text="hi"), Burst(count=3), Quiet(), Boom(), Say(text="!"), Add(amount=-1)]
    clock = FakeClock(7.0)
    async with Nucleus(demo_reducer, DemoState(), clock=clock, session="demo") as nucleus, capture(nucleus) as cap:
        for signal in signals:
            await nucleus.send(signal)
        await cap.wait_for(lambda env: env.cause == len(signals))
    expected = drive(demo_reducer, DemoState(), signals, on_error="continue")
    assert msgspec.json.encode(cap.envelopes) == msgspec.json.encode(expected.envelopes(session="demo", at=7.0))
    assert nucleus.state == expected.state


@on_backends()
async def test_leaving_normally_reduces_what_is_already_in_the_inbox() -> None:
    nucleus = Nucleus(reducer, ())
    async with capture(nucleus) as cap:
        async with nucleus:
            for i in range(5):
                nucleus.send_nowait(note(str(i)))
        await cap.until_closed()
    assert [e.text for e in cap.of_type(Note)] == ["0", "1", "2", "3", "4"]  # type: ignore[attr-defined]
    assert nucleus.statistics().state == "closed"
    assert_no_task_left()


@on_backends()
async def test_an_exception_in_the_body_propagates_and_closes_the_nucleus() -> None:
    nucleus = Nucleus(reducer, ())

    async def body() -> None:
        async with nucleus:
            await nucleus.send(note("a"))
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await body()
    assert nucleus.closed
    with pytest.raises(ClosedError):
        await nucleus.send(note("late"))
    assert_no_task_left()


@on_backends()
async def test_a_nucleus_can_be_entered_only_once() -> None:
    nucleus = Nucleus(reducer, ())
    async with nucleus:
        with pytest.raises(UsageError, match="once"):
            await nucleus.__aenter__()
    with pytest.raises(UsageError, match="once"):
        async with nucleus:
            pass


# -- bad input --------------------------------------------------------------------------


@on_backends()
async def test_sending_something_that_is_not_a_signal_raises_invalid_signal_error() -> None:
    async with Nucleus(reducer, ()) as nucleus:
        for bad in (NotASignal(), "hello", None, Work()):
            with pytest.raises(InvalidSignalError, match="Signal"):
                await nucleus.send(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                nucleus.send_nowait(bad)  # type: ignore[arg-type]
        assert nucleus.statistics().signals_reduced == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inbox": 0}, "inbox"),
        ({"inbox": True}, "inbox"),
        ({"history": -1}, "history"),
        ({"shutdown_timeout": -1}, "shutdown_timeout"),
        ({"shutdown_timeout": float("inf")}, "shutdown_timeout"),
        ({"on_reducer_error": "explode"}, "on_reducer_error"),
    ],
)
def test_bad_options_raise_invalid_policy_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidPolicyError, match=match):
        Nucleus(reducer, (), **kwargs)
    with pytest.raises(ValueError, match=match):
        Nucleus(reducer, (), **kwargs)


def test_bad_reducers_and_handlers_raise_usage_error() -> None:
    with pytest.raises(UsageError, match="callable"):
        Nucleus("not a reducer", ())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="Effect subclasses"):
        Nucleus(reducer, (), handlers={Note: _complete})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="executed by the nucleus"):
        Nucleus(reducer, (), handlers={StartTimer: _complete})
    with pytest.raises(UsageError, match="not callable"):
        Nucleus(reducer, (), handlers={Work: "nope"})  # type: ignore[dict-item]


async def _complete(effect: Work, ctx: EffectContext[Work]) -> None:
    return None


@on_backends()
async def test_send_after_close_raises_closed_error() -> None:
    async with Nucleus(reducer, ()) as nucleus:
        pass
    with pytest.raises(ClosedError):
        await nucleus.send(note("late"))
    with pytest.raises(ClosedError):
        nucleus.send_nowait(note("late"))
    assert nucleus.closed


@on_backends()
async def test_send_nowait_on_a_full_inbox_raises_inbox_full_error() -> None:
    async with Nucleus(reducer, (), inbox=2) as nucleus:
        # The reduction task has not run yet: nothing leaves the inbox in between.
        nucleus.send_nowait(note("a"))
        nucleus.send_nowait(note("b"))
        with pytest.raises(InboxFullError, match="full") as info:
            nucleus.send_nowait(note("c"))
        assert isinstance(info.value, WouldBlock)
        stats = nucleus.statistics()
        assert (stats.inbox_depth, stats.inbox_capacity, stats.inbox_peak) == (2, 2, 2)


@on_backends()
async def test_send_waits_for_room_while_the_inbox_is_full() -> None:
    async with Nucleus(reducer, (), inbox=1) as nucleus:
        sub = nucleus.subscribe(buffer=1)  # block policy, read below: stalls the nucleus
        sent: list[int] = []

        async def sender() -> None:
            for i in range(4):
                await nucleus.send(note(str(i)))
                sent.append(i)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await settle()
            # env 1 fills the buffer, the nucleus waits to offer env 2, signal 2 sits in
            # the inbox, and the sender waits for room for signal 3.
            assert sent == [0, 1, 2]
            assert nucleus.last_seq == 2
            assert nucleus.statistics().inbox_depth == 1
            got = [await sub.get() for _ in range(4)]
        assert [e.seq for e in got] == [1, 2, 3, 4]
        assert sent == [0, 1, 2, 3]
        await sub.aclose()


@on_backends()
async def test_send_with_room_queues_during_the_call_and_awaiting_it_does_not_yield() -> None:
    async with Nucleus(reducer, (), inbox=4) as nucleus:
        pending = nucleus.send(note("a"))
        assert nucleus.statistics().inbox_depth == 1  # queued before it is awaited
        await pending
        await nucleus.send(note("b"))
        # No scheduling point in either await: the reduction task has not run yet.
        assert nucleus.statistics().inbox_depth == 2
        assert nucleus.last_seq == 0
        await settle()
        assert nucleus.last_seq == 2


@on_backends()
async def test_send_raises_at_the_call_for_a_non_signal_or_a_closed_nucleus() -> None:
    async with Nucleus(reducer, ()) as nucleus:
        with pytest.raises(InvalidSignalError):
            nucleus.send("not awaited")  # type: ignore[arg-type]
    with pytest.raises(ClosedError):
        nucleus.send(note("late"))


@on_backends()
async def test_a_full_inbox_send_waits_in_fifo_order_behind_earlier_waiters() -> None:
    async with Nucleus(reducer, (), inbox=1) as nucleus:
        nucleus.send_nowait(note("first"))
        order: list[str] = []

        async def sender(text: str) -> None:
            await nucleus.send(note(text))
            order.append(text)

        async with anyio.create_task_group() as tg:
            for text in ("w1", "w2", "w3"):
                tg.start_soon(sender, text)
                await settle()  # each sender is waiting before the next one starts
        await settle()
        assert order == ["w1", "w2", "w3"]
        texts = [e.event.text for e in nucleus.history() if isinstance(e.event, Note)]
        assert texts == ["first", "w1", "w2", "w3"]


# -- reducer failures -------------------------------------------------------------------


@on_backends()
async def test_a_reducer_that_raises_leaves_the_state_and_publishes_an_error_event() -> None:
    async with Nucleus(reducer, ()) as nucleus, capture(nucleus) as cap:
        await nucleus.send(note("before"))
        await nucleus.send(Raise(message="kaput"))
        await nucleus.send(note("after"))
        await cap.wait_count(3)
        assert nucleus.state == (note("before"), note("after"))
        assert nucleus.statistics().reducer_errors == 1
        assert not nucleus.closed
    error = cap.envelopes[1]
    assert error.event == ErrorEvent(
        kind="reducer", message="RuntimeError: kaput", signal_seq=2, signal_type="Raise", fatal=False
    )
    assert (error.seq, error.cause, error.turn) == (2, 2, None)
    assert cap.types() == ["tn_note", "error", "tn_note"]


@on_backends()
async def test_on_reducer_error_stop_ends_the_nucleus_and_wait_closed_raises() -> None:
    async with Nucleus(reducer, (), on_reducer_error="stop") as nucleus, capture(nucleus) as cap:
        await nucleus.send(note("before"))
        await nucleus.send(Raise(message="fatal"))
        await cap.until_closed()
        with pytest.raises(ReducerError, match="fatal") as info:
            await nucleus.wait_closed()
        assert info.value.signal_seq == 2
        assert isinstance(info.value.__cause__, RuntimeError)
        assert nucleus.failure is info.value
        with pytest.raises(ClosedError):
            await nucleus.send(note("after"))
        assert nucleus.statistics().state == "failed"
    last = cap.envelopes[-1].event
    assert isinstance(last, ErrorEvent)
    assert last.fatal
    assert last.signal_seq == 2
    assert nucleus.state == (note("before"),)


@on_backends()
async def test_a_reducer_returning_a_non_transition_breaks_the_contract() -> None:
    async with Nucleus(reducer, ()) as nucleus, capture(nucleus) as cap:
        await nucleus.send(Garbage())
        await nucleus.send(note("still alive"))
        await cap.wait_count(2)
    error = cap.envelopes[0].event
    assert isinstance(error, ErrorEvent)
    assert (error.kind, error.signal_seq, error.signal_type) == ("contract", 1, "Garbage")
    assert "str" in error.message
    assert "not a Transition" in error.message
    assert nucleus.state == (note("still alive"),)


@on_backends()
async def test_a_contract_violation_under_stop_raises_reducer_contract_error() -> None:
    async with Nucleus(reducer, (), on_reducer_error="stop") as nucleus:
        await nucleus.send(Garbage())
        with pytest.raises(ReducerContractError) as info:
            await nucleus.wait_closed()
    assert isinstance(info.value, TypeError)
    assert info.value.signal_seq == 1


# -- effects ----------------------------------------------------------------------------


@on_backends()
async def test_a_handler_returning_a_signal_feeds_it_back_as_the_outcome() -> None:
    async def handle(effect: Work, ctx: EffectContext[Work]) -> Signal:
        return Reply(value=effect.value.upper())

    async with Nucleus(reducer, (), handlers={Work: handle}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(Work(value="ping")))
        env = await cap.wait_for(is_saw(Reply))
    assert saw(env) == Reply(value="PING")
    assert env.cause == 2
    stats = nucleus.statistics()
    assert (stats.effects_started, stats.effects_running, stats.effects_failed) == (1, 0, 0)


@on_backends()
async def test_a_handler_returning_none_completes_the_effect() -> None:
    async with Nucleus(reducer, (), handlers={Work: _complete}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(Work(value="w")))
        env = await cap.wait_for(is_saw(EffectCompleted))
    assert saw(env) == EffectCompleted(effect=Work(value="w"))


@on_backends()
async def test_a_handler_that_raises_fails_the_effect_with_error_info() -> None:
    async def handle(effect: Work, ctx: EffectContext[Work]) -> None:
        raise ProviderError("slow down", status=429, retry_after=2)

    async with Nucleus(reducer, (), handlers={Work: handle}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(Work(value="w")))
        env = await cap.wait_for(is_saw(EffectFailed))
    failed = saw(env)
    assert isinstance(failed, EffectFailed)
    assert failed.effect == Work(value="w")
    assert failed.error.type == "oturn._exceptions.ProviderError"
    assert (failed.error.kind, failed.error.message) == ("error", "slow down")
    assert (failed.error.status, failed.error.retry_after) == (429, 2.0)
    assert nucleus.statistics().effects_failed == 1


@on_backends()
async def test_an_effect_without_a_handler_fails_with_kind_no_handler() -> None:
    async with Nucleus(reducer, (), handlers={Work: _complete}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(Unhandled()))
        env = await cap.wait_for(is_saw(EffectFailed))
    failed = saw(env)
    assert isinstance(failed, EffectFailed)
    assert failed.error.kind == "no_handler"
    assert "Unhandled" in failed.error.message
    assert failed.error.type == "oturn._exceptions.NoHandlerError"


@on_backends()
async def test_a_handler_registered_for_a_base_class_runs_its_subclasses() -> None:
    async def handle(effect: Work, ctx: EffectContext[Work]) -> Signal:
        return Reply(value=type(effect).__name__)

    async with Nucleus(reducer, (), handlers={Work: handle}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(SpecialWork()))
        env = await cap.wait_for(is_saw(Reply))
    assert saw(env) == Reply(value="SpecialWork")


@on_backends()
async def test_a_handler_returning_something_else_fails_the_effect() -> None:
    async def handle(effect: Work, ctx: EffectContext[Work]) -> Any:
        return 42

    async with Nucleus(reducer, (), handlers={Work: handle}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(Work()))
        env = await cap.wait_for(is_saw(EffectFailed))
    failed = saw(env)
    assert isinstance(failed, EffectFailed)
    assert "returned int" in failed.error.message


@on_backends()
async def test_handlers_run_concurrently_and_talk_back_through_their_context() -> None:
    clock = FakeClock(50.0, autojump=False)
    started = 0
    both_started = anyio.Event()

    async def handle(effect: Work, ctx: EffectContext[Work]) -> Signal:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await both_started.wait()  # deadlocks unless both run at the same time
        await ctx.send(Reply(value=f"progress {effect.value}"))
        ctx.send_nowait(Reply(value=f"more {effect.value}"))
        assert ctx.clock is clock
        assert ctx.session == "sess"
        assert "Work" in repr(ctx)
        return Reply(value=f"done {effect.value} at {ctx.clock.now()}")

    async with (
        Nucleus(reducer, (), handlers={Work: handle}, clock=clock, session="sess") as nucleus,
        capture(nucleus) as cap,
    ):
        await nucleus.send(run(Work(value="a", key="a"), Work(value="b", key="b")))
        await cap.wait_count(6)
    values = sorted(saw(env).value for env in cap.envelopes)  # type: ignore[attr-defined]
    assert values == ["done a at 50.0", "done b at 50.0", "more a", "more b", "progress a", "progress b"]


@on_backends()
async def test_cancel_effect_cancels_the_running_handler_with_effect_cancelled() -> None:
    started = anyio.Event()
    cancelled = False

    async def handle(effect: Work, ctx: EffectContext[Work]) -> None:
        nonlocal cancelled
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled = True

    async with Nucleus(reducer, (), handlers={Work: handle}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(Work(value="long", key="job-1")))
        await started.wait()
        assert nucleus.statistics().effects_running == 1
        await nucleus.send(run(CancelEffect(target="other")))  # no such key: nothing happens
        await nucleus.send(run(CancelEffect(target="job-1")))
        env = await cap.wait_for(is_saw(EffectCancelled))
    assert cancelled
    assert saw(env) == EffectCancelled(effect=Work(value="long", key="job-1"))
    assert nucleus.statistics().effects_running == 0


# -- timers -----------------------------------------------------------------------------


@on_backends()
async def test_start_timer_fires_timer_fired_after_its_delay_on_the_clock() -> None:
    async with FakeClock(100.0) as clock:
        async with Nucleus(reducer, (), clock=clock) as nucleus, capture(nucleus) as cap:
            await nucleus.send(run(StartTimer(key="t", delay=30.0)))
            await settle()
            assert nucleus.statistics().timers_pending == 1
            env = await cap.wait_for(is_saw(TimerFired))
        assert saw(env) == TimerFired(key="t")
        assert env.at == 130.0
        assert clock.now() == 130.0
        assert nucleus.statistics().timers_pending == 0


@on_backends()
async def test_cancel_timer_prevents_the_firing() -> None:
    clock = FakeClock(autojump=False)
    async with Nucleus(reducer, (), clock=clock) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(StartTimer(key="t", delay=5.0), StartTimer(key="u", delay=8.0)))
        await settle()
        await nucleus.send(run(CancelTimer(key="t"), CancelTimer(key="missing")))
        await settle()
        assert clock.sleepers == 1
        clock.advance(10.0)
        env = await cap.wait_for(is_saw(TimerFired))
        await settle()
    assert saw(env) == TimerFired(key="u")
    assert [saw(e) for e in cap.envelopes if isinstance(e.event, Saw)] == [TimerFired(key="u")]


@on_backends()
async def test_starting_a_running_timer_restarts_it() -> None:
    clock = FakeClock(autojump=False)
    async with Nucleus(reducer, (), clock=clock) as nucleus, capture(nucleus) as cap:
        await nucleus.send(run(StartTimer(key="t", delay=10.0)))
        await settle()
        clock.advance(4.0)
        await nucleus.send(run(StartTimer(key="t", delay=10.0)))
        await settle()
        clock.advance(6.0)  # t = 10: the first timer would have fired now
        await settle()
        assert cap.envelopes == []
        clock.advance(4.0)  # t = 14
        env = await cap.wait_for(is_saw(TimerFired))
        await settle()
    assert env.at == 14.0
    assert len(cap.envelopes) == 1


# -- termination ------------------------------------------------------------------------


@on_backends()
async def test_a_terminal_transition_ends_every_subscription_and_refuses_sends() -> None:
    async with Nucleus(reducer, (), handlers={Work: _complete}) as nucleus:
        subs = [nucleus.subscribe(), nucleus.subscribe(policy="drop_oldest", buffer=2)]
        await nucleus.send(note("a"))
        await nucleus.send(Script(events=(Note(text="bye"),), effects=(Work(),), terminal=True))
        await nucleus.wait_closed()
        received = [[env async for env in sub] for sub in subs]
        assert [[e.event for e in r] for r in received] == [[Note(text="a"), Note(text="bye")]] * 2
        with pytest.raises(ClosedError):
            await nucleus.send(note("late"))
        with pytest.raises(ClosedError):
            nucleus.subscribe()
        stats = nucleus.statistics()
        assert stats.state == "terminated"
        assert stats.effects_started == 0  # a terminal transition's effects are not started
        assert stats.subscribers == 0
        assert all(sub.closed for sub in subs)
    assert_no_task_left()


@on_backends()
async def test_a_terminal_transition_cancels_running_effects_and_timers() -> None:
    cancelled = anyio.Event()
    started = anyio.Event()

    async def handle(effect: Work, ctx: EffectContext[Work]) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    clock = FakeClock(autojump=False)
    async with Nucleus(reducer, (), handlers={Work: handle}, clock=clock) as nucleus:
        await nucleus.send(run(Work(key="w"), StartTimer(key="t", delay=1.0)))
        await started.wait()
        await nucleus.send(Script(terminal=True))
        await nucleus.wait_closed()
        await cancelled.wait()
        await settle()
        stats = nucleus.statistics()
        assert (stats.effects_running, stats.timers_pending) == (0, 0)
        assert stats.outcomes_discarded == 1  # the EffectCancelled had nowhere to go
        assert clock.sleepers == 0


@on_backends()
async def test_signals_queued_behind_a_terminal_transition_are_discarded_and_counted() -> None:
    async with Nucleus(reducer, ()) as nucleus:
        nucleus.send_nowait(Script(terminal=True))
        nucleus.send_nowait(note("never"))
        nucleus.send_nowait(note("never either"))
        await nucleus.wait_closed()
        stats = nucleus.statistics()
    assert stats.signals_reduced == 1
    assert stats.signals_discarded == 2
    assert nucleus.state == (Script(terminal=True),)


@on_backends()
async def test_aclose_stops_at_once_and_discards_queued_signals() -> None:
    async with Nucleus(reducer, ()) as nucleus:
        nucleus.send_nowait(note("queued"))
        await nucleus.aclose()
        assert nucleus.closed
        await nucleus.wait_closed()
        assert nucleus.statistics().signals_discarded == 1
        assert nucleus.last_seq == 0


# -- bounded shutdown and cancellation --------------------------------------------------


@on_backends()
async def test_a_handler_that_hangs_forever_does_not_delay_leaving() -> None:
    started = anyio.Event()
    cancelled = False

    async def hang(effect: Work, ctx: EffectContext[Work]) -> None:
        nonlocal cancelled
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled = True

    with anyio.fail_after(30):  # a guard only: nothing here waits on real time
        async with Nucleus(reducer, (), handlers={Work: hang}) as nucleus:
            await nucleus.send(run(Work()))
            await started.wait()
    assert cancelled
    assert nucleus.statistics().effects_running == 0
    assert_no_task_left()


@on_backends()
async def test_an_outcome_arriving_after_close_is_discarded_and_counted() -> None:
    release = anyio.Event()

    async def slow(effect: Work, ctx: EffectContext[Work]) -> Signal:
        with anyio.CancelScope(shield=True):
            await release.wait()
        return Reply(value="too late")

    async with anyio.create_task_group() as tg:
        nucleus = Nucleus(reducer, (), handlers={Work: slow})
        async with nucleus:
            await nucleus.send(run(Work()))
            await settle()
            tg.start_soon(_set_after_settle, release)
        assert nucleus.statistics().outcomes_discarded == 1


async def _set_after_settle(event: anyio.Event) -> None:
    await settle()
    event.set()


@on_backends()
async def test_a_stuck_block_subscriber_bounds_the_drain_by_shutdown_timeout() -> None:
    with anyio.fail_after(30):
        async with Nucleus(reducer, (), shutdown_timeout=0) as nucleus:
            nucleus.subscribe(buffer=1)  # block policy, never read
            for i in range(5):
                nucleus.send_nowait(note(str(i)))
            await settle()
            assert nucleus.last_seq == 2  # stalled on the full subscriber
    stats = nucleus.statistics()
    assert stats.signals_discarded == 3
    assert stats.state == "closed"
    assert_no_task_left()


@on_backends()
async def test_cancelling_the_owner_while_send_waits_for_room_leaves_no_task() -> None:
    async with anyio.create_task_group() as outer:
        with anyio.CancelScope() as scope:
            outer.start_soon(_cancel_after_settle, scope)
            async with Nucleus(reducer, (), inbox=1) as nucleus:
                nucleus.subscribe(buffer=1)  # never read: the nucleus stalls, the inbox fills
                for i in range(10):
                    await nucleus.send(note(str(i)))
                pytest.fail("send() should have been waiting when the scope was cancelled")
        assert scope.cancelled_caught
    assert nucleus.closed
    assert nucleus.statistics().state == "closed"
    assert_no_task_left()


@on_backends()
async def test_cancelling_the_owner_while_the_nucleus_waits_for_a_block_subscriber_leaves_no_task() -> None:
    async with anyio.create_task_group() as outer:
        with anyio.CancelScope() as scope:
            outer.start_soon(_cancel_after_settle, scope)
            async with Nucleus(reducer, ()) as nucleus:
                sub = nucleus.subscribe(buffer=1)
                nucleus.send_nowait(Script(events=(Note(text="1"), Note(text="2"))))
                await anyio.sleep_forever()
        assert scope.cancelled_caught
    assert nucleus.last_seq == 2
    assert sub.closed
    assert_no_task_left()


@on_backends()
async def test_cancelling_the_owner_while_a_handler_runs_cancels_the_handler() -> None:
    handler_cancelled = False
    started = anyio.Event()

    async def hang(effect: Work, ctx: EffectContext[Work]) -> None:
        nonlocal handler_cancelled
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            handler_cancelled = True

    with anyio.CancelScope() as scope:
        async with Nucleus(reducer, (), handlers={Work: hang}) as nucleus:
            await nucleus.send(run(Work()))
            await started.wait()
            scope.cancel()
            await anyio.lowlevel.checkpoint()
            pytest.fail("the cancelled scope should have stopped the body")
    assert scope.cancelled_caught
    assert handler_cancelled
    assert_no_task_left()


@on_backends()
async def test_cancelling_the_owner_while_a_timer_is_pending_leaves_no_task() -> None:
    async with FakeClock() as clock:
        with anyio.CancelScope() as scope:
            async with Nucleus(reducer, (), clock=clock) as nucleus:
                await nucleus.send(run(StartTimer(key="t", delay=3600.0)))
                await settle()
                scope.cancel()
                await anyio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert clock.sleepers == 0
    assert_no_task_left()


async def _cancel_after_settle(scope: anyio.CancelScope) -> None:
    await settle()
    scope.cancel()


# -- introspection ----------------------------------------------------------------------


@on_backends()
async def test_statistics_count_signals_events_errors_and_subscribers() -> None:
    async with Nucleus(reducer, (), session="stats", inbox=8, history=3) as nucleus:
        assert nucleus.statistics().state == "running"
        async with capture(nucleus) as cap:
            await nucleus.send(Script(events=(Note(text="a"), Note(text="b"))))
            await nucleus.send(Raise())
            await nucleus.send(note("c"))
            await cap.wait_count(4)
            stats = nucleus.statistics()
    assert stats.signals_reduced == 3
    assert stats.last_signal_seq == 3
    assert stats.last_seq == 4
    assert stats.events_published == 4
    assert stats.reducer_errors == 1
    assert stats.inbox_capacity == 8
    assert stats.subscribers == 1
    assert stats.history_size == 3
    assert [env.seq for env in nucleus.history()] == [2, 3, 4]


@on_backends()
async def test_the_history_keeps_what_was_published_when_the_reducer_reuses_its_event_list() -> None:
    shared: list[Event] = []

    def reusing(state: int, signal: Signal) -> Transition[int]:
        shared.clear()  # an impure habit, but the published record must not change with it
        shared.append(Note(text=f"n{state + 1}"))
        return Transition(state + 1, shared)

    def generated(state: int, signal: Signal) -> Transition[int]:
        return Transition(state + 1, (Note(text=f"g{i}") for i in range(2)))  # type: ignore[arg-type]

    async with Nucleus(reusing, 0) as nucleus:
        for _ in range(3):
            await nucleus.send(note("x"))
        await settle()
        assert [e.event.text for e in nucleus.history()] == ["n1", "n2", "n3"]  # type: ignore[attr-defined]
    async with Nucleus(generated, 0, history=3) as nucleus:
        await nucleus.send(note("x"))
        await nucleus.send(note("y"))
        await settle()
        assert [(e.seq, e.cause, e.event.text) for e in nucleus.history()] == [  # type: ignore[attr-defined]
            (2, 1, "g1"),
            (3, 2, "g0"),
            (4, 2, "g1"),
        ]
        assert nucleus.statistics().history_size == 3


@on_backends()
async def test_repr_shows_session_phase_and_counters() -> None:
    nucleus = Nucleus(reducer, (), session="demo", inbox=16)
    assert repr(nucleus).startswith("<Nucleus demo new seq=0")
    async with nucleus:
        await nucleus.send(note("x"))
        await settle()
        text = repr(nucleus)
        assert "running" in text
        assert "seq=1" in text
        assert "signals=1" in text
        assert "inbox=0/16" in text
    assert "closed" in repr(nucleus)
    assert "<Nucleus 0x" in repr(Nucleus(reducer, ()))
