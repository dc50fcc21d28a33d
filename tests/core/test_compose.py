"""compose(): signals rise through the parts, effects descend through middleware, each part
owns its slice; a caching/coalescing stage and a rejecting gate (``compose_stages``) show
a middleware passing effects on, holding them, answering them itself and counting.

Parts are listed top (application) to bottom (I/O). Pure tests call the composed reducer
directly (or through ``drive``); the last ones run it on a real ``Nucleus`` with effect
handlers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import msgspec
import pytest
from compose_stages import (
    App,
    AppSlice,
    Asked,
    Cache,
    CacheSlice,
    Close,
    Failed,
    Fetch,
    Fetched,
    Gate,
    GateSlice,
    Got,
    Open,
    Ping,
    Refused,
    Trace,
    Want,
    failed,
    passthrough,
    tracer,
    value_of,
)

from oturn import (
    ComposedReducer,
    ComposedState,
    Effect,
    EffectCompleted,
    EffectContext,
    ErrorEvent,
    Event,
    FunctionPart,
    Nucleus,
    Part,
    ReducerContractError,
    Signal,
    Transition,
    UsageError,
    compose,
    part,
)
from oturn.testing import capture, drive, settle
from oturn.testing.strategies import Stop
from strategies import on_backends


class Explode(Signal, frozen=True, kw_only=True, tag="tc_explode"):
    pass


class Split(Signal, frozen=True, kw_only=True, tag="tc_split"):
    resources: tuple[str, ...]
    request: int


class Pong(Signal, frozen=True, kw_only=True, tag="tc_pong"):
    pass


def stack() -> ComposedReducer:
    """The application over the cache over the gate."""
    return compose(app=App(), cache=Cache(), gate=Gate())


def traces(events: Sequence[Event]) -> list[tuple[str, str, str]]:
    out = []
    for event in events:
        assert isinstance(event, Trace), event
        out.append((event.part, event.hook, event.what))
    return out


def run(reducer: ComposedReducer, *signals: Signal) -> tuple[ComposedState, list[Transition[ComposedState]]]:
    """Reduce ``signals`` from the initial state; the final state and every transition."""
    result = drive(reducer, reducer.initial(), signals)
    return result.state, result.transitions


def counting(state: int, signal: Signal) -> Transition[int]:
    return Transition(state + 1)


# -- signals rise ---------------------------------------------------------------------------


def test_a_signal_enters_at_the_bottom_and_rises_through_every_part() -> None:
    reducer = compose(top=tracer("top"), middle=tracer("middle"), bottom=tracer("bottom"))
    t = reducer(reducer.initial(), Want(resource="a", request=1))
    assert traces(t.events) == [
        ("bottom", "reduce", "cs_want"),
        ("middle", "reduce", "cs_want"),
        ("top", "reduce", "cs_want"),
    ]
    assert dict(t.state) == {"top": 1, "middle": 1, "bottom": 1}
    assert list(t.effects) == []
    assert t.terminal is False
    assert t.turn is None
    assert t.forward is None


def test_forward_empty_swallows_the_signal_so_the_parts_above_never_see_it() -> None:
    reducer = compose(app=tracer("app"), gate=Gate())
    t = reducer(reducer.initial(), Close())
    assert list(t.events) == []
    assert t.state["app"] == 0
    assert t.state["gate"] == GateSlice(open=False)


def test_forward_signals_replace_the_signal_for_the_parts_above() -> None:
    def split(state: None, signal: Signal) -> Transition[None]:
        if isinstance(signal, Split):
            return Transition(state, forward=[Want(resource=r, request=signal.request) for r in signal.resources])
        return Transition(state)

    reducer = compose(app=App(), split=part(split, None))
    t = reducer(reducer.initial(), Split(resources=("a", "b"), request=7))
    assert list(t.events) == [Asked(request=7, resource="a"), Asked(request=7, resource="b")]
    assert list(t.effects) == [Fetch(resource="a", request=7), Fetch(resource="b", request=7)]
    assert t.state["app"] == AppSlice(asked=2)


def test_a_forwarded_signal_from_the_top_part_goes_nowhere() -> None:
    reducer = compose(top=part(lambda s, sig: Transition(s + 1, forward=(Pong(),)), 0), low=tracer("low"))
    t = reducer(reducer.initial(), Open())
    assert traces(t.events) == [("low", "reduce", "cs_open")]
    assert dict(t.state) == {"top": 1, "low": 1}


# -- effects descend ------------------------------------------------------------------------


def test_effects_descend_through_middleware_and_leave_the_reducer_at_the_bottom() -> None:
    reducer = stack()
    t = reducer(reducer.initial(), Want(resource="a", request=1))
    assert list(t.events) == [Asked(request=1, resource="a")]
    assert list(t.effects) == [Fetch(resource="a", request=1)]
    assert t.state["cache"] == CacheSlice(waiting=(("a", (1,)),), effects_seen=1, passed=1, signals_seen=1)
    assert t.state["gate"] == GateSlice(passed=1)


def test_parts_without_on_effect_are_skipped_by_descending_effects() -> None:
    reducer = compose(app=App(), plain=tracer("plain"), gate=Gate())
    t = reducer(reducer.initial(), Want(resource="a", request=1))
    assert list(t.events) == [Trace(part="plain", hook="reduce", what="cs_want"), Asked(request=1, resource="a")]
    assert list(t.effects) == [Fetch(resource="a", request=1)]
    assert t.state["plain"] == 1  # its reduce ran once, no on_effect
    assert t.state["gate"] == GateSlice(passed=1)


def test_effects_of_a_part_descend_only_through_the_parts_below_it_before_the_signal_rises_on() -> None:
    reducer = compose(
        top=tracer("top", middleware=True),
        mid=tracer("mid", middleware=True, emit=lambda s: (Ping(),)),
        low=tracer("low", middleware=True),
    )
    t = reducer(reducer.initial(), Open())
    assert traces(t.events) == [
        ("low", "reduce", "cs_open"),
        ("mid", "reduce", "cs_open"),
        ("low", "on_effect", "cs_ping"),
        ("top", "reduce", "cs_open"),
    ]
    assert list(t.effects) == [Ping()]


def test_a_middleware_may_transform_or_split_an_effect_on_its_way_down() -> None:
    def shout(state: int, effect: Effect) -> Transition[int]:
        assert isinstance(effect, Fetch)
        upper = msgspec.structs.replace(effect, resource=effect.resource.upper())
        return Transition(state + 1, effects=(upper, Ping()))

    reducer = compose(app=App(), shout=part(counting, 0, on_effect=shout), low=tracer("low", middleware=True))
    t = reducer(reducer.initial(), Want(resource="a", request=1))
    assert list(t.effects) == [Fetch(resource="A", request=1), Ping()]
    assert [e for e in t.events if isinstance(e, Trace)] == [
        Trace(part="low", hook="reduce", what="cs_want"),
        Trace(part="low", hook="on_effect", what="cs_fetch"),
        Trace(part="low", hook="on_effect", what="cs_ping"),
    ]


def test_outcome_signals_pass_every_middleware_before_the_part_that_asked() -> None:
    reducer = compose(
        app=tracer("app", emit=lambda s: (Ping(),) if isinstance(s, Want) else ()),
        mid=tracer("mid", middleware=True),
        low=tracer("low", middleware=True),
    )
    _, (asked, outcome) = run(reducer, Want(resource="a", request=1), EffectCompleted(effect=Ping()))
    assert traces(asked.events) == [
        ("low", "reduce", "cs_want"),
        ("mid", "reduce", "cs_want"),
        ("app", "reduce", "cs_want"),
        ("mid", "on_effect", "cs_ping"),
        ("low", "on_effect", "cs_ping"),
    ]
    assert list(asked.effects) == [Ping()]
    assert traces(outcome.events) == [
        ("low", "reduce", "effect_completed"),
        ("mid", "reduce", "effect_completed"),
        ("app", "reduce", "effect_completed"),
    ]
    assert list(outcome.effects) == []


# -- the caching stage: pass on, hold, answer, count ------------------------------------------


def test_the_cache_answers_a_repeated_fetch_itself_and_the_answer_rises_from_it_upward() -> None:
    state, (first, outcome, second) = run(
        stack(),
        Want(resource="a", request=1),
        Fetched(resource="a", request=1, value="A"),
        Want(resource="a", request=2),
    )
    assert list(first.effects) == [Fetch(resource="a", request=1)]
    assert list(outcome.events) == [Got(request=1, resource="a", value="A", source="origin")]
    assert list(second.events) == [
        Asked(request=2, resource="a"),
        Got(request=2, resource="a", value="A", source="cache"),
    ]
    assert list(second.effects) == []  # nothing reaches the handlers
    cache = state["cache"]
    assert cache.cached == (("a", "A"),)
    assert cache.waiting == ()
    assert (cache.effects_seen, cache.passed, cache.hits, cache.held, cache.outcomes) == (2, 1, 1, 0, 1)
    # The cache's own answer starts above it: its reduce saw the 3 outside signals only.
    assert cache.signals_seen == 3
    assert state["gate"] == GateSlice(passed=1)
    assert state["app"] == AppSlice(asked=2, answered=2)


def test_a_duplicate_in_flight_fetch_is_held_and_one_outcome_answers_every_waiter() -> None:
    state, transitions = run(
        stack(),
        Want(resource="a", request=1),
        Want(resource="a", request=2),
        Want(resource="b", request=3),
        Want(resource="a", request=4),
        Fetched(resource="a", request=1, value="A"),
    )
    assert [list(t.effects) for t in transitions] == [
        [Fetch(resource="a", request=1)],
        [],
        [Fetch(resource="b", request=3)],
        [],
        [],
    ]
    assert list(transitions[-1].events) == [
        Got(request=1, resource="a", value="A", source="origin"),
        Got(request=2, resource="a", value="A", source="coalesced"),
        Got(request=4, resource="a", value="A", source="coalesced"),
    ]
    cache = state["cache"]
    assert cache.waiting == (("b", (3,)),)
    assert cache.cached == (("a", "A"),)
    assert (cache.passed, cache.held, cache.answered_held, cache.outcomes) == (2, 2, 2, 1)
    assert state["gate"] == GateSlice(passed=2)


def test_a_failed_fetch_reaches_every_waiter_with_the_same_error_and_is_not_cached() -> None:
    state, transitions = run(
        stack(),
        Want(resource="a", request=1),
        Want(resource="a", request=2),
        failed(Fetch(resource="a", request=1), "origin down"),
        Want(resource="a", request=3),
    )
    assert list(transitions[2].events) == [
        Failed(request=1, message="origin down"),
        Failed(request=2, message="origin down"),
    ]
    assert list(transitions[3].effects) == [Fetch(resource="a", request=3)]  # asked again
    assert state["cache"].cached == ()


def test_an_outcome_the_cache_is_not_waiting_for_passes_through_unchanged() -> None:
    state, (t,) = run(stack(), Fetched(resource="z", request=9, value="Z"))
    assert list(t.events) == [Got(request=9, resource="z", value="Z", source="origin")]
    assert state["cache"].cached == ()
    assert state["cache"].outcomes == 0
    assert state["cache"].signals_seen == 1


def test_the_cache_passes_effects_it_does_not_know_and_counts_them() -> None:
    reducer = compose(app=tracer("app", emit=lambda s: (Ping(), Fetch(resource="a", request=1))), cache=Cache())
    t = reducer(reducer.initial(), Open())
    assert list(t.effects) == [Ping(), Fetch(resource="a", request=1)]
    cache = t.state["cache"]
    assert (cache.effects_seen, cache.others_passed, cache.passed) == (2, 1, 1)


def test_the_gate_answers_with_a_rejection_while_its_slice_says_closed() -> None:
    state, (close, want, reopen, again) = run(
        stack(), Close(), Want(resource="a", request=1), Open(), Want(resource="a", request=2)
    )
    assert list(close.events) == []
    assert list(want.events) == [Asked(request=1, resource="a"), Refused(request=1, reason="closed")]
    assert list(want.effects) == []
    assert list(reopen.events) == []
    assert list(again.effects) == [Fetch(resource="a", request=2)]
    assert state["gate"] == GateSlice(open=True, passed=1, rejected=1)
    # The rejection rose through the cache, which stopped waiting and cached nothing.
    assert state["cache"].waiting == (("a", (2,)),)
    assert state["cache"].cached == ()
    assert state["cache"].outcomes == 1


def test_held_waiters_get_the_answer_even_when_the_gate_closed_meanwhile() -> None:
    state, transitions = run(
        stack(),
        Want(resource="a", request=1),
        Close(),
        Want(resource="a", request=2),
        Fetched(resource="a", request=1, value="A"),
    )
    assert list(transitions[2].events) == [Asked(request=2, resource="a")]  # held, never reached the gate
    assert [e for e in transitions[3].events if isinstance(e, Got)] == [
        Got(request=1, resource="a", value="A", source="origin"),
        Got(request=2, resource="a", value="A", source="coalesced"),
    ]
    assert state["gate"].rejected == 0


def test_pass_through_middleware_counts_without_changing_anything() -> None:
    signals = [
        Want(resource="a", request=1),
        Want(resource="a", request=2),
        Fetched(resource="a", request=1, value="A"),
    ]
    plain = drive(stack(), stack().initial(), signals)
    wrapped_reducer = compose(app=App(), p1=passthrough(), cache=Cache(), p2=passthrough(), gate=Gate())
    wrapped = drive(wrapped_reducer, wrapped_reducer.initial(), signals)
    assert wrapped.events == plain.events
    assert wrapped.effects == plain.effects
    # p1 sits above the cache: it sees the Want effects (2) and every signal the cache forwards.
    assert wrapped.state["p1"] == (4, 2)
    assert wrapped.state["p2"] == (3, 1)


# -- slices -----------------------------------------------------------------------------------


def test_the_composed_state_is_an_immutable_mapping_of_part_name_to_slice() -> None:
    reducer = stack()
    state = reducer.initial()
    assert isinstance(state, Mapping)
    assert list(state) == ["app", "cache", "gate"] == list(reducer.names)
    assert len(state) == 3
    assert state["cache"] == CacheSlice()
    assert "gate" in state
    assert "nope" not in state
    with pytest.raises(KeyError, match="nope"):
        state["nope"]
    assert state.slices == (AppSlice(), CacheSlice(), GateSlice())
    assert state == reducer.initial()
    assert hash(state) == hash(reducer.initial())
    assert state != compose(app=App(), cache=Cache()).initial()
    assert state != {"app": AppSlice(), "cache": CacheSlice(), "gate": GateSlice()}
    assert repr(compose(n=part(counting, 0), s=part(counting, "x")).initial()) == "ComposedState(n=0, s='x')"
    with pytest.raises(TypeError):
        state["app"] = AppSlice()  # type: ignore[index]


def test_each_part_gets_only_its_own_slice_and_untouched_slices_stay_the_same_objects() -> None:
    received: list[tuple[str, object]] = []

    def recorder(name: str) -> FunctionPart[tuple[str, int]]:
        def reduce(state: tuple[str, int], signal: Signal) -> Transition[tuple[str, int]]:
            received.append((name, state))
            return Transition((state[0], state[1] + 1))

        return part(reduce, (name, 0))

    reducer = compose(a=recorder("a"), b=recorder("b"), gate=Gate())
    state, _ = run(reducer, Pong(), Pong())
    assert received == [("b", ("b", 0)), ("a", ("a", 0)), ("b", ("b", 1)), ("a", ("a", 1))]
    assert dict(state) == {"a": ("a", 2), "b": ("b", 2), "gate": GateSlice()}
    before = reducer.initial()
    after = reducer(before, Close()).state
    assert after["a"] is before["a"]  # the gate swallowed Close: a's slice is the very same object
    assert after["gate"] == GateSlice(open=False)


def test_the_state_is_untouched_when_a_part_raises_after_others_changed_their_slices() -> None:
    def bomb(state: int, signal: Signal) -> Transition[int]:
        if isinstance(signal, Explode):
            raise RuntimeError("boom")
        return Transition(state + 1)

    reducer = compose(top=part(bomb, 0), cache=Cache(), low=part(counting, 0))
    state = reducer(reducer.initial(), Open()).state
    snapshot = (state.slices, dict(state))
    with pytest.raises(RuntimeError, match="boom"):
        reducer(state, Explode())
    assert (state.slices, dict(state)) == snapshot
    assert state["low"] == 1
    assert state["cache"].signals_seen == 1


def test_an_exception_from_on_effect_propagates_and_leaves_the_state_alone() -> None:
    def broken(state: int, effect: Effect) -> Transition[int]:
        raise ValueError("no effects today")

    reducer = compose(app=App(), mw=part(counting, 0, on_effect=broken))
    initial = reducer.initial()
    with pytest.raises(ValueError, match="no effects today"):
        reducer(initial, Want(resource="a", request=1))
    assert initial == reducer.initial()


def test_a_composed_reducer_refuses_a_state_it_did_not_make() -> None:
    reducer = stack()
    with pytest.raises(ReducerContractError, match="ComposedState"):
        reducer(compose(app=App()).initial(), Open())
    with pytest.raises(ReducerContractError):
        reducer({"app": AppSlice(), "cache": CacheSlice(), "gate": GateSlice()}, Open())  # type: ignore[arg-type]


# -- contract, terminal, turn, loops ---------------------------------------------------------


def test_a_part_returning_something_else_than_a_transition_breaks_the_contract_naming_it() -> None:
    reducer = compose(app=App(), broken=part(lambda s, sig: "oops", 0))  # type: ignore[arg-type,return-value]
    with pytest.raises(ReducerContractError, match=r"part 'broken' reduce\(\) returned str, not a Transition"):
        reducer(reducer.initial(), Open())


def test_an_on_effect_returning_something_else_breaks_the_contract_naming_the_part() -> None:
    reducer = compose(app=App(), mw=part(counting, 0, on_effect=lambda s, e: None))  # type: ignore[arg-type,return-value]
    with pytest.raises(ReducerContractError, match=r"part 'mw' on_effect\(\) returned NoneType"):
        reducer(reducer.initial(), Want(resource="a", request=1))


@pytest.mark.parametrize("where", ["top", "bottom", "middleware"])
def test_a_terminal_transition_from_any_part_makes_the_composed_transition_terminal(where: str) -> None:
    def reduce_for(name: str) -> FunctionPart[int]:
        def reduce(state: int, signal: Signal) -> Transition[int]:
            stop = name == where and isinstance(signal, Stop)
            effects = (Ping(),) if name == "top" else ()
            return Transition(state + 1, effects=effects, terminal=stop)

        def on_effect(state: int, effect: Effect) -> Transition[int]:
            return Transition(state, effects=(effect,), terminal=where == "middleware")

        return part(reduce, 0, on_effect=on_effect if name == "middleware" else None)

    reducer = compose(top=reduce_for("top"), middleware=reduce_for("middleware"), bottom=reduce_for("bottom"))
    t = reducer(reducer.initial(), Stop())
    assert t.terminal is True
    assert dict(t.state) == {"top": 1, "middleware": 1, "bottom": 1}  # every part still ran
    assert list(t.effects) == [Ping()]
    assert reducer(reducer.initial(), Open()).terminal is (where == "middleware")


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ({"top": "t-top", "mid": None, "low": "t-low"}, "t-low"),
        ({"top": "t-top", "mid": None, "low": None}, "t-top"),
        ({"top": "t-top", "mid": "t-mid", "low": None}, "t-mid"),
        ({"top": None, "mid": None, "low": None}, None),
    ],
)
def test_the_first_turn_reported_in_call_order_wins(turns: dict[str, str | None], expected: str | None) -> None:
    def with_turn(turn: str | None) -> FunctionPart[int]:
        return part(lambda s, sig: Transition(s, turn=turn), 0)

    reducer = compose(top=with_turn(turns["top"]), mid=with_turn(turns["mid"]), low=with_turn(turns["low"]))
    assert reducer(reducer.initial(), Open()).turn == expected


def test_a_turn_from_a_middleware_counts_in_call_order() -> None:
    reducer = compose(
        top=part(lambda s, sig: Transition(s, turn="top"), 0),
        app=part(lambda s, sig: Transition(s, effects=(Ping(),)), 0),
        mw=part(counting, 0, on_effect=lambda s, e: Transition(s, effects=(e,), turn="mw")),
    )
    # Call order: mw.reduce (no turn), app.reduce (no turn), mw.on_effect ("mw"), top.reduce ("top").
    assert reducer(reducer.initial(), Open()).turn == "mw"


def test_an_endless_answer_loop_hits_the_depth_limit_as_a_contract_error() -> None:
    asks = part(lambda s, sig: Transition(s + 1, effects=(Ping(),)), 0)
    answers = part(counting, 0, on_effect=lambda s, e: Transition(s + 1, forward=(Pong(),)))
    reducer = compose(asks=asks, answers=answers)
    initial = reducer.initial()
    with pytest.raises(ReducerContractError, match="more than 64 levels deep"):
        reducer(initial, Open())
    assert dict(initial) == {"asks": 0, "answers": 0}


def test_a_deep_but_finite_chain_of_answers_is_fine() -> None:
    def asks(state: int, signal: Signal) -> Transition[int]:
        return Transition(state + 1, effects=(Ping(),) if state < 20 else ())

    reducer = compose(
        asks=part(asks, 0), answers=part(counting, 0, on_effect=lambda s, e: Transition(s, forward=(Pong(),)))
    )
    t = reducer(reducer.initial(), Open())
    assert t.state["asks"] == 21
    assert list(t.effects) == []


# -- building ---------------------------------------------------------------------------------


def test_compose_takes_name_part_pairs_for_names_that_are_not_identifiers() -> None:
    reducer = compose(("the app", App()), ("cache-stage", Cache()), gate=Gate())
    assert reducer.names == ("the app", "cache-stage", "gate")
    t = reducer(reducer.initial(), Want(resource="a", request=1))
    assert t.state["cache-stage"].passed == 1
    assert list(t.effects) == [Fetch(resource="a", request=1)]


@pytest.mark.parametrize(
    "build",
    [
        lambda: compose(("app", App()), app=App()),
        lambda: compose(("app", App()), ("app", Cache())),
    ],
    ids=["pair-and-keyword", "two-pairs"],
)
def test_a_part_name_given_twice_is_a_usage_error(build: Any) -> None:
    with pytest.raises(UsageError, match="'app' given twice"):
        build()


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "at least one part"),
        ((App(),), {}, r"\(name, part\) pairs"),
        ((("app",),), {}, r"\(name, part\) pairs"),
        (((1, App()),), {}, r"\(name, part\) pairs"),
        ((), {"app": object()}, "part 'app' is not a Part"),
        ((), {"app": lambda state, signal: Transition(state)}, "part 'app' is not a Part"),
        ((), {"app": App}, "part 'app' is a class"),
    ],
    ids=["empty", "bare-part", "short-pair", "non-string-name", "object", "bare-function", "class"],
)
def test_compose_refuses_what_is_not_a_named_part(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        compose(*args, **kwargs)


def test_function_parts_come_from_a_reducer_an_initial_slice_and_an_optional_on_effect() -> None:
    plain = part(counting, 0)
    assert isinstance(plain, Part)
    assert isinstance(App(), Part)
    assert not isinstance(object(), Part)
    assert plain.initial() == 0
    assert plain.reduce(4, Open()) == Transition(5)
    assert plain.is_middleware is False
    assert plain.on_effect(3, Ping()) == Transition(3, effects=(Ping(),))  # what a plain part would do
    assert repr(plain) == "part('counting')"
    mw = part(counting, 0, on_effect=lambda s, e: Transition(s + 10, effects=()))
    assert mw.is_middleware is True
    assert mw.on_effect(1, Ping()) == Transition(11, effects=())
    reducer = compose(app=tracer("app", emit=lambda s: (Ping(),)), mw=mw)
    t = reducer(reducer.initial(), Open())
    assert list(t.effects) == []  # held by the function middleware
    assert t.state["mw"] == 11


# -- on a real nucleus --------------------------------------------------------------------------


class Origin:
    """The ``Fetch`` handler: counts calls, can wait for ``release``, fails for ``failing`` resources."""

    def __init__(self, *, wait: bool = False, failing: tuple[str, ...] = ()) -> None:
        self.calls: list[Fetch] = []
        self.release = anyio.Event()
        self.started = anyio.Event()
        self.wait = wait
        self.failing = failing

    async def __call__(self, effect: Fetch, ctx: EffectContext[Fetch]) -> Signal:
        self.calls.append(effect)
        self.started.set()
        if self.wait:
            await self.release.wait()
        if effect.resource in self.failing:
            raise RuntimeError(f"{effect.resource} is down")
        return Fetched(resource=effect.resource, request=effect.request, value=value_of(effect.resource))


def got(envelope_event: Event) -> tuple[int, str]:
    assert isinstance(envelope_event, Got)
    return envelope_event.request, envelope_event.source


@on_backends()
async def test_on_a_nucleus_a_cache_hit_never_calls_the_handler() -> None:
    origin = Origin()
    reducer = stack()
    async with Nucleus(reducer, reducer.initial(), handlers={Fetch: origin}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(Want(resource="a", request=1))
        await cap.wait_for(Got)
        await nucleus.send(Want(resource="a", request=2))
        await cap.wait_for(Got, count=2)
        assert [got(e) for e in cap.of_type(Got)] == [(1, "origin"), (2, "cache")]
        assert origin.calls == [Fetch(resource="a", request=1)]
        assert nucleus.statistics().effects_started == 1
        assert nucleus.state["cache"].hits == 1


@on_backends()
async def test_on_a_nucleus_concurrent_fetches_of_one_resource_share_one_handler_call() -> None:
    origin = Origin(wait=True)
    reducer = stack()
    async with Nucleus(reducer, reducer.initial(), handlers={Fetch: origin}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(Want(resource="b", request=1))
        await nucleus.send(Want(resource="b", request=2))
        await cap.wait_for(lambda env: env.event == Asked(request=2, resource="b"))
        await origin.started.wait()
        await settle()
        assert len(origin.calls) == 1
        assert nucleus.state["cache"].held == 1
        origin.release.set()
        await cap.wait_for(Got, count=2)
    assert [got(e) for e in cap.of_type(Got)] == [(1, "origin"), (2, "coalesced")]
    assert origin.calls == [Fetch(resource="b", request=1)]


@on_backends()
async def test_on_a_nucleus_a_failing_handler_fails_every_waiter_once() -> None:
    origin = Origin(wait=True, failing=("c",))
    reducer = stack()
    async with Nucleus(reducer, reducer.initial(), handlers={Fetch: origin}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(Want(resource="c", request=1))
        await nucleus.send(Want(resource="c", request=2))
        await cap.wait_for(lambda env: env.event == Asked(request=2, resource="c"))
        origin.release.set()
        await cap.wait_for(Failed, count=2)
    assert cap.of_type(Failed) == [Failed(request=1, message="c is down"), Failed(request=2, message="c is down")]
    assert len(origin.calls) == 1


@on_backends()
async def test_on_a_nucleus_a_closed_gate_rejects_without_calling_the_handler() -> None:
    origin = Origin()
    reducer = stack()
    async with Nucleus(reducer, reducer.initial(), handlers={Fetch: origin}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(Close())
        await nucleus.send(Want(resource="a", request=1))
        await cap.wait_for(Refused)
    assert cap.events == [Asked(request=1, resource="a"), Refused(request=1, reason="closed")]
    assert origin.calls == []


@on_backends()
async def test_on_a_nucleus_an_effect_completed_outcome_rises_through_the_middleware_first() -> None:
    async def ping(effect: Ping, ctx: EffectContext[Ping]) -> None:
        return None

    reducer = compose(
        app=tracer("app", emit=lambda s: (Ping(),) if isinstance(s, Open) else ()),
        mid=tracer("mid", middleware=True),
    )
    async with Nucleus(reducer, reducer.initial(), handlers={Ping: ping}) as nucleus, capture(nucleus) as cap:
        await nucleus.send(Open())
        await cap.wait_for(lambda env: isinstance(env.event, Trace) and env.event.what == "effect_completed", count=2)
    assert traces(cap.events) == [
        ("mid", "reduce", "cs_open"),
        ("app", "reduce", "cs_open"),
        ("mid", "on_effect", "cs_ping"),
        ("mid", "reduce", "effect_completed"),
        ("app", "reduce", "effect_completed"),
    ]


@on_backends()
async def test_on_a_nucleus_a_raising_part_leaves_the_composed_state_as_it_was() -> None:
    def bomb(state: int, signal: Signal) -> Transition[int]:
        if isinstance(signal, Explode):
            raise RuntimeError("boom")
        return Transition(state + 1)

    origin = Origin()
    reducer = compose(app=App(), bomb=part(bomb, 0), cache=Cache(), gate=Gate())
    async with (
        Nucleus(reducer, reducer.initial(), handlers={Fetch: origin}, on_reducer_error="continue") as nucleus,
        capture(nucleus) as cap,
    ):
        await nucleus.send(Want(resource="a", request=1))
        await cap.wait_for(Got)
        before = nucleus.state
        await nucleus.send(Explode())
        error = await cap.wait_for(ErrorEvent)
        assert nucleus.state is before  # the cache below the bomb had counted the signal: dropped
        await nucleus.send(Want(resource="a", request=2))
        await cap.wait_for(Got, count=2)
    assert isinstance(error.event, ErrorEvent)
    assert error.event.kind == "reducer"
    assert error.event.signal_type == "Explode"
    assert "boom" in error.event.message
    assert error.event.fatal is False
    # Explode left no trace; Want(a, 2) did (the cache's own answer rises above it).
    assert nucleus.state["cache"].signals_seen == before["cache"].signals_seen + 1
    assert [got(e) for e in cap.of_type(Got)] == [(1, "origin"), (2, "cache")]


@on_backends()
async def test_on_a_nucleus_a_part_breaking_the_contract_is_reported_by_name() -> None:
    reducer = compose(app=App(), broken=part(lambda s, sig: 42 if isinstance(sig, Explode) else Transition(s), 0))  # type: ignore[arg-type,return-value]
    async with Nucleus(reducer, reducer.initial(), on_reducer_error="continue") as nucleus, capture(nucleus) as cap:
        before = nucleus.state
        await nucleus.send(Explode())
        error = await cap.wait_for(ErrorEvent)
        assert nucleus.state is before
    assert isinstance(error.event, ErrorEvent)
    assert "part 'broken' reduce() returned int" in error.event.message
    assert [type(e) for e in cap.events] == [ErrorEvent]
