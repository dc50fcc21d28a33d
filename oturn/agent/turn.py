"""The turn reducer: one agent session's conversation as a pure state machine.

Phases: ``idle`` → ``thinking`` (model streaming) → ``attention`` (waiting for an
approval or a choice) / ``running`` (tools) → ``thinking`` → … → ``idle`` (or ``error``
after a failed turn; new input is welcome in both).

Rules it keeps on every path:

- exactly one ``turn_finished`` per turn (``completed``, ``aborted``, ``failed``,
  ``max_steps``, ``denied``);
- a tool runs only after its approval (or when its policy is ``auto``), and only when its
  call was streamed completely — half-streamed calls of a failed, truncated or cancelled
  stream never run;
- the history stays valid for every provider: each assistant message with tool calls is
  followed by one tool message per call (synthesized when a call could not run);
- a cancel names the turn it targets and never reaches the next one; outcomes of
  cancelled effects that arrive late are ignored.

Pure: time, ids and outcomes come in as signals. Ids are derived from the turn and
step counters (``t3``, ``t3.2`` for its second model call, ``t3.2.0`` for that call's
first tool call and its approval request).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from msgspec.structs import replace

from oturn.agent.deltas import ReasoningDelta, RefusalDelta, StreamDelta, TextDelta, ToolCallDelta
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
    SessionResumed,
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
from oturn.agent.events import (
    ToolCallDelta as ToolCallDeltaEvent,
)
from oturn.agent.signals import (
    Approve,
    Cancel,
    ChoiceAsked,
    Choose,
    Deny,
    ModelDone,
    ModelStream,
    Resumed,
    StartQueued,
    ToolFinished,
    ToolProgress,
    UserInput,
)
from oturn.agent.state import AgentState, PendingCall, PendingChoice
from oturn.agent.stream import StreamState, apply, end
from oturn.agent.usage import Usage
from oturn.core.builtins import (
    CancelEffect,
    CancelTimer,
    EffectCancelled,
    EffectCompleted,
    EffectFailed,
    ErrorInfo,
    Feed,
    StartTimer,
    TimerFired,
)
from oturn.core.messages import Effect, Event, Signal
from oturn.core.transition import Transition

__all__ = ["TurnConfig", "TurnReducer"]

InputPolicy = Literal["queue", "interrupt", "reject"]
TimeoutOutcome = Literal["deny", "approve", "deny_and_stop"]
Decide = Callable[[str, frozenset[str]], str]

_json_decode = msgspec.json.decode
_APPROVAL_TIMER = "approval:"


def _auto(name: str, always: frozenset[str]) -> str:
    return "auto"


@dataclass(frozen=True)
class TurnConfig:
    """The static configuration of a :class:`TurnReducer` (not part of the state).

    - ``model``, ``system``, ``params``: what every :class:`CallModel` carries.
    - ``tools``: the tool schemas (OpenAI function format) offered to the model;
      ``sequential``: names of tools that must run alone.
    - ``decide(tool, always_allowed) -> "auto" | "ask" | "deny"``: the approval policy.
    - ``max_steps``: model calls per turn before the turn ends as ``max_steps``.
    - ``input_policy``: what input arriving mid-turn does (``queue``, ``interrupt``,
      ``reject``).
    - ``max_parallel_tools``: tool calls of one step running at once.
    - ``approval_timeout`` (seconds, ``None``: wait forever) and
      ``approval_timeout_outcome``: ``deny``, ``approve`` or ``deny_and_stop``.
    """

    model: str = "model"
    system: str | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    sequential: frozenset[str] = frozenset()
    decide: Decide = _auto
    max_steps: int = 50
    input_policy: InputPolicy = "queue"
    max_parallel_tools: int = 8
    approval_timeout: float | None = None
    approval_timeout_outcome: TimeoutOutcome = "deny"
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tool_names(self) -> frozenset[str]:
        """Names of the tools offered to the model."""
        return frozenset(str(t.get("function", {}).get("name", "")) for t in self.tools)


class _Out:
    """Events and effects collected while reducing one signal."""

    __slots__ = ("effects", "events")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.effects: list[Effect] = []


class TurnReducer:
    """``(AgentState, signal) -> Transition``: the agent's turns, steps, tools and approvals."""

    def __init__(self, config: TurnConfig | None = None) -> None:
        self.config = config or TurnConfig()
        self._tool_names = self.config.tool_names
        self._tool_list = ", ".join(sorted(self._tool_names)) or "(none)"
        self._table: dict[type[Signal], Callable[[AgentState, Any], Transition[AgentState]]] = {
            ModelStream: self._on_stream,
            UserInput: self._on_input,
            ModelDone: self._on_model_done,
            ToolFinished: self._on_tool_finished,
            ToolProgress: self._on_tool_progress,
            Approve: self._on_approve,
            Deny: self._on_deny,
            Choose: self._on_choose,
            ChoiceAsked: self._on_choice_asked,
            Cancel: self._on_cancel,
            StartQueued: self._on_start_queued,
            Resumed: self._on_resumed,
            TimerFired: self._on_timer,
            EffectFailed: self._on_effect_failed,
            EffectCancelled: self._on_effect_cancelled,
            EffectCompleted: self._ignore,
        }

    def initial(self) -> AgentState:
        """A session with no history."""
        return AgentState()

    def reduce(self, state: AgentState, signal: Signal, /) -> Transition[AgentState]:
        """Part protocol spelling of ``__call__`` (so the reducer composes)."""
        return self(state, signal)

    def __call__(self, state: AgentState, signal: Signal, /) -> Transition[AgentState]:
        handler = self._table.get(type(signal))
        if handler is None:
            return Transition(state)
        return handler(state, signal)

    # -- input and turn boundaries ------------------------------------------------------

    def _on_input(self, s: AgentState, sig: UserInput) -> Transition[AgentState]:
        if not sig.text.strip():
            return Transition(s, (InputRejected(input_id=sig.id, reason="empty message"),), turn=s.turn)
        if s.turn is None:
            if not s.queue:
                return self._start(s, sig)
            # Idle, but earlier input is still queued (its StartQueued is on its way):
            # wait behind it, so inputs start in the order they came. The extra
            # StartQueued is harmless, and starts the queue even if none is on its way.
            queue = (*s.queue, sig)
            return Transition(
                replace(s, queue=queue),
                (InputQueued(input_id=sig.id, position=len(queue)),),
                effects=(Feed(signal=StartQueued()),),
            )
        policy = self.config.input_policy
        if policy == "reject":
            return Transition(s, (InputRejected(input_id=sig.id, reason=f"turn {s.turn} is running"),), turn=s.turn)
        if policy == "interrupt":
            out = _Out()
            s = self._abort(replace(s, queue=(sig, *s.queue)), out, f"interrupted by input {sig.id}")
            return Transition(s, out.events, effects=out.effects, turn=self._last_turn(s))
        queue = (*s.queue, sig)
        return Transition(replace(s, queue=queue), (InputQueued(input_id=sig.id, position=len(queue)),), turn=s.turn)

    def _on_start_queued(self, s: AgentState, sig: StartQueued) -> Transition[AgentState]:
        if s.turn is not None or not s.queue:
            return Transition(s)
        first, rest = s.queue[0], s.queue[1:]
        return self._start(replace(s, queue=rest), first)

    def _start(self, s: AgentState, sig: UserInput) -> Transition[AgentState]:
        turns = s.turns + 1
        turn = f"t{turns}"
        call = f"{turn}.1"
        history = (*s.history, {"role": "user", "content": sig.text})
        s = replace(
            s,
            turns=turns,
            turn=turn,
            input_id=sig.id,
            step=1,
            call=call,
            stream=StreamState(),
            calls=(),
            choices=(),
            stop_after_step=False,
            history=history,
            turn_usage=Usage(),
        )
        out = _Out()
        out.events.append(MessageSent(input_id=sig.id, text=sig.text))
        out.events.append(TurnStarted(turn=turn, input_id=sig.id))
        s = self._phase(s, "thinking", out)
        out.effects.append(self._call_model(s, call))
        return Transition(s, out.events, effects=out.effects, turn=turn)

    def _call_model(self, s: AgentState, call: str) -> CallModel:
        c = self.config
        messages: list[dict[str, Any]] = []
        if c.system:
            messages.append({"role": "system", "content": c.system})
        messages.extend(s.history)
        return CallModel(
            key=call, model=c.model, messages=messages, tools=[dict(t) for t in c.tools], params=dict(c.params)
        )

    def _finish(
        self,
        s: AgentState,
        out: _Out,
        outcome: Literal["completed", "aborted", "failed", "max_steps", "denied"],
        text: str,
        error: ErrorInfo | None = None,
    ) -> AgentState:
        """End the turn: the one ``turn_finished``, back to idle/error, next queued input."""
        assert s.turn is not None
        assert s.input_id is not None
        out.events.append(
            TurnFinished(
                turn=s.turn,
                input_id=s.input_id,
                outcome=outcome,
                text=text,
                usage=s.turn_usage,
                steps=s.step,
                error=error,
            )
        )
        # Every caller has closed the step's calls (and their approval timers) already.
        assert not s.calls, "a turn ends only after its step's calls are settled"
        s = replace(s, turn=None, call=None, stream=None, calls=(), choices=(), stop_after_step=False)
        s = self._phase(s, "error" if outcome == "failed" else "idle", out)
        if s.queue:
            out.effects.append(Feed(signal=StartQueued()))
        return s

    def _cancel_timer(self, request: str, out: _Out) -> None:
        if self.config.approval_timeout is not None:
            out.effects.append(CancelTimer(key=_APPROVAL_TIMER + request))

    def _unbilled(self, s: AgentState) -> AgentState:
        """Count the usage a model call reported before it was cut short (it may still be billed)."""
        if s.stream is None or s.stream.usage is None or s.call is None:
            return s
        usage = replace(s.stream.usage, calls=1)
        return replace(s, turn_usage=s.turn_usage + usage, session_usage=s.session_usage + usage)

    def _last_turn(self, s: AgentState) -> str | None:
        return s.turn if s.turn is not None else (f"t{s.turns}" if s.turns else None)

    @staticmethod
    def _phase(s: AgentState, phase: Any, out: _Out) -> AgentState:
        if s.phase == phase:
            return s
        out.events.append(StateChanged(phase=phase, previous=s.phase))
        return replace(s, phase=phase)

    # -- the model stream ---------------------------------------------------------------

    def _on_stream(self, s: AgentState, sig: ModelStream) -> Transition[AgentState]:
        if sig.call != s.call or s.stream is None:
            return Transition(s)
        deltas = sig.deltas
        stream = apply(s.stream, deltas)
        if stream.error is not None:
            out = _Out()
            out.events.extend(_delta_events(deltas, stream, s.stream))
            out.effects.append(CancelEffect(target=sig.call))
            s = self._fail(replace(s, stream=stream), out, stream.error)
            return Transition(s, out.events, effects=out.effects, turn=self._last_turn(s))
        return Transition(replace(s, stream=stream), _delta_events(deltas, stream, s.stream), turn=s.turn)

    def _fail(self, s: AgentState, out: _Out, error: ErrorInfo) -> AgentState:
        text = (s.stream.text or "") if s.stream is not None else ""
        s = self._unbilled(s)
        s = self._close_calls(s, out, "interrupted", "not run: the turn failed")
        return self._finish(s, out, "failed", text, error)

    def _on_model_done(self, s: AgentState, sig: ModelDone) -> Transition[AgentState]:
        if sig.call != s.call or s.stream is None:
            return Transition(s)
        out = _Out()
        stream = end(s.stream)
        usage = replace(stream.usage or Usage(), calls=1)
        s = replace(s, stream=stream, turn_usage=s.turn_usage + usage, session_usage=s.session_usage + usage)
        out.events.append(
            UsageReport(call=sig.call, usage=usage, turn_total=s.turn_usage, session_total=s.session_usage)
        )
        complete = stream.complete_tool_calls()
        message = stream.message(id_prefix=f"{sig.call}.")
        if not complete:
            message.pop("tool_calls", None)
            text = stream.text or stream.refusal or ""
            if message.get("content") is None:
                message["content"] = text
            s = replace(s, history=(*s.history, message), call=None)
            out.events.append(AssistantFinal(text=text, finish_reason=stream.finish_reason))
            s = self._finish(s, out, "completed", text)
            return Transition(s, out.events, effects=out.effects, turn=self._last_turn(s))
        return self._begin_tools(s, out, message, complete)

    # -- tools ----------------------------------------------------------------------------

    def _begin_tools(
        self, s: AgentState, out: _Out, message: dict[str, Any], complete: Sequence[Any]
    ) -> Transition[AgentState]:
        assert s.turn is not None
        decide = self.config.decide
        sequential = self.config.sequential
        calls: list[PendingCall] = []
        history_calls = []
        ids: set[str] = set()
        for n, (tc, wire) in enumerate(zip(complete, message["tool_calls"], strict=True)):
            key = f"{s.turn}.{s.step}.{n}"
            name = tc.name or ""
            arguments = tc.arguments or ""
            if wire["id"] in ids:  # a repeated provider id: tool results must answer each call (Anthropic refuses)
                unique = key
                while unique in ids:
                    unique += "_"
                wire = {**wire, "id": unique}
            ids.add(wire["id"])
            if not arguments.strip():  # "" means {} for the tool; some providers refuse "" in the history
                wire = {**wire, "function": {**wire["function"], "arguments": "{}"}}
            call = PendingCall(
                key=key, id=wire["id"], name=name, arguments=arguments, status="queued", sequential=name in sequential
            )
            out.events.append(ToolCall(id=call.id, name=name, arguments=arguments, step=s.step))
            problem = None
            if name not in self._tool_names:
                problem = (
                    "unknown_tool",
                    f"Error: there is no tool named {name!r}. Available tools: {self._tool_list}.",
                )
            elif not _is_json_object(arguments):
                problem = (
                    "invalid_arguments",
                    f"Error: the arguments of {name} are not a JSON object: {_clip(arguments)}",
                )
            if problem is not None:
                call = replace(call, status="done", result=problem[1], result_status=problem[0])
                wire = {**wire, "function": {**wire["function"], "arguments": "{}"}}
            else:
                verdict = decide(name, s.always)
                if verdict == "deny":
                    call = replace(
                        call,
                        status="done",
                        result=f"Error: the tool {name} is not allowed by the approval policy.",
                        result_status="denied",
                    )
                elif verdict == "ask":
                    call = replace(call, status="approval")
                    timeout = self.config.approval_timeout
                    out.events.append(
                        ApprovalRequest(id=key, call_id=call.id, tool=name, arguments=arguments, timeout=timeout)
                    )
                    if timeout is not None:
                        out.effects.append(StartTimer(key=_APPROVAL_TIMER + key, delay=timeout))
            history_calls.append(wire)
            calls.append(call)
        message = {**message, "tool_calls": history_calls}
        s = replace(s, history=(*s.history, message), call=None, calls=tuple(calls))
        for call in calls:
            if call.status == "done":
                self._emit_result(call, out)
        return self._advance(s, out)

    def _advance(self, s: AgentState, out: _Out) -> Transition[AgentState]:
        """Start what may start, then settle the phase or end the step."""
        s = self._schedule(s, out)
        if all(c.status == "done" for c in s.calls):
            s = self._end_step(s, out)
        elif any(c.status == "approval" for c in s.calls) or s.choices:
            s = self._phase(s, "attention", out)
        else:
            s = self._phase(s, "running", out)
        return Transition(s, out.events, effects=out.effects, turn=self._last_turn(s))

    def _schedule(self, s: AgentState, out: _Out) -> AgentState:
        running = [c for c in s.calls if c.status == "running"]
        cap = self.config.max_parallel_tools
        if any(c.sequential for c in running):
            return s
        calls = list(s.calls)
        earlier_open = False  # a call before this one has not finished (or not started)
        for i, call in enumerate(calls):
            if call.status == "done":
                continue
            if call.status != "queued":  # waiting for approval, or running
                earlier_open = True
                continue
            if call.sequential:
                if earlier_open or running:
                    break  # a sequential call is a barrier: it waits for every call before it
            elif len(running) >= cap:
                break
            earlier_open = True
            calls[i] = started = replace(call, status="running")
            running.append(started)
            out.events.append(ToolStarted(id=call.id, name=call.name, arguments=call.arguments))
            out.effects.append(RunTool(key=call.key, name=call.name, arguments=call.arguments))
            if call.sequential:
                break
        return replace(s, calls=tuple(calls))

    def _end_step(self, s: AgentState, out: _Out) -> AgentState:
        tool_messages = tuple({"role": "tool", "tool_call_id": c.id, "content": c.result or ""} for c in s.calls)
        s = replace(s, history=(*s.history, *tool_messages), calls=())
        if s.stop_after_step:
            out.events.append(RunAborted(turn=s.turn or "", reason="cancelled after the step"))
            return self._finish(s, out, "aborted", "")
        if s.step >= self.config.max_steps:
            return self._finish(s, out, "max_steps", "")
        step = s.step + 1
        call = f"{s.turn}.{step}"
        s = replace(s, step=step, call=call, stream=StreamState())
        s = self._phase(s, "thinking", out)
        out.effects.append(self._call_model(s, call))
        return s

    def _emit_result(self, call: PendingCall, out: _Out) -> None:
        status = call.result_status or "ok"
        out.events.append(ToolResult(id=call.id, name=call.name, content=call.result or "", is_error=status != "ok"))
        out.events.append(ToolExit(id=call.id, status=status))

    def _find(self, s: AgentState, key: str) -> int:
        for i, c in enumerate(s.calls):
            if c.key == key:
                return i
        return -1

    def _on_tool_finished(self, s: AgentState, sig: ToolFinished) -> Transition[AgentState]:
        i = self._find(s, sig.call)
        if i < 0 or s.calls[i].status != "running":
            return Transition(s)
        out = _Out()
        call = replace(s.calls[i], status="done", result=sig.content, result_status=sig.status)
        s = replace(s, calls=(*s.calls[:i], call, *s.calls[i + 1 :]))
        if any(c.call == call.key for c in s.choices):
            # The tool ended (e.g. timed out) while a choice of it was still open: withdraw
            # it, or it would keep the phase at "attention" and a late answer would run
            # _advance with no calls left (starting another model call mid-step).
            for choice in s.choices:
                if choice.call == call.key:
                    out.events.append(ChoiceResolved(id=choice.id, value=None))
                    out.effects.append(DeliverChoice(id=choice.id, value=None))
            s = replace(s, choices=tuple(c for c in s.choices if c.call != call.key))
        self._emit_result(call, out)
        return self._advance(s, out)

    def _on_tool_progress(self, s: AgentState, sig: ToolProgress) -> Transition[AgentState]:
        i = self._find(s, sig.call)
        if i < 0 or s.calls[i].status != "running":
            return Transition(s)
        return Transition(s, (ToolOutput(id=s.calls[i].id, text=sig.text),), turn=s.turn)

    def _on_effect_failed(self, s: AgentState, sig: EffectFailed[Any]) -> Transition[AgentState]:
        effect = sig.effect
        if isinstance(effect, CallModel):
            if effect.key != s.call:
                return Transition(s)
            out = _Out()
            s = self._fail(s, out, sig.error)
            return Transition(s, out.events, effects=out.effects, turn=self._last_turn(s))
        if isinstance(effect, RunTool):
            return self._on_tool_finished(
                s,
                ToolFinished(
                    call=effect.key,
                    content=f"Error: the tool {effect.name} failed: {sig.error.message}",
                    status="cancelled" if sig.error.kind == "cancelled" else "error",
                    error_type=sig.error.type,
                ),
            )
        return Transition(s)

    def _on_effect_cancelled(self, s: AgentState, sig: EffectCancelled[Any]) -> Transition[AgentState]:
        # The reducer's own cancels make the effect stale before this arrives; a cancel that
        # came from elsewhere (shutdown, a pipeline stage) must still settle the call.
        effect = sig.effect
        error = ErrorInfo(type="oturn.EffectCancelled", message="the call was cancelled", kind="cancelled")
        return self._on_effect_failed(s, EffectFailed(effect=effect, error=error))

    # -- restart --------------------------------------------------------------------------

    def _on_resumed(self, s: AgentState, sig: Resumed) -> Transition[AgentState]:
        out = _Out()
        running = [c for c in s.calls if c.status == "running"]
        pending = [c.key for c in s.calls if c.status == "approval"]
        out.events.append(
            SessionResumed(turn=s.turn, model_call=s.call, interrupted=[c.id for c in running], pending=pending)
        )
        if s.turn is None:
            if s.queue:
                out.effects.append(Feed(signal=StartQueued()))
            return Transition(s, out.events, effects=out.effects)
        for choice in s.choices:
            out.events.append(ChoiceResolved(id=choice.id, value=None))
        s = replace(s, choices=(), resolved=s.resolved | {c.id for c in s.choices})
        if s.call is not None:
            # A model call has no side effects: make it again, from a clean stream.
            key = s.call
            s = replace(s, stream=StreamState())
            out.effects.append(self._call_model(s, key))
            return Transition(s, out.events, effects=out.effects, turn=s.turn)
        calls = list(s.calls)
        for i, call in enumerate(calls):
            if call.status == "running":
                calls[i] = call = replace(
                    call,
                    status="done",
                    result=(
                        "Error: the process running this tool stopped before the tool finished. It may or may"
                        " not have had its effect; it was not run again."
                    ),
                    result_status="interrupted",
                )
                self._emit_result(call, out)
            elif call.status == "approval" and self.config.approval_timeout is not None:
                out.effects.append(StartTimer(key=_APPROVAL_TIMER + call.key, delay=self.config.approval_timeout))
        s = replace(s, calls=tuple(calls))
        return self._advance(s, out)

    # -- approvals ------------------------------------------------------------------------

    def _pending_approval(self, s: AgentState, request: str) -> int:
        i = self._find(s, request)
        return i if i >= 0 and s.calls[i].status == "approval" else -1

    def _not_pending(self, s: AgentState, signal: str, request: str) -> Transition[AgentState]:
        reason = "already decided" if request in s.resolved else "no such pending request"
        return Transition(s, (Ignored(signal=signal, id=request, reason=reason),), turn=s.turn)

    def _on_approve(self, s: AgentState, sig: Approve) -> Transition[AgentState]:
        i = self._pending_approval(s, sig.id)
        if i < 0:
            return self._not_pending(s, "approve", sig.id)
        if sig.arguments is not None and not _is_json_object(sig.arguments):
            return Transition(
                s, (Ignored(signal="approve", id=sig.id, reason="edited arguments are not a JSON object"),), turn=s.turn
            )
        out = _Out()
        s = self._approve(s, i, out, "always" if sig.always else "approved", sig.arguments)
        if sig.always:
            name = s.calls[i].name
            s = replace(s, always=s.always | {name})
            for j, other in enumerate(s.calls):
                if other.status == "approval" and other.name == name:
                    s = self._approve(s, j, out, "always", None)
        return self._advance(s, out)

    def _approve(self, s: AgentState, i: int, out: _Out, how: Any, arguments: str | None) -> AgentState:
        call = s.calls[i]
        args = call.arguments if arguments is None else arguments
        self._cancel_timer(call.key, out)
        out.events.append(ApprovalResolved(id=call.key, call_id=call.id, approved=True, how=how, arguments=args))
        call = replace(call, status="queued", arguments=args)
        history = s.history
        if arguments is not None:
            history = _edit_arguments(history, call.id, args if args.strip() else "{}")
        return replace(
            s, calls=(*s.calls[:i], call, *s.calls[i + 1 :]), resolved=s.resolved | {call.key}, history=history
        )

    def _on_deny(self, s: AgentState, sig: Deny) -> Transition[AgentState]:
        i = self._pending_approval(s, sig.id)
        if i < 0:
            return self._not_pending(s, "deny", sig.id)
        return self._deny(s, i, sig.message, sig.stop, "denied")

    def _deny(self, s: AgentState, i: int, message: str, stop: bool, how: Any) -> Transition[AgentState]:
        out = _Out()
        call = s.calls[i]
        self._cancel_timer(call.key, out)
        out.events.append(
            ApprovalResolved(
                id=call.key, call_id=call.id, approved=False, how=how, arguments=call.arguments, message=message
            )
        )
        reason = "timed out waiting for approval" if how == "timed_out" else "was denied by the user"
        content = f"Error: the call {reason}." + (f" {message}" if message else "")
        call = replace(call, status="done", result=content, result_status="denied")
        s = replace(s, calls=(*s.calls[:i], call, *s.calls[i + 1 :]), resolved=s.resolved | {call.key})
        self._emit_result(call, out)
        if stop:
            s = self._close_calls(s, out, "cancelled", "not run: the user denied another call and stopped the turn")
            s = self._finish(s, out, "denied", "")
            return Transition(s, out.events, effects=out.effects, turn=self._last_turn(s))
        return self._advance(s, out)

    def _on_timer(self, s: AgentState, sig: TimerFired) -> Transition[AgentState]:
        if not sig.key.startswith(_APPROVAL_TIMER):
            return Transition(s)
        request = sig.key[len(_APPROVAL_TIMER) :]
        i = self._pending_approval(s, request)
        if i < 0:
            return Transition(s)
        outcome = self.config.approval_timeout_outcome
        if outcome == "approve":
            out = _Out()
            s = self._approve(s, i, out, "timed_out", None)
            return self._advance(s, out)
        return self._deny(s, i, "", outcome == "deny_and_stop", "timed_out")

    # -- choices --------------------------------------------------------------------------

    def _on_choice_asked(self, s: AgentState, sig: ChoiceAsked) -> Transition[AgentState]:
        i = self._find(s, sig.call)
        if i < 0 or s.calls[i].status != "running":
            return Transition(s, effects=(DeliverChoice(id=sig.id, value=None),))
        out = _Out()
        out.events.append(ChoiceRequest(id=sig.id, call_id=s.calls[i].id, prompt=sig.prompt, options=sig.options))
        s = replace(s, choices=(*s.choices, PendingChoice(id=sig.id, call=sig.call, options=sig.options)))
        s = self._phase(s, "attention", out)
        return Transition(s, out.events, turn=s.turn)

    def _on_choose(self, s: AgentState, sig: Choose) -> Transition[AgentState]:
        position = next((i for i, c in enumerate(s.choices) if c.id == sig.id), -1)
        if position < 0:
            return self._not_pending(s, "choose", sig.id)
        choice = s.choices[position]
        if sig.value not in choice.options:
            return Transition(
                s,
                (Ignored(signal="choose", id=sig.id, reason=f"{sig.value!r} is not one of the options"),),
                turn=s.turn,
            )
        out = _Out()
        out.events.append(ChoiceResolved(id=sig.id, value=sig.value))
        out.effects.append(DeliverChoice(id=sig.id, value=sig.value))
        s = replace(s, choices=(*s.choices[:position], *s.choices[position + 1 :]), resolved=s.resolved | {sig.id})
        return self._advance(s, out)

    # -- cancel ---------------------------------------------------------------------------

    def _on_cancel(self, s: AgentState, sig: Cancel) -> Transition[AgentState]:
        if s.turn is None:
            return Transition(s, (Ignored(signal="cancel", id=sig.turn, reason="no turn is running"),))
        if sig.turn is not None and sig.turn != s.turn:
            return Transition(
                s, (Ignored(signal="cancel", id=sig.turn, reason=f"turn {sig.turn} is over"),), turn=s.turn
            )
        if sig.mode == "after_step":
            return Transition(
                replace(s, stop_after_step=True), (CancelRequested(turn=s.turn, mode="after_step"),), turn=s.turn
            )
        out = _Out()
        s = self._abort(s, out, "cancelled")
        return Transition(s, out.events, effects=out.effects, turn=self._last_turn(s))

    def _abort(self, s: AgentState, out: _Out, reason: str) -> AgentState:
        text = ""
        if s.call is not None:
            out.effects.append(CancelEffect(target=s.call))
            text = (s.stream.text or "") if s.stream is not None else ""
            s = self._unbilled(s)
        s = self._close_calls(s, out, "cancelled", "not run: the turn was cancelled")
        out.events.append(RunAborted(turn=s.turn or "", reason=reason))
        return self._finish(s, out, "aborted", text)

    def _close_calls(self, s: AgentState, out: _Out, status: str, content: str) -> AgentState:
        """Give every call of the step a result (synthesized where it had none) and close the step."""
        for choice in s.choices:
            out.events.append(ChoiceResolved(id=choice.id, value=None))
            out.effects.append(DeliverChoice(id=choice.id, value=None))
        closed_ids = {c.id for c in s.choices} | {c.key for c in s.calls if c.status == "approval"}
        if closed_ids:
            s = replace(s, resolved=s.resolved | closed_ids)
        if not s.calls:
            return replace(s, choices=())
        closed = []
        for call in s.calls:
            if call.status == "running":
                out.effects.append(CancelEffect(target=call.key))
            if call.status == "approval":
                self._cancel_timer(call.key, out)
                out.events.append(
                    ApprovalResolved(
                        id=call.key, call_id=call.id, approved=False, how="cancelled", arguments=call.arguments
                    )
                )
            if call.status != "done":
                if call.status == "running":
                    text = (
                        "Error: the turn ended while this tool was running; it was stopped and may have had its effect."
                    )
                else:
                    text = f"Error: {content}."
                call = replace(call, status="done", result=text, result_status=status)
                self._emit_result(call, out)
            closed.append(call)
        tool_messages = tuple({"role": "tool", "tool_call_id": c.id, "content": c.result or ""} for c in closed)
        return replace(s, history=(*s.history, *tool_messages), calls=(), choices=())

    def _ignore(self, s: AgentState, sig: Signal) -> Transition[AgentState]:
        return Transition(s)


