"""Events an agent session publishes (the names OTURN used are kept where the concept is the same).

Order within a turn::

    message_sent, turn_started, state_changed(thinking),
      (assistant_reasoning_delta | assistant_delta | tool_call_delta)*, usage,
      [tool_call*, (approval_request, state_changed(attention), approval_resolved)*,
       state_changed(running), (tool_started, tool_output*, (choice_request, choice_resolved)*,
       tool_result, tool_exit)*, state_changed(thinking), ...]   -- once per step
    assistant_final | run_aborted, turn_finished, state_changed(idle | error)

``turn_finished`` is the one terminal event of a turn, on every path (its ``outcome``
is ``completed``, ``aborted``, ``failed``, ``max_steps`` or ``denied``).
"""

from __future__ import annotations

from typing import Literal

from oturn.agent.usage import Usage
from oturn.core.builtins import ErrorInfo
from oturn.core.messages import Event

__all__ = [
    "ApprovalRequest",
    "ApprovalResolved",
    "AssistantDelta",
    "AssistantFinal",
    "AssistantReasoningDelta",
    "CancelRequested",
    "ChoiceRequest",
    "ChoiceResolved",
    "Ignored",
    "InputQueued",
    "InputRejected",
    "MessageSent",
    "RunAborted",
    "SessionResumed",
    "StateChanged",
    "ToolCall",
    "ToolCallDelta",
    "ToolExit",
    "ToolOutput",
    "ToolResult",
    "ToolStarted",
    "TurnFinished",
    "TurnStarted",
    "UsageReport",
]

Phase = Literal["idle", "thinking", "attention", "running", "error"]
Outcome = Literal["completed", "aborted", "failed", "max_steps", "denied"]


class MessageSent(Event, frozen=True, kw_only=True, tag="message_sent"):
    """The user message ``input_id`` entered the conversation (it starts a turn)."""

    input_id: str
    text: str


class InputQueued(Event, frozen=True, kw_only=True, tag="input_queued"):
    """Input arrived mid-turn and waits for the current turn to end (policy ``queue``)."""

    input_id: str
    position: int


class InputRejected(Event, frozen=True, kw_only=True, tag="input_rejected"):
    """Input was not accepted (policy ``reject`` mid-turn, or an empty message)."""

    input_id: str
    reason: str


class TurnStarted(Event, frozen=True, kw_only=True, tag="turn_started"):
    """A turn began for the user message ``input_id``."""

    turn: str
    input_id: str


class StateChanged(Event, frozen=True, kw_only=True, tag="state_changed"):
    """The session moved from ``previous`` to ``phase``."""

    phase: Phase
    previous: Phase


class AssistantDelta(Event, frozen=True, kw_only=True, tag="assistant_delta"):
    """Answer text, as it streams (everything that arrived together in one delta)."""

    text: str

    def merge(self, later: Event) -> Event | None:
        if type(later) is AssistantDelta:
            return AssistantDelta(text=self.text + later.text)
        return None


class AssistantReasoningDelta(Event, frozen=True, kw_only=True, tag="assistant_reasoning_delta"):
    """Reasoning text, as it streams."""

    text: str

    def merge(self, later: Event) -> Event | None:
        if type(later) is AssistantReasoningDelta:
            return AssistantReasoningDelta(text=self.text + later.text)
        return None


