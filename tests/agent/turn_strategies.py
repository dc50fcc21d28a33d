"""Helpers for the turn reducer's tests: a stepping harness, a history validator, and
Hypothesis strategies for agent signal sequences.

Imported as ``turn_strategies`` (``tests/agent`` is on ``sys.path``: no ``__init__.py``).

The signal strategy looks at the current :class:`~oturn.agent.state.AgentState` (and the
ids seen so far) to pick plausible ids most of the time: the current model call, the
keys of running or pending tool calls, pending approval and choice ids, the running
turn. Random ids would almost never hit anything; stale ones are drawn too, so late and
duplicate signals are exercised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import strategies as st

from oturn.agent.deltas import (
    AnyDelta,
    FinishDelta,
    ReasoningDelta,
    StreamErrorDelta,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
)
from oturn.agent.effects import CallModel, RunTool
from oturn.agent.signals import (
    Approve,
    Cancel,
    CancelMode,
    ChoiceAsked,
    Choose,
    Deny,
    ModelDone,
    ModelStream,
    StartQueued,
    ToolFinished,
    ToolProgress,
    ToolStatus,
    UserInput,
)
from oturn.agent.state import AgentState
from oturn.agent.turn import TurnConfig, TurnReducer
from oturn.agent.usage import Usage
from oturn.core.builtins import EffectCancelled, EffectFailed, ErrorInfo, TimerFired
from oturn.core.messages import Effect, Event, Signal
from oturn.core.transition import Transition
from oturn.tools.approval import ApprovalPolicy

__all__ = [
    "POLICY",
    "TOOL_NAMES",
    "TOOLS",
    "Run",
    "Seen",
    "assert_history_valid",
    "configs",
    "next_signal",
    "tool_schema",
]

T = TypeVar("T")

# -- the tools the reducer is configured with ---------------------------------------------

TOOL_NAMES = ("read", "write", "shell", "rm", "seq")
"""``read``/``write``/``seq``: auto; ``shell``: ask; ``rm``: deny; ``seq`` is sequential."""

POLICY = ApprovalPolicy.from_mapping({"shell": "ask", "rm": "deny", "*": "auto"})


def tool_schema(name: str) -> dict[str, Any]:
    """An OpenAI function-tool schema for ``name`` (the reducer only reads the name)."""
    return {
        "type": "function",
        "function": {"name": name, "description": f"the {name} tool", "parameters": {"type": "object"}},
    }


TOOLS: tuple[dict[str, Any], ...] = tuple(tool_schema(name) for name in TOOL_NAMES)


# -- history validity ---------------------------------------------------------------------


def assert_history_valid(history: Sequence[Mapping[str, Any]]) -> None:
    """Assert that ``history`` can be sent to any provider as it is.

    Every assistant message with ``tool_calls`` is immediately followed by exactly one
    tool message per call id (in any order), ids are unique within the message, no tool
    message is orphaned, every ``content`` is a string (an assistant message with tool
    calls may have ``None``), and every call's ``arguments`` is a JSON object's text.
    """
    i = 0
    n = len(history)
    while i < n:
        message = history[i]
        role = message.get("role")
        assert role in ("system", "user", "assistant", "tool"), f"message {i} has role {role!r}"
        assert role != "tool", f"message {i} is a tool message that answers no call: {message!r}"
        content = message.get("content")
        calls = message.get("tool_calls") if role == "assistant" else None
        if not calls:
            assert isinstance(content, str), f"message {i} has content {content!r}"
            i += 1
            continue
        assert content is None or isinstance(content, str), f"message {i} has content {content!r}"
        ids: list[str] = []
        for call in calls:
            assert call.get("type") == "function", call
            call_id = call.get("id")
            assert isinstance(call_id, str), f"a tool call of message {i} has no id: {call!r}"
            assert call_id, f"a tool call of message {i} has an empty id: {call!r}"
            function = call["function"]
            assert isinstance(function.get("name"), str), call
            arguments = function.get("arguments")
            assert isinstance(arguments, str), f"arguments of {call['id']} are not text: {arguments!r}"
            try:
                decoded = json.loads(arguments)
            except ValueError:
                raise AssertionError(f"arguments of {call['id']} are not JSON: {arguments!r}") from None
            assert isinstance(decoded, dict), f"arguments of {call['id']} are not a JSON object: {arguments!r}"
            ids.append(call_id)
        assert len(set(ids)) == len(ids), f"message {i} repeats a tool call id: {ids!r}"
        answers = history[i + 1 : i + 1 + len(ids)]
        roles = [m.get("role") for m in answers]
        assert roles == ["tool"] * len(ids), f"message {i} has {len(ids)} tool calls but is followed by {roles!r}"
        answered = sorted(str(m.get("tool_call_id")) for m in answers)
        assert answered == sorted(ids), f"the tool messages after message {i} answer {answered!r}, not {ids!r}"
        for answer in answers:
            assert isinstance(answer.get("content"), str), answer
        i += 1 + len(ids)


# -- a stepping harness -------------------------------------------------------------------


class Run:
    """Reduce signals one at a time with a :class:`TurnReducer`, keeping everything."""

    def __init__(self, config: TurnConfig | None = None) -> None:
        self.reducer = TurnReducer(config)
        self.config = self.reducer.config
        self.state: AgentState = self.reducer.initial()
        self.signals: list[Signal] = []
        self.transitions: list[Transition[AgentState]] = []

    def __call__(self, signal: Signal) -> Transition[AgentState]:
        t = self.reducer(self.state, signal)
        self.signals.append(signal)
        self.transitions.append(t)
        self.state = t.state
        return t

    def feed(self, *signals: Signal) -> list[Transition[AgentState]]:
        return [self(signal) for signal in signals]

    @property
    def events(self) -> list[Event]:
        return [event for t in self.transitions for event in t.events]

    @property
    def effects(self) -> list[Effect]:
        return [effect for t in self.transitions for effect in t.effects]


# -- strategies ---------------------------------------------------------------------------


@st.composite
def configs(draw: st.DrawFn) -> TurnConfig:
    """Reducer configurations over :data:`TOOLS` and :data:`POLICY`, with random limits and policies."""
    return TurnConfig(
        model="m",
        system=draw(st.sampled_from([None, "be terse"])),
        tools=TOOLS,
        sequential=frozenset({"seq"}),
        decide=POLICY.decide,
        max_steps=draw(st.integers(min_value=1, max_value=4)),
        input_policy=draw(st.sampled_from(["queue", "interrupt", "reject"])),
        max_parallel_tools=draw(st.integers(min_value=1, max_value=3)),
        approval_timeout=draw(st.sampled_from([None, 30.0])),
        approval_timeout_outcome=draw(st.sampled_from(["deny", "approve", "deny_and_stop"])),
    )


@dataclass
class Seen:
    """Ids seen so far in a run (the strategy draws stale ones from these)."""

    inputs: int = 0
    choices: int = 0
    calls: set[str] = field(default_factory=set)
    tool_keys: set[str] = field(default_factory=set)
    requests: set[str] = field(default_factory=set)
    turns: set[str] = field(default_factory=set)

    def note(self, state: AgentState) -> None:
        if state.call is not None:
            self.calls.add(state.call)
        if state.turn is not None:
            self.turns.add(state.turn)
        for call in state.calls:
            self.tool_keys.add(call.key)
        for choice in state.choices:
            self.requests.add(choice.id)


_ARGUMENTS = ['{"path": "a"}', "{}", "", '{"path": ', '"a"}', "[1]", "nope", '{"x": [1, 2]}']
_CALL_IDS = [None, "call_a", "call_b", "call_c"]
_ERROR = ErrorInfo(type="ProviderError", message="boom", kind="error", status=500)


def _one_delta() -> st.SearchStrategy[AnyDelta]:
    return st.one_of(
        st.builds(TextDelta, text=st.sampled_from(["Hel", "lo", " ", ""])),
        st.builds(ReasoningDelta, text=st.sampled_from(["think", ""])),
        st.builds(
            ToolCallDelta,
            index=st.sampled_from([None, 0, 1, 2]),
            id=st.sampled_from(_CALL_IDS),
            name=st.sampled_from([None, *TOOL_NAMES, "nope"]),
            arguments=st.sampled_from([None, *_ARGUMENTS]),
        ),
        st.builds(FinishDelta, reason=st.sampled_from(["stop", "tool_calls", "length"])),
        st.builds(
            UsageDelta,
            usage=st.builds(
                Usage,
                prompt_tokens=st.integers(0, 50),
                completion_tokens=st.integers(0, 50),
                cost=st.sampled_from([None, 0.5]),
            ),
        ),
    )


@st.composite
def _whole_tool_calls(draw: st.DrawFn) -> tuple[AnyDelta, ...]:
    """One to three complete tool calls (split in fragments), often followed by a finish."""
    n = draw(st.integers(min_value=1, max_value=3))
    deltas: list[AnyDelta] = []
    for index in range(n):
        name = _element(draw, [*TOOL_NAMES, "shell", "read", "nope"])
        arguments = _element(draw, ['{"path": "a"}', "{}", '{"path": "a"}', "[1]", "{bad", ""])
        call_id = _element(draw, [f"call_{index}", f"call_{index}", None, "call_0"])
        cut = draw(st.integers(min_value=0, max_value=len(arguments)))
        deltas.append(ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments[:cut]))
        deltas.append(ToolCallDelta(index=index, arguments=arguments[cut:]))
    if draw(st.booleans()):
        deltas.append(FinishDelta(reason=_element(draw, ["tool_calls", "tool_calls", "length"])))
    return tuple(deltas)


_BATCHES: st.SearchStrategy[tuple[AnyDelta, ...]] = st.one_of(
    _whole_tool_calls(),
    st.lists(_one_delta(), min_size=1, max_size=5).map(tuple),
    st.just((TextDelta(text="The answer."), FinishDelta(reason="stop"))),
    st.just((TextDelta(text="par"), StreamErrorDelta(error=_ERROR))),
)
_BOOLS = st.booleans()
_EDITED = st.sampled_from([None, None, '{"path": "b"}', "not json", "[2]", ""])
_MODES: st.SearchStrategy[CancelMode] = st.sampled_from(["immediate", "after_step"])
_TEXTS = st.sampled_from(["hi", "do it", "", "  "])
_VALUES = st.sampled_from(["a", "b", "zzz"])
_TOOL_STATUS: st.SearchStrategy[ToolStatus] = st.sampled_from(["ok", "ok", "error", "timeout"])
_DENY_MESSAGES = st.sampled_from(["", "no"])


def _element(draw: st.DrawFn, options: Sequence[T]) -> T:
    """One of ``options`` (cheaper than building a ``sampled_from`` strategy per draw)."""
    i: int = draw(st.integers(min_value=0, max_value=len(options) - 1))
    return options[i]


def _pick(draw: st.DrawFn, current: Sequence[str], stale: set[str], extra: Sequence[str]) -> str:
    """One of ``current`` most of the time (when there are any), else a stale or unknown id."""
    roll: int = draw(st.integers(min_value=0, max_value=3))
    if current and roll:
        return _element(draw, current)
    return _element(draw, [*sorted(stale), *extra])


_KINDS = (
    "input",
    "stream",
    "done",
    "model_failed",
    "tool_finished",
    "tool_failed",
    "tool_cancelled",
    "progress",
    "choice_asked",
    "approve",
    "deny",
    "timer",
    "choose",
    "cancel",
    "start_queued",
)


@st.composite
def next_signal(draw: st.DrawFn, state: AgentState, seen: Seen) -> Signal:
    """A plausible next signal given ``state`` (and stale ids from ``seen``).

    The kinds that fit the state are weighted up (stream chunks while thinking, tool
    outcomes while running, answers while waiting for the user), but every kind can
    be drawn at any time.
    """
    weights = dict.fromkeys(_KINDS, 1)
    if state.turn is None:
        weights["input"] = 6
        weights["start_queued"] = 6 if state.queue else 1
    if state.call is not None:
        weights["stream"] = 12
        weights["done"] = 6
    if any(c.status == "running" for c in state.calls):
        weights["tool_finished"] = 8
        weights["choice_asked"] = 2
    if any(c.status == "approval" for c in state.calls):
        weights["approve"] = 5
        weights["deny"] = 3
        weights["timer"] = 2
    if state.choices:
        weights["choose"] = 5
    kinds = [kind for kind, weight in weights.items() for _ in range(weight)]
    kind = _element(draw, kinds)

    running = [c.key for c in state.calls if c.status == "running"]
    pending = [c.key for c in state.calls if c.status == "approval"]

    def model_call() -> str:
        return _pick(draw, [state.call] if state.call else [], seen.calls, ["t1.1", "t9.9"])

    def tool_key() -> str:
        return _pick(draw, running, seen.tool_keys, ["t1.1.0", "t9.9.9"])

    def request() -> str:
        return _pick(draw, pending, seen.requests | seen.tool_keys, ["nope"])

    if kind == "input":
        seen.inputs += 1
        return UserInput(id=f"in{seen.inputs}", text=draw(_TEXTS))
    if kind == "stream":
        return ModelStream(call=model_call(), deltas=draw(_BATCHES))
    if kind == "done":
        return ModelDone(call=model_call())
    if kind == "model_failed":
        return EffectFailed(effect=CallModel(key=model_call(), model="m", messages=[]), error=_ERROR)
    if kind == "tool_finished":
        key = _pick(draw, running or [c.key for c in state.calls], seen.tool_keys, ["t9.9.9"])
        return ToolFinished(call=key, content=_element(draw, ["ok", "result"]), status=draw(_TOOL_STATUS))
    if kind == "tool_failed":
        return EffectFailed(
            effect=RunTool(key=tool_key(), name="read", arguments="{}"),
            error=ErrorInfo(type="RuntimeError", message="tool crashed"),
        )
    if kind == "tool_cancelled":
        return EffectCancelled(effect=RunTool(key=tool_key(), name="read", arguments="{}"))
    if kind == "progress":
        return ToolProgress(call=tool_key(), text="50%")
    if kind == "choice_asked":
        seen.choices += 1
        key = tool_key()
        return ChoiceAsked(id=f"{key}.c{seen.choices}", call=key, prompt="which?", options={"a": "A", "b": "B"})
    if kind == "approve":
        return Approve(id=request(), arguments=draw(_EDITED), always=draw(_BOOLS))
    if kind == "deny":
        return Deny(id=request(), message=draw(_DENY_MESSAGES), stop=draw(_BOOLS))
    if kind == "timer":
        ours: bool = bool(pending) or draw(_BOOLS)
        return TimerFired(key="approval:" + request() if ours else "other:timer")
    if kind == "choose":
        choice = _pick(draw, [c.id for c in state.choices], seen.requests, ["nope"])
        return Choose(id=choice, value=draw(_VALUES))
    if kind == "cancel":
        current = [state.turn] if state.turn is not None else []
        anyone: bool = draw(_BOOLS)
        turn = None if anyone else _pick(draw, current, seen.turns, ["t1", "t7"])
        return Cancel(mode=draw(_MODES), turn=turn)
    return StartQueued()
