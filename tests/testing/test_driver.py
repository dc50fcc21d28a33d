"""drive() (the pure reduction), capture() (collecting envelopes) and the public strategies."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest
from hypothesis import given, settings

from oturn import (
    ErrorEvent,
    Event,
    Nucleus,
    Policy,
    ReducerContractError,
    Signal,
    Transition,
)
from oturn.testing import FakeClock, capture, drive, event_tag
from oturn.testing.strategies import (
    LOSSY_POLICIES,
    Add,
    Boom,
    Burst,
    Delta,
    DemoState,
    Quiet,
    Say,
    Stop,
    Stopped,
    Tick,
    Total,
    buffer_sizes,
    demo_reducer,
    demo_signal_lists,
    policies,
)
from strategies import on_backends


class Weird(Signal, frozen=True, kw_only=True, tag="td_weird"):
    pass


def contract_breaker(state: DemoState, signal: Signal) -> Transition[DemoState]:
    if isinstance(signal, Weird):
        return None  # type: ignore[return-value]
    return demo_reducer(state, signal)


# -- drive --------------------------------------------------------------------------------


def test_drive_reduces_in_order_and_reports_state_transitions_and_events() -> None:
    result = drive(demo_reducer, DemoState(), [Add(amount=2), Say(text="hi"), Burst(count=2), Quiet()])
    assert result.state == DemoState(total=2, text="hi", reduced=4)
    assert len(result.transitions) == 4
    assert result.events == [Total(value=2), Delta(text="hi"), Tick(index=0), Tick(index=1)]
    assert result.effects == []
    assert not result.terminated
    assert result.failure is None
    assert result.unreduced == []
    assert [step.seq for step in result.steps] == [1, 2, 3, 4]
    assert "steps=4 events=4 errors=0" in repr(result)


def test_drive_envelopes_number_seq_and_cause_like_a_nucleus() -> None:
    result = drive(
        demo_reducer, DemoState(), [Burst(count=2), Quiet(), Add(amount=1)] + [Quiet()] * 3 + [Say(text="x")]
    )
    envelopes = result.envelopes(session="s", at=5.0)
    assert [(env.seq, env.cause, env.turn) for env in envelopes] == [
        (1, 1, "t0"),
        (2, 1, "t0"),
        (3, 3, "t0"),
        (4, 7, "t1"),
    ]
    assert {env.at for env in envelopes} == {5.0}
    assert {env.session for env in envelopes} == {"s"}
    timed = result.envelopes(at=lambda cause: cause * 10.0, first_seq=100, first_cause=50)
    assert [(env.seq, env.cause, env.at) for env in timed] == [
        (100, 50, 500.0),
        (101, 50, 500.0),
        (102, 52, 520.0),
        (103, 56, 560.0),
    ]


def test_drive_lets_reducer_exceptions_propagate_by_default() -> None:
    with pytest.raises(ValueError, match="bang"):
        drive(demo_reducer, DemoState(), [Add(amount=1), Boom(message="bang")])
    with pytest.raises(ReducerContractError, match="returned NoneType"):
        drive(contract_breaker, DemoState(), [Weird()])


def test_drive_can_record_errors_like_the_nucleus_and_go_on() -> None:
    result = drive(contract_breaker, DemoState(), [Add(amount=1), Boom(), Weird(), Add(amount=1)], on_error="continue")
    assert result.state == DemoState(total=2, reduced=2)
    assert result.events == [
        Total(value=1),
        ErrorEvent(kind="reducer", message="ValueError: boom", signal_seq=2, signal_type="Boom"),
        ErrorEvent(
            kind="contract",
            message="the reducer returned NoneType, not a Transition",
            signal_seq=3,
            signal_type="Weird",
        ),
        Total(value=2),
    ]
    assert [error.signal_seq for error in result.errors] == [2, 3]
    assert isinstance(result.errors[0].__cause__, ValueError)
    assert [env.turn for env in result.envelopes()] == ["t0", None, None, "t0"]
    assert result.steps[1].transition is None
    assert "error=" in repr(result.steps[1])


def test_drive_stop_on_error_stops_like_the_nucleus() -> None:
    result = drive(demo_reducer, DemoState(), [Add(amount=1), Boom(), Add(amount=1)], on_error="stop")
    assert result.failure is not None
    assert result.failure.signal_seq == 2
    last = result.events[-1]
    assert isinstance(last, ErrorEvent)
    assert last.fatal
    assert result.unreduced == [Add(amount=1)]
    assert "failed" in repr(result)


def test_drive_stops_at_a_terminal_transition_and_leaves_its_effects_unstarted() -> None:
    result = drive(demo_reducer, DemoState(), [Add(amount=3), Stop(), Add(amount=1)])
    assert result.terminated
    assert result.events == [Total(value=3), Stopped(total=3)]
    assert result.unreduced == [Add(amount=1)]
    assert result.transitions[-1].terminal


def test_drive_rejects_an_unknown_error_mode() -> None:
    with pytest.raises(ValueError, match="explode"):
        drive(demo_reducer, DemoState(), [], on_error="explode")


@given(signals=demo_signal_lists(max_size=40, stop=None))
@settings(max_examples=50, deadline=None)
def test_drive_is_deterministic(signals: list[Signal]) -> None:
    first = drive(demo_reducer, DemoState(), signals, on_error="continue")
    second = drive(demo_reducer, DemoState(), signals, on_error="continue")
    assert msgspec.json.encode(first.envelopes(at=1.0)) == msgspec.json.encode(second.envelopes(at=1.0))
    assert first.state == second.state


# -- capture ------------------------------------------------------------------------------


def _nucleus(**kwargs: object) -> Nucleus[DemoState]:
    return Nucleus(demo_reducer, DemoState(), on_reducer_error="continue", **kwargs)  # type: ignore[arg-type]


@on_backends()
async def test_capture_collects_envelopes_events_types_and_seqs() -> None:
    async with _nucleus() as nucleus, capture(nucleus) as cap:
        await nucleus.send(Add(amount=1))
        await nucleus.send(Boom())
        await nucleus.send(Say(text="a"))
        env = await cap.wait_for(Delta)
        assert env.seq == 3
        assert cap.types() == ["demo_total", "error", "demo_delta"]
        assert cap.seqs() == [1, 2, 3]
        assert cap.events[0] == Total(value=1)
        assert cap.of_type(Total, Delta) == [Total(value=1), Delta(text="a")]
        assert "open envelopes=3" in repr(cap)


@on_backends()
async def test_wait_for_takes_types_tuples_predicates_and_a_count() -> None:
    async with _nucleus() as nucleus, capture(nucleus) as cap:
        await nucleus.send(Burst(count=5))
        third = await cap.wait_for(Tick, count=3)
        assert third.event == Tick(index=2)
        assert (await cap.wait_for((Total, Tick))).seq == 1
        assert (await cap.wait_for(lambda env: env.seq == 4)).event == Tick(index=3)
        with pytest.raises(ValueError, match="count"):
            await cap.wait_for(Tick, count=0)
        with pytest.raises(TypeError, match="predicate"):
            await cap.wait_for(42)  # type: ignore[arg-type]


@on_backends()
async def test_wait_for_raises_lookup_error_when_the_stream_ends_first() -> None:
    async with _nucleus() as nucleus, capture(nucleus) as cap:
        await nucleus.send(Stop())
        with pytest.raises(LookupError, match="ended after 1 envelopes"):
            await cap.wait_for(Delta)
        assert await cap.until_closed() == cap.envelopes
        with pytest.raises(LookupError, match="fewer than 5"):
            await cap.wait_count(5)


@on_backends()
async def test_wait_for_times_out_with_timeout_error() -> None:
    async with _nucleus() as nucleus, capture(nucleus) as cap:
        with pytest.raises(TimeoutError):
            await cap.wait_for(Delta, timeout=0)  # an already expired deadline: no real wait
        await nucleus.send(Say(text="late"))
        assert (await cap.wait_for(Delta, timeout=60)).event == Delta(text="late")


@on_backends()
async def test_until_closed_returns_everything_at_the_end_of_the_stream() -> None:
    nucleus = _nucleus()
    async with capture(nucleus) as cap:
        async with nucleus:
            for i in range(3):
                await nucleus.send(Add(amount=i))
        envelopes = await cap.until_closed()
        assert cap.closed
        assert "closed" in repr(cap)
    assert [env.event for env in envelopes] == [Total(value=0), Total(value=1), Total(value=3)]


@on_backends()
async def test_capture_records_a_disconnect() -> None:
    async with _nucleus() as nucleus:
        cap = capture(nucleus, policy="disconnect", buffer=1)
        await nucleus.send(Burst(count=3))  # the capture task has not run yet: it falls behind
        async with cap:
            await cap.until_closed()
        assert cap.disconnected is not None
        assert cap.disconnected.resume_from == 2
        assert cap.seqs() == [1]
        assert "disconnected" in repr(cap)


@on_backends()
async def test_leaving_capture_keeps_what_was_buffered_and_closes_the_subscription() -> None:
    async with _nucleus() as nucleus:
        cap = capture(nucleus, types=[Tick])
        async with cap:
            nucleus.send_nowait(Burst(count=2))
            nucleus.send_nowait(Add(amount=1))
            await cap.wait_count(2)
        assert cap.subscription.closed
        assert cap.types() == ["demo_tick", "demo_tick"]
        assert nucleus.statistics().subscribers == 0


@on_backends()
async def test_a_body_exception_leaves_capture_and_fake_clock_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with FakeClock() as clock, _nucleus(clock=clock) as nucleus, capture(nucleus):
            raise KeyError("mine")


def test_event_tag_is_the_wire_tag() -> None:
    assert event_tag(Total(value=1)) == "demo_total"
    assert event_tag(ErrorEvent(kind="k", message="m", signal_seq=1, signal_type="S")) == "error"


# -- the public strategies ----------------------------------------------------------------


@given(policy=policies(), lossy=policies(lossy_only=True), buffer=buffer_sizes(2, 5))
def test_policy_and_buffer_strategies_stay_in_range(policy: Policy, lossy: Policy, buffer: int) -> None:
    assert isinstance(policy, Policy)
    assert lossy in LOSSY_POLICIES
    assert lossy is not Policy.BLOCK
    assert 2 <= buffer <= 5


def test_buffer_sizes_refuse_a_minimum_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        buffer_sizes(0)


@given(signals=demo_signal_lists(max_size=10, failures=False, stop=True))
def test_demo_signal_lists_can_end_with_stop_and_leave_out_failures(signals: list[Signal]) -> None:
    assert isinstance(signals[-1], Stop)
    assert not any(isinstance(s, Boom | Stop) for s in signals[:-1])


@given(signals=demo_signal_lists(max_size=10, stop=False))
def test_demo_signal_lists_without_stop_never_stop(signals: list[Signal]) -> None:
    assert not any(isinstance(s, Stop) for s in signals)


def test_delta_merges_only_with_deltas() -> None:
    assert Delta(text="a").merge(Delta(text="b")) == Delta(text="ab")
    assert Delta(text="a").merge(Total(value=1)) is None
    assert Event.merge(Total(value=1), Total(value=2)) is None


def test_importing_oturn_loads_neither_oturn_testing_nor_hypothesis() -> None:
    code = (
        "import sys, oturn; bad = [m for m in sys.modules if m.startswith(('hypothesis', 'oturn.testing'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_oturn_testing_does_not_import_hypothesis() -> None:
    code = "import sys, oturn.testing; print([m for m in sys.modules if m.startswith('hypothesis')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
