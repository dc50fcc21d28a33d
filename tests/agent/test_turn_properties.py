"""Properties of the turn reducer over random, state-aware signal sequences.

Each example draws a configuration and then, signal by signal, a plausible next signal
given the current state (see ``turn_strategies.next_signal``): current ids most of the
time, stale and unknown ones too. After every signal the invariants are checked; at the
end the whole run is replayed and must give identical transitions.
"""

from __future__ import annotations

import json

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from turn_strategies import POLICY, TOOL_NAMES, Run, Seen, assert_history_valid, configs, next_signal

from oturn.agent.deltas import TextDelta
from oturn.agent.effects import CallModel, RunTool
from oturn.agent.events import (
    ApprovalRequest,
    ApprovalResolved,
    InputQueued,
    MessageSent,
    StateChanged,
    TurnFinished,
    TurnStarted,
)
from oturn.agent.signals import Cancel, ModelDone, ModelStream, StartQueued, UserInput
from oturn.agent.state import AgentState
from oturn.agent.turn import TurnConfig, TurnReducer
from oturn.core.builtins import Feed
from oturn.core.messages import Signal
from oturn.core.transition import Transition
from oturn.testing import drive

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _is_json_object(text: str) -> bool:
    if not text.strip():
        return True
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


class Invariants:
    """Checks every transition of one run against the reducer's promises."""

    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.open_turn: str | None = None
        self.started: list[str] = []
        self.finished: list[str] = []
        self.asked: set[str] = set()
        self.approved: set[str] = set()
        self.denied: set[str] = set()
        self.ran: set[str] = set()
        self.model_calls: set[str] = set()
        self.last_phase = "idle"
        self.accepted: list[str] = []
        self.sent: list[str] = []

    def check(self, before: AgentState, t: Transition[AgentState]) -> None:
        after = t.state
        # (1) every turn that starts gets exactly one turn_finished; one open turn at most
        for event in t.events:
            if isinstance(event, TurnStarted):
                assert self.open_turn is None, f"{event.turn} started while {self.open_turn} was open"
                assert event.turn not in self.started
                self.open_turn = event.turn
                self.started.append(event.turn)
            elif isinstance(event, TurnFinished):
                assert self.open_turn == event.turn, f"{event.turn} finished but {self.open_turn} was open"
                self.open_turn = None
                self.finished.append(event.turn)
            elif isinstance(event, ApprovalRequest):
                self.asked.add(event.id)
            elif isinstance(event, ApprovalResolved):
                (self.approved if event.approved else self.denied).add(event.id)
            elif isinstance(event, InputQueued):
                self.accepted.append(event.input_id)
            elif isinstance(event, MessageSent):
                self.sent.append(event.input_id)
                if event.input_id not in self.accepted:
                    self.accepted.append(event.input_id)
            elif isinstance(event, StateChanged):
                assert event.previous == self.last_phase, (event, self.last_phase)
                self.last_phase = event.phase
        assert after.turn == self.open_turn
        # the envelope's turn: the open turn, or the one this transition ended
        if t.events and t.turn is not None:
            ended = [e.turn for e in t.events if isinstance(e, TurnFinished)]
            assert t.turn == after.turn or t.turn in ended, (t.turn, after.turn, ended)
        # (2) a tool runs once, only when known, well-formed, allowed and (if asked) approved
        for effect in t.effects:
            if isinstance(effect, CallModel):
                assert effect.key not in self.model_calls, f"model call {effect.key} started twice"
                assert effect.key == after.call
                self.model_calls.add(effect.key)
            if not isinstance(effect, RunTool):
                continue
            key = effect.key
            assert key not in self.ran, f"{key} ran twice"
            self.ran.add(key)
            assert key not in self.denied, f"{key} ran after it was denied"
            assert effect.name in TOOL_NAMES, f"unknown tool {effect.name} ran"
            assert _is_json_object(effect.arguments), f"{key} ran with {effect.arguments!r}"
            rule = POLICY.rule(effect.name)
            assert rule != "deny", f"{key} ({effect.name}) ran although the policy denies it"
            if key in self.asked:
                assert key in self.approved, f"{key} ran before its approval"
            elif rule == "ask":
                assert effect.name in before.always, f"{key} ({effect.name}) ran without being asked"
            [call] = [c for c in after.calls if c.key == key]
            assert call.status == "running"
            assert call.name == effect.name
        # (3) at rest, the history is provider-valid and nothing is pending
        if after.phase in ("idle", "error"):
            assert after.turn is None
            assert after.call is None
            assert after.calls == ()
            assert after.choices == ()
            assert not after.stop_after_step
            assert_history_valid(after.history)
        else:
            assert after.turn is not None
        # a pending choice always belongs to a running call
        running = {c.key for c in after.calls if c.status == "running"}
        for choice in after.choices:
            assert choice.call in running, f"choice {choice.id} of {choice.call}, which is not running"
        # the phase says what the session waits for
        if after.phase == "thinking":
            assert after.call is not None
            assert after.calls == ()
        if after.phase == "attention":
            assert after.choices or any(c.status == "approval" for c in after.calls)
        if after.phase == "running":
            assert running
            assert not after.choices
            assert not any(c.status == "approval" for c in after.calls)
        # (5) the last state_changed tells the state's phase
        assert self.last_phase == after.phase
        # with the queue policy, inputs start in the order they were accepted
        if self.config.input_policy == "queue":
            assert self.sent == self.accepted[: len(self.sent)], (self.sent, self.accepted)
        # the usage totals only grow
        assert after.session_usage.calls >= before.session_usage.calls

    def at_end(self, state: AgentState) -> None:
        assert self.finished == self.started[: len(self.finished)]
        if state.turn is None:
            assert self.finished == self.started
        else:
            assert self.started[len(self.finished) :] == [state.turn]