class ToolCallDelta(Event, frozen=True, kw_only=True, tag="tool_call_delta"):
    """A fragment of the tool call at ``index`` of this step (id and name on the first one)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def merge(self, later: Event) -> Event | None:
        if type(later) is ToolCallDelta and later.index == self.index and later.id is None and later.name is None:
            return ToolCallDelta(
                index=self.index, id=self.id, name=self.name, arguments=self.arguments + later.arguments
            )
        return None


class UsageReport(Event, frozen=True, kw_only=True, tag="usage"):
    """Usage of the model call ``call``, with the running totals of the turn and session."""

    call: str
    usage: Usage
    turn_total: Usage
    session_total: Usage


class ToolCall(Event, frozen=True, kw_only=True, tag="tool_call"):
    """A complete tool call the model made (``id`` is the provider's, or one made up if it gave none)."""

    id: str
    name: str
    arguments: str
    step: int


class ApprovalRequest(Event, frozen=True, kw_only=True, tag="approval_request"):
    """The tool call ``call_id`` waits for ``approve(id)`` / ``deny(id, message)``."""

    id: str
    call_id: str
    tool: str
    arguments: str
    timeout: float | None = None


class ApprovalResolved(Event, frozen=True, kw_only=True, tag="approval_resolved"):
    """The request ``id`` was decided (``approved``, ``always``, ``denied``, ``timed_out``, ``cancelled``)."""

    id: str
    call_id: str
    approved: bool
    how: Literal["approved", "denied", "timed_out", "always", "cancelled"]
    arguments: str
    message: str = ""


class ChoiceRequest(Event, frozen=True, kw_only=True, tag="choice_request"):
    """The running tool ``call_id`` waits for ``choose(id, value)`` with a value from ``options``."""

    id: str
    call_id: str
    prompt: str
    options: dict[str, str]


class ChoiceResolved(Event, frozen=True, kw_only=True, tag="choice_resolved"):
    """The choice request ``id`` was answered (or cancelled: ``value`` None)."""

    id: str
    value: str | None


class ToolStarted(Event, frozen=True, kw_only=True, tag="tool_started"):
    """The tool call ``id`` started running."""

    id: str
    name: str
    arguments: str


class ToolOutput(Event, frozen=True, kw_only=True, tag="tool_output"):
    """Progress text streamed by the running tool ``id``."""

    id: str
    text: str

    def merge(self, later: Event) -> Event | None:
        if type(later) is ToolOutput and later.id == self.id:
            return ToolOutput(id=self.id, text=self.text + later.text)
        return None


class ToolResult(Event, frozen=True, kw_only=True, tag="tool_result"):
    """What goes back to the model for the tool call ``id`` (an error text when ``is_error``)."""

    id: str
    name: str
    content: str
    is_error: bool


class ToolExit(Event, frozen=True, kw_only=True, tag="tool_exit"):
    """The tool call ``id`` is over, with how it ended."""

    id: str
    status: str


class AssistantFinal(Event, frozen=True, kw_only=True, tag="assistant_final"):
    """The turn's final answer."""

    text: str
    finish_reason: str | None = None


class RunAborted(Event, frozen=True, kw_only=True, tag="run_aborted"):
    """The turn was cancelled (``mode``) or interrupted by new input."""

    turn: str
    reason: str


class CancelRequested(Event, frozen=True, kw_only=True, tag="cancel_requested"):
    """A cancel ``after_step`` was accepted: the turn ends when its current step is over."""

    turn: str
    mode: Literal["after_step"]


class SessionResumed(Event, frozen=True, kw_only=True, tag="session_resumed"):
    """The session was restored after its process stopped; what was in flight and what became of it.

    ``model_call`` is the model call that was streaming (it is made again);
    ``interrupted`` the tool calls that were running (reported to the model as
    interrupted, not run again); ``pending`` the approval requests still waiting.
    """

    turn: str | None
    model_call: str | None
    interrupted: list[str]
    pending: list[str]


class TurnFinished(Event, frozen=True, kw_only=True, tag="turn_finished"):
    """The one terminal event of every turn."""

    turn: str
    input_id: str
    outcome: Literal["completed", "aborted", "failed", "max_steps", "denied"]
    text: str
    usage: Usage
    steps: int
    error: ErrorInfo | None = None


class Ignored(Event, frozen=True, kw_only=True, tag="ignored"):
    """A signal had no effect (a second answer to a request, a cancel with no turn, a stale id, ...)."""

    signal: str
    id: str | None
    reason: str
