"""Signals the agent's turn reducer understands.

User-facing ones (:class:`UserInput`, :class:`Approve`, :class:`Deny`, :class:`Choose`,
:class:`Cancel`) are what ``Session`` methods send; they are plain data, so they can be
logged, replayed, and sent from another process or node. The others are outcomes fed
back by the effect handlers.
"""

from __future__ import annotations

from typing import Literal

from oturn.agent.deltas import AnyDelta
from oturn.core.messages import Signal

__all__ = [
    "Approve",
    "Cancel",
    "ChoiceAsked",
    "Choose",
    "Deny",
    "ModelDone",
    "ModelStream",
    "Resumed",
    "StartQueued",
    "ToolFinished",
    "ToolProgress",
    "UserInput",
]

CancelMode = Literal["immediate", "after_step"]
ToolStatus = Literal[
    "ok", "error", "invalid_arguments", "unknown_tool", "timeout", "cancelled", "denied", "interrupted"
]


class UserInput(Signal, frozen=True, kw_only=True, tag="user_input"):
    """A user message. ``id`` is chosen by the sender and echoed in the events it causes."""

    id: str
    text: str


class ModelStream(Signal, frozen=True, kw_only=True, tag="model_stream"):
    """Normalised deltas of the model call ``call``, as many as arrived together."""

    call: str
    deltas: tuple[AnyDelta, ...]


class ModelDone(Signal, frozen=True, kw_only=True, tag="model_done"):
    """The model call ``call`` finished streaming."""

    call: str


class ToolProgress(Signal, frozen=True, kw_only=True, tag="tool_progress"):
    """A running tool reported progress text (published as ``tool_output``)."""

    call: str
    text: str


class ToolFinished(Signal, frozen=True, kw_only=True, tag="tool_finished"):
    """The tool call ``call`` ended; ``content`` goes back to the model."""

    call: str
    content: str
    status: ToolStatus = "ok"
    error_type: str | None = None


class ChoiceAsked(Signal, frozen=True, kw_only=True, tag="choice_asked"):
    """A running tool asks the user to pick one of ``options`` (value -> label)."""

    id: str
    call: str
    prompt: str
    options: dict[str, str]


class Approve(Signal, frozen=True, kw_only=True, tag="approve"):
    """Approve the request ``id``; optionally with edited ``arguments`` (JSON text), or for the rest of the session."""

    id: str
    arguments: str | None = None
    always: bool = False


class Deny(Signal, frozen=True, kw_only=True, tag="deny"):
    """Deny the request ``id``; ``message`` goes to the model. ``stop`` ends the turn as ``denied``."""

    id: str
    message: str = ""
    stop: bool = False


class Choose(Signal, frozen=True, kw_only=True, tag="choose"):
    """Answer the choice request ``id`` with ``value`` (one of its options)."""

    id: str
    value: str


class Cancel(Signal, frozen=True, kw_only=True, tag="cancel"):
    """Cancel the turn ``turn`` (``None``: whatever turn is running when it is reduced).

    ``immediate`` stops the model call and running tools now; ``after_step`` lets the
    current step finish and then ends the turn instead of calling the model again.
    """

    mode: CancelMode = "immediate"
    turn: str | None = None


class Resumed(Signal, frozen=True, kw_only=True, tag="resumed"):
    """The session was restored from its log after the process that ran it stopped.

    Whatever was in flight then is settled: a model call is made again (it has no side
    effects); a tool that was running is reported as interrupted, never run again;
    pending approvals stay answerable.
    """


class StartQueued(Signal, frozen=True, kw_only=True, tag="start_queued"):
    """Start the next queued input (fed back by the reducer after a turn ends)."""