def encode(transitions: list[Transition[AgentState]]) -> list[bytes]:
    return [msgspec.json.encode([t.state, list(t.events), list(t.effects), t.turn, t.terminal]) for t in transitions]


@PROPERTY_SETTINGS
@given(config=configs(), data=st.data())
def test_random_signal_sequences_keep_the_turn_invariants(config: TurnConfig, data: st.DataObject) -> None:
    r = Run(config)
    invariants = Invariants(config)
    seen = Seen()
    length = data.draw(st.integers(min_value=1, max_value=60), label="length")
    fed: list[Signal] = []
    for _ in range(length):
        seen.note(r.state)
        deliver: bool = data.draw(st.booleans(), label="deliver a fed signal") if fed else False
        if deliver:
            signal = fed.pop(0)
        else:
            signal = data.draw(next_signal(r.state, seen), label="signal")
        before = r.state
        t = r(signal)
        fed.extend(e.signal for e in t.effects if isinstance(e, Feed))
        invariants.check(before, t)
    invariants.at_end(r.state)

    # (4) replay: the same signals from the initial state give identical transitions
    replayed = drive(TurnReducer(config), AgentState(), r.signals)
    assert encode(replayed.transitions) == encode(r.transitions)
    assert replayed.state == r.state


@settings(PROPERTY_SETTINGS, max_examples=100)
@given(config=configs(), data=st.data())
def test_a_finished_turn_can_always_be_followed_by_a_working_one(config: TurnConfig, data: st.DataObject) -> None:
    """Whatever happened before, once the session is at rest a new input starts a turn that can complete."""
    r = Run(config)
    seen = Seen()
    for _ in range(data.draw(st.integers(min_value=0, max_value=30), label="length")):
        seen.note(r.state)
        r(data.draw(next_signal(r.state, seen), label="signal"))
    # bring the session to rest: cancel whatever runs, then start what is queued
    r(Cancel(mode="immediate"))
    while r.state.queue:
        assert r.state.turn is None
        r(StartQueued())
        r(Cancel(mode="immediate"))
    assert r.state.phase in ("idle", "error")
    assert_history_valid(r.state.history)
    turns = r.state.turns
    t = r(UserInput(id="final", text="last question"))
    key = f"t{turns + 1}.1"
    assert [e.key for e in t.effects if isinstance(e, CallModel)] == [key]
    r(ModelStream(call=key, deltas=(TextDelta(text="last answer"),)))
    t = r(ModelDone(call=key))
    done = [e for e in t.events if isinstance(e, TurnFinished)]
    assert [(e.outcome, e.text, e.input_id) for e in done] == [("completed", "last answer", "final")]
    assert_history_valid(r.state.history)
    assert r.state.history[-2:] == (
        {"role": "user", "content": "last question"},
        {"role": "assistant", "content": "last answer"},
    )
