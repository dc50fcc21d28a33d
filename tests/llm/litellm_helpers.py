"""What the LiteLLM end-to-end tests share (in-thread adapter and worker process): the
fake server's text, the request's messages and tools, and the stream collectors."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from oturn import ProviderError
from oturn.agent.deltas import StreamDelta
from oturn.agent.effects import CallModel
from oturn.agent.model import Model
from oturn.agent.stream import StreamState, apply, end

module_loop = pytest.mark.asyncio(loop_scope="module")
"""Runs an async test on its module's loop (the module-scoped server fixture lives there)."""

TEXT = "The quick brown fox jumps over the lazy dog."
MESSAGES = [{"role": "user", "content": "hi"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def collect(model: Model, c: CallModel) -> tuple[StreamState, list[Sequence[StreamDelta]]]:
    state = StreamState()
    batches: list[Sequence[StreamDelta]] = []
    async for batch in model.stream(c):
        batches.append(batch)
        state = apply(state, batch)
    return end(state), batches


async def failure(model: Model, c: CallModel) -> tuple[ProviderError, StreamState]:
    state = StreamState()
    try:
        async for batch in model.stream(c):
            state = apply(state, batch)
    except ProviderError as exc:
        return exc, state
    raise AssertionError(f"{c.model} did not fail")
