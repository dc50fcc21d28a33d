"""Transition: the positional and OTURN keyword forms, defaults, immutability, equality, repr."""

from __future__ import annotations

import msgspec
import pytest

from oturn import Effect, Event, Signal, StartTimer, Transition
from oturn.testing import drive


class Said(Event, frozen=True, kw_only=True, tag="tt_said"):
    text: str


class Go(Signal, frozen=True, kw_only=True, tag="tt_go"):
    text: str = ""
    last: bool = False


class Job(Effect, frozen=True, kw_only=True, tag="tt_job"):
    pass


def test_state_and_events_are_positional() -> None:
    t = Transition(3, [Said(text="a")])
    assert t.state == 3
    assert list(t.events) == [Said(text="a")]


def test_oturn_keyword_style_with_three_fields_still_works() -> None:
    t = Transition(state={"n": 1}, events=[Said(text="bye")], terminal=True)
    assert t.state == {"n": 1}
    assert list(t.events) == [Said(text="bye")]
    assert t.terminal is True


def test_defaults_say_nothing_happened_beyond_the_new_state() -> None:
    t = Transition("s")
    assert t.events == ()
    assert t.effects == ()
    assert t.terminal is False
    assert t.turn is None
    assert t.forward is None


def test_effects_terminal_turn_and_forward_are_keyword_only() -> None:
    t = Transition(0, (), effects=(Job(),), terminal=True, turn="t1", forward=(Go(),))
    assert (list(t.effects), t.terminal, t.turn, list(t.forward or ())) == ([Job()], True, "t1", [Go()])
    with pytest.raises(TypeError):
        Transition(0, (), (Job(),))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Transition()  # type: ignore[call-arg]


def test_a_transition_is_immutable() -> None:
    t = Transition(1, [Said(text="a")])
    with pytest.raises(AttributeError):
        t.state = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        t.terminal = True  # type: ignore[misc]
    changed = msgspec.structs.replace(t, terminal=True)
    assert (t.terminal, changed.terminal, changed.state) == (False, True, 1)


def test_transitions_are_equal_field_by_field() -> None:
    assert Transition(1, (Said(text="a"),)) == Transition(state=1, events=(Said(text="a"),))
    assert Transition(1) == Transition(1, (), effects=(), terminal=False, turn=None, forward=None)
    assert Transition(1) != Transition(2)
    assert Transition(1) != Transition(1, terminal=True)
    assert Transition(1) != Transition(1, turn="t")
    assert Transition(1) != Transition(1, forward=())  # swallowing is not passing on
    # Sequences compare by type too: a list of events is not equal to the same tuple.
    assert Transition(1, [Said(text="a")]) != Transition(1, (Said(text="a"),))
    assert hash(Transition(1, (Said(text="a"),))) == hash(Transition(1, (Said(text="a"),)))


def test_the_repr_shows_every_field() -> None:
    t = Transition(1, [Said(text="a")], terminal=True)
    assert repr(t) == (
        "Transition(state=1, events=[Said(text='a')], effects=(), terminal=True, turn=None, forward=None)"
    )


def test_a_subscripted_transition_is_still_a_transition() -> None:
    t = Transition[int](state=3, events=[])
    assert type(t) is Transition
    assert t == Transition(3, [])


def test_a_transition_encodes_with_tagged_events_and_effects() -> None:
    t = Transition(7, (Said(text="a"),), effects=(StartTimer(key="k", delay=1.5),), turn="t1")
    assert msgspec.json.decode(msgspec.json.encode(t)) == {
        "state": 7,
        "events": [{"type": "tt_said", "text": "a"}],
        "effects": [{"type": "start_timer", "key": "k", "delay": 1.5}],
        "terminal": False,
        "turn": "t1",
        "forward": None,
    }


def test_an_oturn_style_reducer_runs_unchanged() -> None:
    def oturn_reducer(state: list[str], signal: Signal) -> Transition[list[str]]:
        assert isinstance(signal, Go)
        new = [*state, signal.text]
        return Transition(state=new, events=[Said(text=signal.text)], terminal=signal.last)

    result = drive(oturn_reducer, [], [Go(text="a"), Go(text="b", last=True), Go(text="never")])
    assert result.state == ["a", "b"]
    assert result.events == [Said(text="a"), Said(text="b")]
    assert result.terminated is True
    assert result.unreduced == [Go(text="never")]
