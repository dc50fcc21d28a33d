"""The effects the agent's reducers ask the runtime to perform."""

from __future__ import annotations

from typing import Any

import msgspec

from oturn.core.messages import Effect

__all__ = ["CallModel", "DeliverChoice", "RunTool"]


class CallModel(Effect, frozen=True, kw_only=True, tag="call_model"):
    """Stream one model completion.

    ``key`` is the call id (``"<turn>.<step>"``, e.g. ``"t3.2"``). ``messages`` and ``tools`` are in the
    OpenAI chat format (what LiteLLM takes); ``params`` holds sampling parameters
    (temperature, max_tokens, ...). The handler feeds the stream back as
    :class:`~oturn.agent.signals.ModelStream` signals and ends with
    :class:`~oturn.agent.signals.ModelDone` (or fails, giving
    :class:`~oturn.EffectFailed`).
    """

    key: str
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = msgspec.field(default_factory=list)
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class RunTool(Effect, frozen=True, kw_only=True, tag="run_tool"):
    """Run the tool ``name`` with ``arguments`` (a JSON text, as the model wrote it, or as edited at approval).

    ``key`` is the tool call id. The handler ends with
    :class:`~oturn.agent.signals.ToolFinished`.
    """

    key: str
    name: str
    arguments: str


class DeliverChoice(Effect, frozen=True, kw_only=True, tag="deliver_choice"):
    """Hand the answer ``value`` of the choice request ``id`` to the tool waiting for it (``None``: cancelled)."""

    id: str
    value: str | None