def _delta_events(deltas: Sequence[StreamDelta], stream: StreamState, before: StreamState | None = None) -> list[Event]:
    """Events for a batch of deltas of choice 0: each run of one kind becomes one event."""
    events: list[Event] = []
    run_kind: type | None = None
    run: list[str] = []
    run_call: ToolCallDelta | None = None
    run_start = 0

    def flush() -> None:
        if not run:
            return
        text = "".join(run)
        if run_kind is AssistantReasoningDelta:
            events.append(AssistantReasoningDelta(text=text))
        elif run_kind is AssistantDelta:
            events.append(AssistantDelta(text=text))
        elif run_call is not None:
            if run_call.index is not None:
                index = run_call.index
            elif before is not None:  # where this fragment went, not where the batch's last one did
                index = max(apply(before, deltas[: run_start + 1]).choice(0).last_slot, 0)
            else:
                index = max(stream.choice(0).last_slot, 0)
            events.append(
                ToolCallDeltaEvent(index=index, id=run_call.id or None, name=run_call.name or None, arguments=text)
            )
        run.clear()

    for position, d in enumerate(deltas):
        kind = type(d)
        if kind is TextDelta or kind is RefusalDelta:
            if d.choice or not d.text:  # type: ignore[attr-defined]
                continue
            if run_kind is not AssistantDelta:
                flush()
                run_kind = AssistantDelta
            run.append(d.text)  # type: ignore[attr-defined]
        elif kind is ReasoningDelta:
            if d.choice or not d.text:  # type: ignore[attr-defined]
                continue
            if run_kind is not AssistantReasoningDelta:
                flush()
                run_kind = AssistantReasoningDelta
            run.append(d.text)  # type: ignore[attr-defined]
        elif kind is ToolCallDelta:
            assert isinstance(d, ToolCallDelta)
            if d.choice:
                continue
            same = (
                run_kind is ToolCallDeltaEvent
                and run_call is not None
                and (d.index is None or d.index == run_call.index)
                and not d.id
                and not d.name
            )
            if not same:
                flush()
                run_kind = ToolCallDeltaEvent
                run_call = d
                run_start = position
            run.append(d.arguments or "")
    flush()
    return events


def _is_json_object(text: str) -> bool:
    if not text.strip():
        return True
    try:
        return isinstance(_json_decode(text), dict)
    except (msgspec.DecodeError, ValueError):
        return False


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _edit_arguments(history: tuple[dict[str, Any], ...], call_id: str, arguments: str) -> tuple[dict[str, Any], ...]:
    """The history with the latest assistant message's call ``call_id`` given ``arguments``."""
    for i in range(len(history) - 1, -1, -1):
        message = history[i]
        if message.get("role") == "assistant" and message.get("tool_calls"):
            calls = [
                {**c, "function": {**c["function"], "arguments": arguments}} if c.get("id") == call_id else c
                for c in message["tool_calls"]
            ]
            return (*history[:i], {**message, "tool_calls": calls}, *history[i + 1 :])
    return history
