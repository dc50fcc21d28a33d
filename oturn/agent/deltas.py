"""What a model stream is normalised into, whatever the provider.

An adapter (LiteLLM, the scripted :class:`~oturn.testing.FakeModel`, a replayed log)
turns each provider chunk into a few :class:`StreamDelta` values and feeds them to the
nucleus in :class:`~oturn.agent.signals.ModelStream` signals, as many per signal as
were ready (batching keeps the per-chunk cost low; the log keeps the batches, so
replays are exact). ``choice`` is the choice index (``n > 1``); the agent follows 0.
"""

from __future__ import annotations

from typing import Any

import msgspec

from oturn.agent.usage import Usage
from oturn.core.builtins import ErrorInfo

__all__ = [
    "AnyDelta",
    "FinishDelta",
    "ReasoningDelta",
    "RefusalDelta",
    "StreamDelta",
    "StreamErrorDelta",
    "TextDelta",
    "ToolCallDelta",
    "UsageDelta",
]


class StreamDelta(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="type", omit_defaults=True):
    """Base of the normalised stream items."""


class TextDelta(StreamDelta, frozen=True, kw_only=True, tag="text"):
    """A piece of the assistant's answer."""

    text: str
    choice: int = 0


class ReasoningDelta(StreamDelta, frozen=True, kw_only=True, tag="reasoning"):
    """A piece of the model's reasoning (``reasoning_content``, ``reasoning``, thinking parts, ...)."""

    text: str
    choice: int = 0


class RefusalDelta(StreamDelta, frozen=True, kw_only=True, tag="refusal"):
    """A piece of a refusal (OpenAI structured outputs)."""

    text: str
    choice: int = 0


class ToolCallDelta(StreamDelta, frozen=True, kw_only=True, tag="tool_call"):
    """A fragment of a tool call: any of its fields may be missing from a fragment.

    Fragments are assembled by ``(index, id)``: a fragment with a new non-empty id at an
    index already used starts a new call; a fragment without an index is keyed by its
    id; one with neither continues the last call.
    """

    index: int | None = None
    id: str | None = None
    name: str | None = None
    arguments: str | None = None
    choice: int = 0


class UsageDelta(StreamDelta, frozen=True, kw_only=True, tag="usage"):
    """Token usage reported by the provider (the last one of a call wins)."""

    usage: Usage
    raw: dict[str, Any] = {}


class FinishDelta(StreamDelta, frozen=True, kw_only=True, tag="finish"):
    """The provider's ``finish_reason`` for a choice."""

    reason: str
    choice: int = 0


class StreamErrorDelta(StreamDelta, frozen=True, kw_only=True, tag="error"):
    """An error payload inside the stream (e.g. Groq's ``event: error``); the call fails."""

    error: ErrorInfo


AnyDelta = TextDelta | ReasoningDelta | RefusalDelta | ToolCallDelta | UsageDelta | FinishDelta | StreamErrorDelta
"""Every concrete delta type (what a :class:`~oturn.agent.signals.ModelStream` holds on the wire)."""
