"""The pure turn reducer, driven signal by signal (no event loop): every behaviour by name."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from turn_strategies import POLICY, TOOLS, Run, assert_history_valid

from oturn.agent.deltas import (
    AnyDelta,
    FinishDelta,
    ReasoningDelta,
    StreamErrorDelta,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
)
from oturn.agent.effects import CallModel, DeliverChoice, RunTool
from oturn.agent.events import (
    ApprovalRequest,
    ApprovalResolved,
    AssistantDelta,
    AssistantFinal,
    AssistantReasoningDelta,
    CancelRequested,
    ChoiceRequest,
    ChoiceResolved,
    Ignored,
    InputQueued,
    InputRejected,
    MessageSent,
    RunAborted,
    StateChanged,
    ToolCall,
    ToolExit,
    ToolOutput,
    ToolResult,
    ToolStarted,
    TurnFinished,
    TurnStarted,
    UsageReport,
)
from oturn.agent.events import ToolCallDelta as ToolCallDeltaEvent
from oturn.agent.signals import (
    Approve,
    Cancel,
    ChoiceAsked,
    Choose,
    Deny,
    ModelDone,
    ModelStream,
    StartQueued,
    ToolFinished,
    ToolProgress,
    UserInput,
)
from oturn.agent.state import AgentState
from oturn.agent.turn import InputPolicy, TimeoutOutcome, TurnConfig
from oturn.agent.usage import Usage
from oturn.core.builtins import (
    CancelEffect,
    CancelTimer,
    EffectCancelled,
    EffectFailed,
    ErrorInfo,
    Feed,
    StartTimer,
    TimerFired,
)
from oturn.core.messages import Event
from oturn.core.transition import Transition
from oturn.testing import drive, event_tag

# -- helpers ------------------------------------------------------------------------------


def config(**overrides: Any) -> TurnConfig:
    settings: dict[str, Any] = {
        "model": "m",
        "tools": TOOLS,
        "sequential": frozenset({"seq"}),
        "decide": POLICY.decide,
    }
    settings.update(overrides)
    return TurnConfig(**settings)


def run(**overrides: Any) -> Run:
    return Run(config(**overrides))


def tags(events: Sequence[Event]) -> list[str]:
    return [event_tag(e) for e in events]


def of(items: Sequence[Any], kind: type[Any]) -> list[Any]:
    return [item for item in items if isinstance(item, kind)]


def phases(events: Sequence[Event]) -> list[str]:
    return [e.phase for e in events if isinstance(e, StateChanged)]


def call(name: str, arguments: str = "{}", id: str | None = None, index: int = 0) -> ToolCallDelta:
    return ToolCallDelta(index=index, id=id if id is not None else f"call_{index}", name=name, arguments=arguments)


def calls(*specs: tuple[str, str]) -> list[AnyDelta]:
    """Complete tool calls ``(name, arguments)`` at indexes 0, 1, ... and a ``tool_calls`` finish."""
    deltas: list[AnyDelta] = [call(name, arguments, index=i) for i, (name, arguments) in enumerate(specs)]
    deltas.append(FinishDelta(reason="tool_calls"))
    return deltas


def respond(r: Run, *deltas: AnyDelta) -> Transition[AgentState]:
    """Stream ``deltas`` (one batch) for the current model call and end it; the ModelDone transition."""
    key = r.state.call
    assert key is not None, "no model call is running"
    if deltas:
        r(ModelStream(call=key, deltas=tuple(deltas)))
    return r(ModelDone(call=key))


def start(r: Run, text: str = "hi", id: str | None = None) -> Transition[AgentState]:
    return r(UserInput(id=id or f"in{r.state.turns + 1}", text=text))


def run_tools(r: Run) -> list[RunTool]:
    return of(r.effects, RunTool)


def finish(r: Run, key: str, content: str = "ok") -> Transition[AgentState]:
    return r(ToolFinished(call=key, content=content))


def finished(r: Run) -> list[TurnFinished]:
    return of(r.events, TurnFinished)


def encode(t: Transition[AgentState]) -> bytes:
    return msgspec.json.encode([t.state, list(t.events), list(t.effects), t.turn, t.terminal])


# -- a plain turn -------------------------------------------------------------------------


def test_a_turn_publishes_its_events_in_order() -> None:
    r = run()
    first = start(r, "hello", id="u1")
    assert tags(first.events) == ["message_sent", "turn_started", "state_changed"]
    assert first.events[0] == MessageSent(input_id="u1", text="hello")
    assert first.events[1] == TurnStarted(turn="t1", input_id="u1")
    assert first.events[2] == StateChanged(phase="thinking", previous="idle")
    assert [type(e) for e in first.effects] == [CallModel]
    r(ModelStream(call="t1.1", deltas=(TextDelta(text="Hel"), TextDelta(text="lo"))))
    r(ModelStream(call="t1.1", deltas=(UsageDelta(usage=Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)),)))
    last = r(ModelDone(call="t1.1"))
    assert tags(r.events) == [
        "message_sent",
        "turn_started",
        "state_changed",
        "assistant_delta",
        "usage",
        "assistant_final",
        "turn_finished",
        "state_changed",
    ]
    assert phases(r.events) == ["thinking", "idle"]
    done = last.events[-2]
    assert isinstance(done, TurnFinished)
    assert (done.turn, done.input_id, done.outcome, done.text, done.steps) == ("t1", "u1", "completed", "Hello", 1)
    assert done.usage == Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5, calls=1)
    assert done.error is None
    assert not last.effects
    assert r.state.phase == "idle"
    assert r.state.turn is None
    assert r.state.call is None
    assert r.state.history == ({"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hello"})


def test_the_model_call_carries_model_system_history_tools_and_params() -> None:
    r = run(system="be terse", params={"temperature": 0.0})
    effect = start(r, "one").effects[0]
    assert isinstance(effect, CallModel)
    assert effect.key == "t1.1"
    assert effect.model == "m"
    assert effect.messages == [{"role": "system", "content": "be terse"}, {"role": "user", "content": "one"}]
    assert [t["function"]["name"] for t in effect.tools] == ["read", "write", "shell", "rm", "seq"]
    assert effect.params == {"temperature": 0.0}
    respond(r, TextDelta(text="A"))
    second = start(r, "two").effects[0]
    assert isinstance(second, CallModel)
    assert second.key == "t2.1"
    assert second.messages[1:] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": "two"},
    ]


def test_reasoning_text_and_tool_call_deltas_in_one_batch_give_merged_events() -> None:
    r = run()
    start(r)
    t = r(
        ModelStream(
            call="t1.1",
            deltas=(
                ReasoningDelta(text="Let"),
                ReasoningDelta(text=" me"),
                TextDelta(text="I'll"),
                TextDelta(text=" check"),
                ToolCallDelta(index=0, id="c1", name="read", arguments='{"pa'),
                ToolCallDelta(index=0, arguments='th": "a"}'),
                ToolCallDelta(index=1, id="c2", name="write", arguments="{}"),
                TextDelta(text="."),
            ),
        )
    )
    assert list(t.events) == [
        AssistantReasoningDelta(text="Let me"),
        AssistantDelta(text="I'll check"),
        ToolCallDeltaEvent(index=0, id="c1", name="read", arguments='{"path": "a"}'),
        ToolCallDeltaEvent(index=1, id="c2", name="write", arguments="{}"),
        AssistantDelta(text="."),
    ]
    assert t.turn == "t1"
    assert not t.effects


def test_tool_call_delta_events_without_index_say_which_call_each_fragment_went_to() -> None:
    # Mistral-style: whole calls keyed by id, no index; several in one batch
    r = run()
    start(r)
    t = r(
        ModelStream(
            call="t1.1",
            deltas=(
                ToolCallDelta(id="a", name="read", arguments="{}"),
                ToolCallDelta(id="b", name="write", arguments='{"x"'),
                ToolCallDelta(arguments=": 1}"),
            ),
        )
    )
    assert list(t.events) == [
        ToolCallDeltaEvent(index=0, id="a", name="read", arguments="{}"),
        ToolCallDeltaEvent(index=1, id="b", name="write", arguments='{"x": 1}'),
    ]
    t = r(ModelStream(call="t1.1", deltas=(ToolCallDelta(id="a", arguments=""), TextDelta(text="!"))))
    assert list(t.events) == [ToolCallDeltaEvent(index=0, id="a", arguments=""), AssistantDelta(text="!")]


def test_empty_deltas_and_other_choices_publish_nothing() -> None:
    r = run()
    start(r)
    t = r(ModelStream(call="t1.1", deltas=(TextDelta(text=""), TextDelta(text="x", choice=1))))
    assert not t.events


# -- tool calls ---------------------------------------------------------------------------


def test_tool_calls_are_assembled_by_index_and_id_and_text_beside_them_is_kept() -> None:
    r = run()
    start(r)
    r(
        ModelStream(
            call="t1.1",
            deltas=(
                TextDelta(text="Reading two files."),
                ToolCallDelta(index=0, id="a", name="read", arguments='{"path":'),
                ToolCallDelta(index=0, arguments=' "x"}'),
                # a new id at a reused index is a new call
                ToolCallDelta(index=0, id="b", name="read", arguments='{"path": "y"}'),
            ),
        )
    )
    t = respond(r, FinishDelta(reason="tool_calls"))
    assert of(t.events, ToolCall) == [
        ToolCall(id="a", name="read", arguments='{"path": "x"}', step=1),
        ToolCall(id="b", name="read", arguments='{"path": "y"}', step=1),
    ]
    assert [(e.key, e.name, e.arguments) for e in of(t.effects, RunTool)] == [
        ("t1.1.0", "read", '{"path": "x"}'),
        ("t1.1.1", "read", '{"path": "y"}'),
    ]
    assistant = r.state.history[-1]
    assert assistant["content"] == "Reading two files."
    assert [c["id"] for c in assistant["tool_calls"]] == ["a", "b"]
    assert r.state.phase == "running"
    assert tags(t.events) == [
        "usage",
        "tool_call",
        "tool_call",
        "tool_started",
        "tool_started",
        "state_changed",
    ]


def test_a_call_without_an_id_gets_one_made_from_its_key() -> None:
    r = run()
    start(r)
    t = respond(r, ToolCallDelta(index=0, name="read", arguments="{}"))
    assert of(t.events, ToolCall)[0].id == "t1.1.0"
    assert r.state.history[-1]["tool_calls"][0]["id"] == "t1.1.0"


def test_parallel_tool_calls_start_up_to_max_parallel_tools_and_the_next_when_one_finishes() -> None:
    r = run(max_parallel_tools=2)
    start(r)
    t = respond(r, *calls(("read", '{"n": 0}'), ("read", '{"n": 1}'), ("read", '{"n": 2}')))
    assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.0", "t1.1.1"]
    assert [c.status for c in r.state.calls] == ["running", "running", "queued"]
    t = finish(r, "t1.1.1", "one")
    assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.2"]
    assert tags(t.events) == ["tool_result", "tool_exit", "tool_started"]
    t = finish(r, "t1.1.0", "zero")
    assert t.effects == []
    assert r.state.phase == "running"
    t = finish(r, "t1.1.2", "two")
    model = of(t.effects, CallModel)
    assert [m.key for m in model] == ["t1.2"]
    assert phases(t.events) == ["thinking"]
    # the tool messages follow the calls' order, whatever order they finished in
    assert [(m["tool_call_id"], m["content"]) for m in r.state.history[-3:]] == [
        ("call_0", "zero"),
        ("call_1", "one"),
        ("call_2", "two"),
    ]
    assert_history_valid(r.state.history)
    assert model[0].messages == list(r.state.history)


def test_sequential_tools_run_alone_and_in_order() -> None:
    r = run(max_parallel_tools=8)
    start(r)
    t = respond(r, *calls(("read", "{}"), ("seq", '{"n": 1}'), ("read", "{}"), ("seq", '{"n": 3}')))
    assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.0"]
    order = ["t1.1.0"]
    for key in ["t1.1.0", "t1.1.1", "t1.1.2"]:
        t = finish(r, key)
        started = [e.key for e in of(t.effects, RunTool)]
        assert len(started) == 1, "each step of this batch starts exactly one call"
        assert [c.key for c in r.state.calls if c.status == "running"] == started
        order += started
    assert order == ["t1.1.0", "t1.1.1", "t1.1.2", "t1.1.3"]
    t = finish(r, "t1.1.3")
    assert [e.key for e in of(t.effects, CallModel)] == ["t1.2"]


def test_a_sequential_call_waits_for_the_calls_before_it_and_blocks_the_ones_after() -> None:
    r = run(max_parallel_tools=8)
    start(r)
    t = respond(r, *calls(("read", "{}"), ("write", "{}"), ("seq", "{}"), ("read", "{}"), ("write", "{}")))
    assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.0", "t1.1.1"]
    assert finish(r, "t1.1.0").effects == []
    assert [e.key for e in of(finish(r, "t1.1.1").effects, RunTool)] == ["t1.1.2"]
    assert [e.key for e in of(finish(r, "t1.1.2").effects, RunTool)] == ["t1.1.3", "t1.1.4"]


def test_unknown_tools_invalid_arguments_and_denied_tools_get_error_results_and_never_run() -> None:
    r = run()
    start(r)
    t = respond(
        r,
        *calls(
            ("nope", "{}"),
            ("read", '{"path": '),
            ("read", "[1, 2]"),
            ("rm", '{"path": "/"}'),
            ("read", '{"path": "ok"}'),
        ),
    )
    assert [(e.key, e.arguments) for e in of(t.effects, RunTool)] == [("t1.1.4", '{"path": "ok"}')]
    results = of(t.events, ToolResult)
    assert [(e.id, e.is_error) for e in results] == [
        ("call_0", True),
        ("call_1", True),
        ("call_2", True),
        ("call_3", True),
    ]
    assert "no tool named 'nope'" in results[0].content
    assert "read, rm, seq, shell, write" in results[0].content
    assert "not a JSON object" in results[1].content
    assert "not a JSON object" in results[2].content
    assert "not allowed by the approval policy" in results[3].content
    assert [e.status for e in of(t.events, ToolExit)] == [
        "unknown_tool",
        "invalid_arguments",
        "invalid_arguments",
        "denied",
    ]
    # the history never carries arguments a provider would refuse
    wire = {c["id"]: c["function"]["arguments"] for c in r.state.history[-1]["tool_calls"]}
    assert wire == {
        "call_0": "{}",
        "call_1": "{}",
        "call_2": "{}",
        "call_3": '{"path": "/"}',
        "call_4": '{"path": "ok"}',
    }
    t = finish(r, "t1.1.4")
    assert [e.key for e in of(t.effects, CallModel)] == ["t1.2"]
    assert_history_valid(r.state.history)
    respond(r, TextDelta(text="done"))
    assert finished(r)[0].outcome == "completed"


def test_a_step_whose_calls_all_fail_goes_straight_to_the_next_model_call() -> None:
    r = run()
    start(r)
    t = respond(r, *calls(("nope", "{}")))
    assert [e.key for e in of(t.effects, CallModel)] == ["t1.2"]
    assert r.state.phase == "thinking"
    assert phases(r.events) == ["thinking"]


def test_blank_arguments_become_an_empty_object_in_the_history() -> None:
    r = run()
    start(r)
    t = respond(r, *calls(("read", ""), ("read", "  ")))
    assert [e.arguments for e in of(t.effects, RunTool)] == ["", "  "]  # the runner reads blank as {}
    assert [c["function"]["arguments"] for c in r.state.history[-1]["tool_calls"]] == ["{}", "{}"]
    finish(r, "t1.1.0")
    finish(r, "t1.1.1")
    assert_history_valid(r.state.history)


def test_repeated_provider_call_ids_are_made_unique() -> None:
    r = run()
    start(r)
    t = respond(r, call("read", '{"n": 0}', id="dup", index=0), call("read", '{"n": 1}', id="dup", index=1))
    ids = [e.id for e in of(t.events, ToolCall)]
    assert ids[0] == "dup"
    assert ids[1] != "dup"
    assert [c["id"] for c in r.state.history[-1]["tool_calls"]] == ids
    assert [e.id for e in of(t.events, ToolStarted)] == ids
    finish(r, "t1.1.0", "zero")
    finish(r, "t1.1.1", "one")
    assert_history_valid(r.state.history)
    assert [(m["tool_call_id"], m["content"]) for m in r.state.history[-2:]] == [(ids[0], "zero"), (ids[1], "one")]


def test_tool_progress_is_published_for_running_calls_only() -> None:
    r = run()
    start(r)
    respond(r, *calls(("read", "{}")))
    t = r(ToolProgress(call="t1.1.0", text="50%"))
    assert list(t.events) == [ToolOutput(id="call_0", text="50%")]
    assert t.turn == "t1"
    assert not r(ToolProgress(call="t9.9.9", text="x")).events
    finish(r, "t1.1.0")
    assert not r(ToolProgress(call="t1.1.0", text="late")).events


def test_a_failed_tool_effect_is_an_error_result_and_the_turn_goes_on() -> None:
    r = run()
    start(r)
    respond(r, *calls(("read", "{}")))
    t = r(
        EffectFailed(
            effect=RunTool(key="t1.1.0", name="read", arguments="{}"),
            error=ErrorInfo(type="builtins.RuntimeError", message="disk on fire"),
        )
    )
    result = of(t.events, ToolResult)[0]
    assert result.is_error
    assert "disk on fire" in result.content
    assert of(t.events, ToolExit)[0].status == "error"
    assert [e.key for e in of(t.effects, CallModel)] == ["t1.2"]
    # a second outcome for the same call (or a cancelled one) changes nothing
    again = r(EffectCancelled(effect=RunTool(key="t1.1.0", name="read", arguments="{}")))
    assert again.state is r.transitions[-2].state


# -- approvals ----------------------------------------------------------------------------


def ask(r: Run, *specs: tuple[str, str]) -> Transition[AgentState]:
    start(r)
    return respond(r, *calls(*specs))


def test_ask_publishes_an_approval_request_and_waits_in_attention() -> None:
    r = run()
    t = ask(r, ("shell", '{"cmd": "ls"}'))
    assert of(t.events, ApprovalRequest) == [
        ApprovalRequest(id="t1.1.0", call_id="call_0", tool="shell", arguments='{"cmd": "ls"}', timeout=None)
    ]
    assert of(t.effects, RunTool) == []
    assert of(t.effects, StartTimer) == []  # no timeout configured
    assert r.state.phase == "attention"
    assert phases(t.events) == ["attention"]


def test_approve_runs_the_tool() -> None:
    r = run()
    ask(r, ("shell", '{"cmd": "ls"}'))
    t = r(Approve(id="t1.1.0"))
    assert of(t.events, ApprovalResolved) == [
        ApprovalResolved(id="t1.1.0", call_id="call_0", approved=True, how="approved", arguments='{"cmd": "ls"}')
    ]
    assert of(t.effects, RunTool) == [RunTool(key="t1.1.0", name="shell", arguments='{"cmd": "ls"}')]
    assert phases(t.events) == ["running"]
    assert t.turn == "t1"


def test_approve_with_edited_arguments_runs_them_and_the_history_shows_them() -> None:
    r = run()
    ask(r, ("shell", '{"cmd": "rm -rf /"}'))
    t = r(Approve(id="t1.1.0", arguments='{"cmd": "ls"}'))
    assert of(t.effects, RunTool) == [RunTool(key="t1.1.0", name="shell", arguments='{"cmd": "ls"}')]
    assert of(t.events, ApprovalResolved)[0].arguments == '{"cmd": "ls"}'
    assert of(t.events, ToolStarted)[0].arguments == '{"cmd": "ls"}'
    assert r.state.history[-1]["tool_calls"][0]["function"]["arguments"] == '{"cmd": "ls"}'
    finish(r, "t1.1.0", "listing")
    assert_history_valid(r.state.history)
    model = of(r.effects, CallModel)[-1]
    assert model.messages[1]["tool_calls"][0]["function"]["arguments"] == '{"cmd": "ls"}'
    assert "rm -rf" not in json.dumps(model.messages)


def test_approve_with_blank_edited_arguments_keeps_the_history_valid() -> None:
    r = run()
    ask(r, ("shell", '{"cmd": "ls"}'))
    t = r(Approve(id="t1.1.0", arguments=""))
    assert of(t.effects, RunTool) == [RunTool(key="t1.1.0", name="shell", arguments="")]
    assert r.state.history[-1]["tool_calls"][0]["function"]["arguments"] == "{}"
    finish(r, "t1.1.0")
    assert_history_valid(r.state.history)


@pytest.mark.parametrize("arguments", ["not json", "[1]", '"text"', "{"])
def test_approve_with_invalid_edited_arguments_is_ignored_and_the_request_stays_pending(arguments: str) -> None:
    r = run()
    ask(r, ("shell", '{"cmd": "ls"}'))
    t = r(Approve(id="t1.1.0", arguments=arguments))
    assert list(t.events) == [Ignored(signal="approve", id="t1.1.0", reason="edited arguments are not a JSON object")]
    assert not t.effects
    assert r.state.calls[0].status == "approval"
    assert r.state.phase == "attention"
    assert of(r(Approve(id="t1.1.0")).effects, RunTool) != []


def test_deny_with_a_message_gives_the_model_the_message_and_the_turn_goes_on() -> None:
    r = run()
    ask(r, ("shell", '{"cmd": "rm x"}'))
    t = r(Deny(id="t1.1.0", message="Use the trash instead."))
    resolved = of(t.events, ApprovalResolved)[0]
    assert (resolved.approved, resolved.how, resolved.message) == (False, "denied", "Use the trash instead.")
    result = of(t.events, ToolResult)[0]
    assert result.is_error
    assert result.content.endswith("Use the trash instead.")
    assert of(t.events, ToolExit)[0].status == "denied"
    assert of(t.effects, RunTool) == []
    assert [e.key for e in of(t.effects, CallModel)] == ["t1.2"]
    assert r.state.history[-1] == {"role": "tool", "tool_call_id": "call_0", "content": result.content}
    assert_history_valid(r.state.history)
    respond(r, TextDelta(text="OK, I won't."))
    assert finished(r)[0].outcome == "completed"


def test_deny_with_stop_ends_the_turn_as_denied_with_synthesized_results() -> None:
    r = run()
    t = ask(r, ("read", "{}"), ("shell", '{"cmd": "a"}'), ("shell", '{"cmd": "b"}'), ("write", "{}"))
    # auto calls start beside calls waiting for approval (only sequential tools are barriers)
    assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.0", "t1.1.3"]
    t = r(Deny(id="t1.1.1", message="stop it", stop=True))
    assert CancelEffect(target="t1.1.0") in t.effects
    assert CancelEffect(target="t1.1.3") in t.effects
    assert of(t.effects, RunTool) == []
    assert of(t.effects, CallModel) == []
    resolved = of(t.events, ApprovalResolved)
    assert [(e.id, e.approved, e.how) for e in resolved] == [
        ("t1.1.1", False, "denied"),
        ("t1.1.2", False, "cancelled"),
    ]
    assert sorted(e.id for e in of(t.events, ToolResult)) == ["call_0", "call_1", "call_2", "call_3"]
    done = of(t.events, TurnFinished)
    assert len(done) == 1
    assert done[0].outcome == "denied"
    assert r.state.phase == "idle"
    assert r.state.calls == ()
    assert r.state.turn is None
    assert_history_valid(r.state.history)
    # a late result of the cancelled call changes nothing; the next turn works
    assert not finish(r, "t1.1.0").events
    assert [e.key for e in of(start(r).effects, CallModel)] == ["t2.1"]


def test_always_allows_the_tool_for_the_rest_of_the_session() -> None:
    r = run()
    t = ask(r, ("shell", '{"cmd": "a"}'), ("shell", '{"cmd": "b"}'), ("read", "{}"))
    assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.2"]  # the auto call does not wait
    t = r(Approve(id="t1.1.0", always=True))
    assert [(e.id, e.how) for e in of(t.events, ApprovalResolved)] == [("t1.1.0", "always"), ("t1.1.1", "always")]
    assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.0", "t1.1.1"]
    assert r.state.always == frozenset({"shell"})
    for key in ("t1.1.0", "t1.1.1", "t1.1.2"):
        finish(r, key)
    respond(r, TextDelta(text="done"))
    # the next turn: shell runs without asking
    t = ask(r, ("shell", '{"cmd": "c"}'))
    assert of(t.events, ApprovalRequest) == []
    assert [e.key for e in of(t.effects, RunTool)] == ["t2.1.0"]
    # and the second answer to an "always"-resolved request is reported
    assert list(r(Approve(id="t1.1.1")).events) == [Ignored(signal="approve", id="t1.1.1", reason="already decided")]


def test_always_never_lifts_a_deny_rule() -> None:
    r = run()
    ask(r, ("shell", "{}"))
    r(Approve(id="t1.1.0", always=True))
    assert POLICY.decide("rm", r.state.always | {"rm"}) == "deny"


@pytest.mark.parametrize(
    "second",
    [Approve(id="t1.1.0"), Deny(id="t1.1.0", message="no"), Approve(id="t1.1.0", always=True)],
    ids=["approve", "deny", "always"],
)
@pytest.mark.parametrize("first", [Approve(id="t1.1.0"), Deny(id="t1.1.0")], ids=["approved", "denied"])
def test_a_second_answer_is_ignored_as_already_decided(first: Approve | Deny, second: Approve | Deny) -> None:
    r = run()
    ask(r, ("shell", "{}"), ("read", "{}"))
    r(first)
    before = r.state
    t = r(second)
    kind = "approve" if isinstance(second, Approve) else "deny"
    assert list(t.events) == [Ignored(signal=kind, id="t1.1.0", reason="already decided")]
    assert not t.effects
    assert t.state == before


def test_an_answer_to_an_unknown_request_is_ignored() -> None:
    r = run()
    ask(r, ("shell", "{}"))
    for signal, kind in [
        (Approve(id="zzz"), "approve"),
        (Deny(id="zzz"), "deny"),
        (Choose(id="zzz", value="a"), "choose"),
    ]:
        t = r(signal)
        assert list(t.events) == [Ignored(signal=kind, id="zzz", reason="no such pending request")]
        assert not t.effects
    # a running (not pending) call's key is no request either
    r(Approve(id="t1.1.0"))
    t = r(Approve(id="t1.1.0"))
    assert of(t.events, Ignored)[0].reason == "already decided"


@pytest.mark.parametrize("outcome", ["deny", "approve", "deny_and_stop"])
def test_an_approval_timeout_applies_the_configured_outcome(outcome: TimeoutOutcome) -> None:
    r = run(approval_timeout=30.0, approval_timeout_outcome=outcome)
    t = ask(r, ("shell", '{"cmd": "ls"}'), ("read", "{}"))
    assert of(t.events, ApprovalRequest)[0].timeout == 30.0
    assert of(t.effects, StartTimer) == [StartTimer(key="approval:t1.1.0", delay=30.0)]
    t = r(TimerFired(key="approval:t1.1.0"))
    resolved = of(t.events, ApprovalResolved)
    assert [(e.id, e.how, e.approved) for e in resolved] == [("t1.1.0", "timed_out", outcome == "approve")]
    if outcome == "approve":
        assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.0"]  # t1.1.1 (auto) started at once
        assert r.state.phase == "running"
    elif outcome == "deny":
        assert of(t.effects, RunTool) == []  # t1.1.1 (auto) is already running
        assert "timed out" in of(t.events, ToolResult)[0].content
        finish(r, "t1.1.1")
        assert [e.key for e in of(r.effects, CallModel)] == ["t1.1", "t1.2"]
        assert_history_valid(r.state.history)
    else:
        assert of(t.effects, RunTool) == []
        assert [e.outcome for e in of(t.events, TurnFinished)] == ["denied"]
        assert r.state.phase == "idle"
        assert_history_valid(r.state.history)
    # a late firing of the same timer changes nothing
    late = r(TimerFired(key="approval:t1.1.0"))
    assert not late.events
    assert not late.effects


def test_answering_before_the_timeout_cancels_the_timer() -> None:
    r = run(approval_timeout=5.0)
    ask(r, ("shell", "{}"), ("shell", "{}"))
    t = r(Approve(id="t1.1.0"))
    assert CancelTimer(key="approval:t1.1.0") in t.effects
    t = r(Deny(id="t1.1.1"))
    assert CancelTimer(key="approval:t1.1.1") in t.effects
    assert not r(TimerFired(key="approval:t1.1.1")).events
    assert not r(TimerFired(key="something:else")).events


# -- choices ------------------------------------------------------------------------------


def choosing(r: Run) -> Transition[AgentState]:
    start(r)
    respond(r, *calls(("read", "{}"), ("write", "{}")))
    return r(ChoiceAsked(id="t1.1.0.c1", call="t1.1.0", prompt="Which one?", options={"a": "Apple", "b": "Banana"}))


def test_a_choice_request_waits_in_attention_and_a_valid_answer_is_delivered() -> None:
    r = run()
    t = choosing(r)
    assert list(t.events) == [
        ChoiceRequest(id="t1.1.0.c1", call_id="call_0", prompt="Which one?", options={"a": "Apple", "b": "Banana"}),
        StateChanged(phase="attention", previous="running"),
    ]
    assert t.turn == "t1"
    t = r(Choose(id="t1.1.0.c1", value="zzz"))
    assert list(t.events) == [Ignored(signal="choose", id="t1.1.0.c1", reason="'zzz' is not one of the options")]
    assert not t.effects
    assert r.state.choices != ()
    t = r(Choose(id="t1.1.0.c1", value="b"))
    assert list(t.events) == [
        ChoiceResolved(id="t1.1.0.c1", value="b"),
        StateChanged(phase="running", previous="attention"),
    ]
    assert list(t.effects) == [DeliverChoice(id="t1.1.0.c1", value="b")]
    assert r.state.choices == ()
    assert list(r(Choose(id="t1.1.0.c1", value="a")).events) == [
        Ignored(signal="choose", id="t1.1.0.c1", reason="already decided")
    ]


def test_a_choice_asked_by_a_call_that_is_not_running_is_answered_with_none_at_once() -> None:
    r = run()
    start(r)
    t = r(ChoiceAsked(id="x.c1", call="t1.1.0", prompt="?", options={"a": "A"}))
    assert not t.events
    assert list(t.effects) == [DeliverChoice(id="x.c1", value=None)]
    assert r.state.choices == ()


def test_the_choice_of_a_tool_that_finished_without_an_answer_is_withdrawn() -> None:
    # e.g. the tool timed out while waiting for the user
    r = run()
    choosing(r)
    t = finish(r, "t1.1.0", "timed out")
    assert ChoiceResolved(id="t1.1.0.c1", value=None) in t.events
    assert r.state.choices == ()
    assert r.state.phase == "running"  # the other call still runs: no longer waiting for the user
    t = finish(r, "t1.1.1")
    assert [e.key for e in of(t.effects, CallModel)] == ["t1.2"]
    # a late answer is reported, and never restarts the step
    t = r(Choose(id="t1.1.0.c1", value="a"))
    assert tags(t.events) == ["ignored"]
    assert not t.effects
    assert r.state.call == "t1.2"
    assert r.state.step == 2


# -- cancel -------------------------------------------------------------------------------


def test_cancel_immediate_while_thinking_aborts_and_late_stream_is_ignored() -> None:
    r = run()
    start(r)
    r(ModelStream(call="t1.1", deltas=(TextDelta(text="Partial"),)))
    t = r(Cancel(turn="t1"))
    assert list(t.effects) == [CancelEffect(target="t1.1")]
    assert tags(t.events) == ["run_aborted", "turn_finished", "state_changed"]
    assert t.events[0] == RunAborted(turn="t1", reason="cancelled")
    done = t.events[1]
    assert isinstance(done, TurnFinished)
    assert (done.outcome, done.text) == ("aborted", "Partial")
    assert t.turn == "t1"
    state = r.state
    for late in (
        ModelStream(call="t1.1", deltas=(TextDelta(text="more"),)),
        ModelDone(call="t1.1"),
        EffectCancelled(effect=CallModel(key="t1.1", model="m", messages=[])),
        EffectFailed(effect=CallModel(key="t1.1", model="m", messages=[]), error=ErrorInfo(type="X", message="x")),
    ):
        t = r(late)
        assert not t.events
        assert not t.effects
        assert t.state is state
    assert len(finished(r)) == 1
    assert_history_valid(r.state.history)
    t = start(r)
    assert [e.key for e in of(t.effects, CallModel)] == ["t2.1"]
    respond(r, TextDelta(text="fresh"))
    assert [(e.turn, e.outcome) for e in finished(r)] == [("t1", "aborted"), ("t2", "completed")]


def test_cancel_immediate_while_running_tools_cancels_them_and_synthesizes_results() -> None:
    r = run(max_parallel_tools=2)
    start(r)
    respond(r, *calls(("read", "{}"), ("read", "{}"), ("read", "{}")))
    finish(r, "t1.1.0", "first")
    t = r(Cancel())
    assert sorted(e.target for e in of(t.effects, CancelEffect)) == ["t1.1.1", "t1.1.2"]
    assert [(e.id, e.status) for e in of(t.events, ToolExit)] == [("call_1", "cancelled"), ("call_2", "cancelled")]
    assert of(t.events, TurnFinished)[0].outcome == "aborted"
    assert_history_valid(r.state.history)
    assert next(m.get("content") for m in r.state.history if m["role"] == "tool") == "first"
    assert not finish(r, "t1.1.1").events


def test_cancel_while_waiting_for_an_approval_resolves_it_as_cancelled() -> None:
    r = run(approval_timeout=10.0)
    ask(r, ("shell", "{}"))
    t = r(Cancel(mode="immediate"))
    assert CancelTimer(key="approval:t1.1.0") in t.effects
    assert of(t.events, ApprovalResolved)[0].how == "cancelled"
    assert of(t.events, TurnFinished)[0].outcome == "aborted"
    assert_history_valid(r.state.history)
    assert tags(r(Approve(id="t1.1.0")).events) == ["ignored"]
    assert not r(TimerFired(key="approval:t1.1.0")).events


def test_cancel_also_withdraws_pending_choices() -> None:
    r = run()
    choosing(r)
    t = r(Cancel())
    assert ChoiceResolved(id="t1.1.0.c1", value=None) in t.events
    assert DeliverChoice(id="t1.1.0.c1", value=None) in t.effects
    assert r.state.choices == ()


def test_cancel_after_step_lets_the_step_finish_then_aborts_instead_of_calling_the_model() -> None:
    r = run()
    start(r)
    t = r(Cancel(mode="after_step", turn="t1"))
    assert list(t.events) == [CancelRequested(turn="t1", mode="after_step")]
    assert not t.effects
    t = respond(r, *calls(("read", "{}")))
    assert [e.key for e in of(t.effects, RunTool)] == ["t1.1.0"]  # the step goes on
    t = finish(r, "t1.1.0", "data")
    assert of(t.effects, CallModel) == []
    assert tags(t.events)[-4:] == ["tool_exit", "run_aborted", "turn_finished", "state_changed"]
    assert of(t.events, TurnFinished)[0].outcome == "aborted"
    assert r.state.history[-1] == {"role": "tool", "tool_call_id": "call_0", "content": "data"}
    assert_history_valid(r.state.history)
    # the flag does not leak into the next turn
    start(r)
    respond(r, *calls(("read", "{}")))
    t = finish(r, "t2.1.0")
    assert [e.key for e in of(t.effects, CallModel)] == ["t2.2"]


def test_cancel_after_step_with_a_final_answer_completes() -> None:
    r = run()
    start(r)
    r(Cancel(mode="after_step"))
    respond(r, TextDelta(text="All done."))
    assert [(e.outcome, e.text) for e in finished(r)] == [("completed", "All done.")]


def test_cancel_with_no_turn_is_ignored() -> None:
    r = run()
    t = r(Cancel())
    assert list(t.events) == [Ignored(signal="cancel", id=None, reason="no turn is running")]
    assert not t.effects
    assert t.turn is None
    assert r.state == AgentState()
    start(r)
    respond(r, TextDelta(text="ok"))
    assert [e.outcome for e in finished(r)] == ["completed"]


@pytest.mark.parametrize("mode", ["immediate", "after_step"])
def test_cancel_naming_an_old_turn_is_ignored_and_never_affects_the_next_turn(mode: Any) -> None:
    r = run()
    start(r)
    respond(r, TextDelta(text="one"))
    t = r(Cancel(mode=mode, turn="t1"))
    assert list(t.events) == [Ignored(signal="cancel", id="t1", reason="no turn is running")]
    start(r)
    t = r(Cancel(mode=mode, turn="t1"))
    assert list(t.events) == [Ignored(signal="cancel", id="t1", reason="turn t1 is over")]
    assert t.turn == "t2"
    assert r.state.stop_after_step is False
    respond(r, *calls(("read", "{}")))
    finish(r, "t2.1.0")
    respond(r, TextDelta(text="two"))
    assert [(e.turn, e.outcome) for e in finished(r)] == [("t1", "completed"), ("t2", "completed")]


# -- input arriving mid-turn --------------------------------------------------------------


def test_queued_input_starts_after_the_turn_through_start_queued() -> None:
    r = run(input_policy="queue")
    start(r, "first", id="a")
    t = r(UserInput(id="b", text="second"))
    assert list(t.events) == [InputQueued(input_id="b", position=1)]
    assert t.turn == "t1"
    assert not t.effects
    assert list(r(UserInput(id="c", text="third")).events) == [InputQueued(input_id="c", position=2)]
    t = respond(r, TextDelta(text="1"))
    assert of(t.effects, Feed) == [Feed(signal=StartQueued())]
    assert tags(t.events)[-2:] == ["turn_finished", "state_changed"]
    assert t.turn == "t1"
    t = r(StartQueued())
    assert tags(t.events) == ["message_sent", "turn_started", "state_changed"]
    assert t.events[0] == MessageSent(input_id="b", text="second")
    assert t.turn == "t2"
    assert [e.key for e in of(t.effects, CallModel)] == ["t2.1"]
    # a StartQueued while a turn runs is ignored (the turn's end feeds another)
    assert not r(StartQueued()).events
    t = respond(r, TextDelta(text="2"))
    assert of(t.effects, Feed) == [Feed(signal=StartQueued())]
    assert r(StartQueued()).events[0] == MessageSent(input_id="c", text="third")
    t = respond(r, TextDelta(text="3"))
    assert of(t.effects, Feed) == []
    assert not r(StartQueued()).events
    assert [(e.turn, e.input_id) for e in finished(r)] == [("t1", "a"), ("t2", "b"), ("t3", "c")]
    assert [m["content"] for m in r.state.history if m["role"] == "user"] == ["first", "second", "third"]


def test_input_arriving_before_the_queued_input_started_waits_behind_it() -> None:
    r = run(input_policy="queue")
    start(r, "first", id="a")
    r(UserInput(id="b", text="second"))
    respond(r, TextDelta(text="1"))  # feeds StartQueued, which is not reduced yet
    t = r(UserInput(id="c", text="third"))
    assert of(t.events, TurnStarted) == []
    assert list(t.events) == [InputQueued(input_id="c", position=2)]
    r(StartQueued())
    assert r.state.input_id == "b"
    r(StartQueued())  # any extra StartQueued is harmless
    respond(r, TextDelta(text="2"))
    r(StartQueued())
    assert r.state.input_id == "c"


def test_interrupting_input_aborts_the_turn_and_starts_next() -> None:
    r = run(input_policy="interrupt")
    start(r, "first", id="a")
    respond(r, *calls(("read", "{}")))
    t = r(UserInput(id="b", text="never mind"))
    assert CancelEffect(target="t1.1.0") in t.effects
    assert of(t.effects, Feed) == [Feed(signal=StartQueued())]
    assert of(t.events, RunAborted) == [RunAborted(turn="t1", reason="interrupted by input b")]
    assert [(e.turn, e.outcome) for e in of(t.events, TurnFinished)] == [("t1", "aborted")]
    assert t.turn == "t1"
    assert_history_valid(r.state.history)
    t = r(StartQueued())
    assert t.turn == "t2"
    assert t.events[0] == MessageSent(input_id="b", text="never mind")


def test_rejected_input_leaves_the_turn_alone() -> None:
    r = run(input_policy="reject")
    start(r)
    t = r(UserInput(id="b", text="more"))
    assert list(t.events) == [InputRejected(input_id="b", reason="turn t1 is running")]
    assert not t.effects
    assert r.state.queue == ()
    respond(r, TextDelta(text="ok"))
    assert [e.input_id for e in finished(r)] == ["in1"]


@pytest.mark.parametrize("policy", ["queue", "interrupt", "reject"])
@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_input_is_rejected(text: str, policy: InputPolicy) -> None:
    r = run(input_policy=policy)
    t = r(UserInput(id="e", text=text))
    assert list(t.events) == [InputRejected(input_id="e", reason="empty message")]
    assert not t.effects
    assert r.state.turns == 0
    start(r)
    t = r(UserInput(id="e2", text=text))
    assert list(t.events) == [InputRejected(input_id="e2", reason="empty message")]
    assert r.state.queue == ()
    assert r.state.turn == "t1"


# -- limits and failures ------------------------------------------------------------------


@pytest.mark.parametrize("max_steps", [1, 2, 3])
def test_max_steps_ends_the_turn_after_that_many_model_calls(max_steps: int) -> None:
    r = run(max_steps=max_steps)
    start(r)
    for step in range(1, max_steps + 1):
        respond(r, *calls(("read", "{}")))
        finish(r, f"t1.{step}.0")
    assert [e.key for e in of(r.effects, CallModel)] == [f"t1.{n}" for n in range(1, max_steps + 1)]
    done = finished(r)
    assert [(e.outcome, e.steps) for e in done] == [("max_steps", max_steps)]
    assert r.state.phase == "idle"
    assert_history_valid(r.state.history)


def test_an_empty_model_reply_completes_with_empty_text_and_no_loop() -> None:
    r = run()
    start(r)
    t = r(ModelDone(call="t1.1"))
    assert of(t.events, AssistantFinal) == [AssistantFinal(text="", finish_reason=None)]
    assert [(e.outcome, e.text) for e in of(t.events, TurnFinished)] == [("completed", "")]
    assert of(t.effects, CallModel) == []
    assert r.state.history[-1] == {"role": "assistant", "content": ""}
    assert_history_valid(r.state.history)


def test_a_model_failure_fails_the_turn_and_the_next_input_works() -> None:
    r = run()
    start(r)
    r(ModelStream(call="t1.1", deltas=(TextDelta(text="So"),)))
    error = ErrorInfo(type="oturn.RateLimited", message="slow down", status=429, retry_after=2.5)
    effect = of(r.effects, CallModel)[0]
    t = r(EffectFailed(effect=effect, error=error))
    done = of(t.events, TurnFinished)
    assert [(e.outcome, e.error, e.text) for e in done] == [("failed", error, "So")]
    assert t.events[-1] == StateChanged(phase="error", previous="thinking")
    assert t.turn == "t1"
    assert r.state.phase == "error"
    assert_history_valid(r.state.history)
    # a failure reported for an old call changes nothing
    assert not r(EffectFailed(effect=effect, error=error)).events
    t = start(r)
    assert t.events[-1] == StateChanged(phase="thinking", previous="error")
    respond(r, TextDelta(text="ok"))
    assert [e.outcome for e in finished(r)] == ["failed", "completed"]


def test_an_error_inside_the_stream_fails_the_turn_and_cancels_the_call() -> None:
    r = run()
    start(r)
    error = ErrorInfo(type="stream_error", message="overloaded", kind="stream_error")
    t = r(
        ModelStream(
            call="t1.1",
            deltas=(TextDelta(text="Hal"), ToolCallDelta(index=0, id="a", name="read"), StreamErrorDelta(error=error)),
        )
    )
    assert CancelEffect(target="t1.1") in t.effects
    assert of(t.effects, RunTool) == []
    assert tags(t.events)[0] == "assistant_delta"
    assert [(e.outcome, e.error, e.text) for e in of(t.events, TurnFinished)] == [("failed", error, "Hal")]
    assert r.state.phase == "error"
    assert not r(ModelDone(call="t1.1")).events
    assert_history_valid(r.state.history)


def test_a_truncated_stream_never_runs_its_half_streamed_tool_call() -> None:
    r = run()
    start(r)
    t = respond(
        r,
        TextDelta(text="Let me"),
        ToolCallDelta(index=0, id="a", name="write", arguments='{"path": "x", "text": "unfini'),
        FinishDelta(reason="length"),
    )
    assert of(t.effects, RunTool) == []
    assert of(t.events, ToolCall) == []
    assert [(e.text, e.finish_reason) for e in of(t.events, AssistantFinal)] == [("Let me", "length")]
    assert [e.outcome for e in of(t.events, TurnFinished)] == ["completed"]
    assert "tool_calls" not in r.state.history[-1]
    assert_history_valid(r.state.history)


def test_usage_is_reported_per_call_and_summed_per_turn_and_session() -> None:
    r = run()
    start(r)
    respond(
        r,
        *calls(("read", "{}")),
        UsageDelta(usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cost=0.25)),
    )
    finish(r, "t1.1.0")
    respond(r, TextDelta(text="a"), UsageDelta(usage=Usage(prompt_tokens=20, completion_tokens=1, total_tokens=21)))
    start(r)
    respond(
        r,
        TextDelta(text="b"),
        UsageDelta(usage=Usage(prompt_tokens=30, completion_tokens=2, total_tokens=32, cost=1.0)),
    )
    reports = of(r.events, UsageReport)
    assert [e.call for e in reports] == ["t1.1", "t1.2", "t2.1"]
    assert [e.usage.total_tokens for e in reports] == [15, 21, 32]
    assert [e.usage.calls for e in reports] == [1, 1, 1]
    assert [e.turn_total.total_tokens for e in reports] == [15, 36, 32]
    assert [e.session_total.total_tokens for e in reports] == [15, 36, 68]
    assert [e.session_total.cost for e in reports] == [0.25, 0.25, 1.25]
    done = finished(r)
    assert done[0].usage == Usage(prompt_tokens=30, completion_tokens=6, total_tokens=36, cost=0.25, calls=2)
    assert done[1].usage == Usage(prompt_tokens=30, completion_tokens=2, total_tokens=32, cost=1.0, calls=1)
    assert r.state.session_usage.calls == 3
    assert r.state.session_usage.prompt_tokens == 60
    assert reports[0].usage.cost == 0.25
    assert reports[1].usage.cost is None


def test_transitions_carry_the_turn_id_including_the_one_that_ends_a_turn() -> None:
    r = run(input_policy="queue")
    assert r(Cancel()).turn is None
    assert r(UserInput(id="e", text="")).turn is None

    def check(t: Transition[AgentState], turn: str | None, what: str) -> None:
        assert t.turn == turn, what

    check(start(r, "one"), "t1", "start")
    check(r(ModelStream(call="t1.1", deltas=(TextDelta(text="x"),))), "t1", "stream")
    check(r(UserInput(id="q", text="two")), "t1", "queued")
    check(r(ModelDone(call="t1.1")), "t1", "the end of t1")
    check(r(StartQueued()), "t2", "start of the queued turn")
    check(respond(r, *calls(("shell", "{}"))), "t2", "approval request")
    check(r(Approve(id="t2.1.0")), "t2", "approve")
    check(r(Cancel()), "t2", "the cancel that ends t2")
    # the envelopes a nucleus would publish carry the same turn ids
    envelopes = drive(r.reducer, AgentState(), r.signals).envelopes(session="s")
    finished_turns = [env.turn for env in envelopes if isinstance(env.event, TurnFinished)]
    assert finished_turns == ["t1", "t2"]
    assert all(env.turn == env.event.turn for env in envelopes if isinstance(env.event, TurnStarted))


def test_the_reducer_is_deterministic_and_its_state_encodes() -> None:
    def script() -> list[Any]:
        return [
            UserInput(id="a", text="hi"),
            ModelStream(call="t1.1", deltas=tuple(calls(("shell", '{"c": 1}'), ("read", "{}")))),
            ModelDone(call="t1.1"),
            Approve(id="t1.1.0", arguments='{"c": 2}'),
            ToolFinished(call="t1.1.0", content="x"),
            ToolFinished(call="t1.1.1", content="y"),
            ModelStream(call="t1.2", deltas=(TextDelta(text="bye"),)),
            ModelDone(call="t1.2"),
        ]

    one, two = Run(config()), Run(config())
    first = [encode(t) for t in one.feed(*script())]
    second = [encode(t) for t in two.feed(*script())]
    assert first == second
    decoded = msgspec.json.decode(msgspec.json.encode(one.state), type=AgentState)
    assert decoded == one.state


def test_signals_the_reducer_does_not_know_leave_the_state_alone() -> None:
    r = run()
    start(r)
    state = r.state
    t = r(TimerFired(key="unrelated"))
    assert t.state is state
    assert not t.events
    assert not t.effects
    t = r(EffectCancelled(effect=CallModel(key="t9.1", model="m", messages=[])))  # a stale call: ignored
    assert t.state is state
    assert not t.events
    assert not t.effects
    assert r.state.call == "t1.1"


def test_a_cancel_of_the_current_model_call_from_elsewhere_fails_the_turn() -> None:
    r = run()
    start(r)
    t = r(EffectCancelled(effect=CallModel(key="t1.1", model="m", messages=[])))  # e.g. a shutdown
    done = of(t.events, TurnFinished)
    assert [d.outcome for d in done] == ["failed"]
    assert done[0].error is not None
    assert done[0].error.kind == "cancelled"
    assert r.state.phase == "error"
