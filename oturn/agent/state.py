"""The state of an agent session, as reduced by :class:`~oturn.agent.turn.TurnReducer`."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from oturn.agent.signals import UserInput
from oturn.agent.stream import StreamState
from oturn.agent.usage import Usage

__all__ = ["AgentState", "PendingCall", "PendingChoice"]

CallStatus = Literal["approval", "queued", "running", "done"]

_NO_USAGE = Usage()


class PendingCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call of the current step and where it stands.

    ``key`` is oturn's id for it (``"<turn>.<step>.<n>"``: effect key and approval id);
    ``id`` is the provider's tool call id (made up when the provider gave none).
    """

    key: str
    id: str
    name: str
    arguments: str
    status: CallStatus
    sequential: bool = False
    result: str | None = None
    result_status: str | None = None


class PendingChoice(msgspec.Struct, frozen=True, kw_only=True):
    """A choice request a running tool waits on."""

    id: str
    call: str
    options: dict[str, str]


class AgentState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything an agent session knows, as plain data (snapshot- and replay-friendly).

    ``history`` is the conversation in the OpenAI chat format, always valid to send to
    a provider between steps: every assistant message with tool calls is followed by
    one tool message per call once the step is over.
    """

    phase: Literal["idle", "thinking", "attention", "running", "error"] = "idle"
    history: tuple[dict[str, Any], ...] = ()
    turns: int = 0
    turn: str | None = None
    input_id: str | None = None
    step: int = 0
    call: str | None = None
    stream: StreamState | None = None
    calls: tuple[PendingCall, ...] = ()
    choices: tuple[PendingChoice, ...] = ()
    resolved: frozenset[str] = frozenset()
    always: frozenset[str] = frozenset()
    queue: tuple[UserInput, ...] = ()
    stop_after_step: bool = False
    turn_usage: Usage = _NO_USAGE
    session_usage: Usage = _NO_USAGE
