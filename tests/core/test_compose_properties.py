"""Properties of composed reducers, under random signal sequences.

The caching stage (``compose_stages.Cache``) over a rejecting gate, driven by a fake
origin that completes (or fails) in-flight fetches in a random order:

- every request gets exactly one answer (a value, a rejection or a failure) and every
  value is the origin's value for that resource;
- the origin is never asked twice for a resource while a call for it is in flight, nor
  again once it answered it (the cache answers);
- replaying the logged signals through a fresh composed reducer gives the same
  transitions, byte for byte (msgspec encodings of events and effects);
- pass-through middleware placed anywhere never changes the events or effects.

And for any reducer: wrapping it as a part beside pass-through middleware leaves its
events, turns and terminal transitions as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from compose_stages import (
    App,
    Cache,
    Close,
    Failed,
    Fetch,
    Fetched,
    Gate,
    Got,
    Open,
    Refused,
    Want,
    failed,
    passthrough,
    value_of,
)
from hypothesis import given
from hypothesis import strategies as st

from oturn import ComposedReducer, ComposedState, Event, Signal, Transition, compose, part
from oturn.testing import drive
from oturn.testing.strategies import DemoState, demo_reducer, demo_signal_lists

RESOURCES = ("r0", "r1", "r2", "r3")

Op = tuple[str, int, bool]
"""``("want", resource, _)``, ``("finish", pick, ok)``, ``("close" | "open", _, _)``."""

ops = st.lists(
    st.one_of(
        st.tuples(st.just("want"), st.integers(0, len(RESOURCES) - 1), st.just(True)),
        st.tuples(st.just("finish"), st.integers(0, 7), st.booleans()),
        st.tuples(st.sampled_from(["close", "open"]), st.just(0), st.just(True)),
    ),
    max_size=40,
)


def cached_stack() -> ComposedReducer:
    return compose(app=App(), cache=Cache(), gate=Gate())


def padded_stack() -> ComposedReducer:
    return compose(top=passthrough(), app=App(), p1=passthrough(), cache=Cache(), p2=passthrough(), gate=Gate())


@dataclass
class Sim:
    """A composed reducer fed by the test, with a fake origin answering its ``Fetch`` effects."""

    reducer: ComposedReducer
    state: ComposedState = field(init=False)
    log: list[Signal] = field(default_factory=list)
    transitions: list[Transition[ComposedState]] = field(default_factory=list)
    in_flight: list[Fetch] = field(default_factory=list)
    calls: list[Fetch] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)
    requests: int = 0

    def __post_init__(self) -> None:
        self.state = self.reducer.initial()

    def feed(self, signal: Signal) -> None:
        t = self.reducer(self.state, signal)
        self.state = t.state
        self.log.append(signal)
        self.transitions.append(t)
        for effect in t.effects:
            assert isinstance(effect, Fetch), effect
            assert all(f.resource != effect.resource for f in self.in_flight), f"second call for {effect.resource}"
            assert effect.resource not in self.answered, f"{effect.resource} was fetched again despite the cache"
            self.in_flight.append(effect)
            self.calls.append(effect)

    def finish(self, pick: int, ok: bool) -> None:
        fetch = self.in_flight.pop(pick % len(self.in_flight))
        if ok:
            self.answered.add(fetch.resource)
            self.feed(Fetched(resource=fetch.resource, request=fetch.request, value=value_of(fetch.resource)))
        else:
            self.feed(failed(fetch, f"{fetch.resource} failed"))

    def play(self, script: list[Op]) -> Sim:
        for kind, number, ok in script:
            if kind == "want":
                self.requests += 1
                self.feed(Want(resource=RESOURCES[number], request=self.requests))
            elif kind == "finish":
                if self.in_flight:
                    self.finish(number, ok)
            else:
                self.feed(Close() if kind == "close" else Open())
        while self.in_flight:
            self.finish(0, True)
        return self

    @property
    def events(self) -> list[Event]:
        return [event for t in self.transitions for event in t.events]


def encoded(transitions: list[Transition[ComposedState]]) -> list[tuple[bytes, bytes, str | None, bool]]:
    return [
        (msgspec.json.encode(list(t.events)), msgspec.json.encode(list(t.effects)), t.turn, t.terminal)
        for t in transitions
    ]


@given(ops)
def test_every_request_gets_exactly_one_answer_and_the_origin_is_asked_once_per_resource(script: list[Op]) -> None:
    sim = Sim(cached_stack()).play(script)  # Sim.feed checks the origin is never asked twice
    answers: Counter[int] = Counter()
    wanted = {f.request: f.resource for f in sim.calls}
    for event in sim.events:
        if isinstance(event, Got):
            answers[event.request] += 1
            assert event.value == value_of(event.resource)
            if event.source == "origin":
                assert wanted[event.request] == event.resource
        elif isinstance(event, Refused | Failed):
            answers[event.request] += 1
    assert answers == Counter(range(1, sim.requests + 1))
    assert len({f.resource for f in sim.calls if f.resource in sim.answered}) == len(sim.answered)
    cache = sim.state["cache"]
    assert cache.waiting == ()
    assert cache.effects_seen == sim.requests
    assert cache.passed == len(sim.calls) + sim.state["gate"].rejected
    assert cache.hits + cache.held + cache.passed == sim.requests


@given(ops)
def test_replaying_the_signal_log_gives_identical_transitions(script: list[Op]) -> None:
    sim = Sim(cached_stack()).play(script)
    fresh = cached_stack()
    replay = drive(fresh, fresh.initial(), sim.log)
    assert encoded(replay.transitions) == encoded(sim.transitions)
    assert replay.state == sim.state


@given(ops)
def test_pass_through_middleware_never_changes_events_or_effects(script: list[Op]) -> None:
    plain = Sim(cached_stack()).play(script)
    padded = Sim(padded_stack()).play(script)
    assert encoded(padded.transitions) == encoded(plain.transitions)
    assert padded.log == plain.log
    for name in ("app", "cache", "gate"):
        assert padded.state[name] == plain.state[name]
    # The passthrough just above the gate sees every outside signal the gate does not swallow,
    # plus the gate's rejections rising from it; every Fetch the cache let through crosses it.
    gate = plain.state["gate"]
    outside = sum(1 for signal in padded.log if not isinstance(signal, Close | Open))
    assert padded.state["p2"] == (outside + gate.rejected, gate.passed + gate.rejected)


Wrap = Callable[[], ComposedReducer]

WRAPS: dict[str, Wrap] = {
    "alone": lambda: compose(inner=part(demo_reducer, DemoState())),
    "above": lambda: compose(p=passthrough(), inner=part(demo_reducer, DemoState())),
    "below": lambda: compose(inner=part(demo_reducer, DemoState()), p=passthrough()),
    "around": lambda: compose(a=passthrough(), inner=part(demo_reducer, DemoState()), b=passthrough()),
}


@given(demo_signal_lists(stop=None), st.sampled_from(sorted(WRAPS)))
def test_a_reducer_composed_with_pass_through_parts_publishes_what_it_did_alone(
    signals: list[Signal], wrap: str
) -> None:
    alone = drive(demo_reducer, DemoState(), signals, on_error="continue")
    reducer = WRAPS[wrap]()
    composed = drive(reducer, reducer.initial(), signals, on_error="continue")
    assert msgspec.json.encode(composed.events) == msgspec.json.encode(alone.events)
    assert [s.turn for s in composed.steps] == [s.turn for s in alone.steps]
    assert composed.terminated == alone.terminated
    assert composed.unreduced == alone.unreduced
    assert composed.state["inner"] == alone.state
