"""The 16 recorded provider streams, through the real LiteLLM stack, against ``expected.json``.

Each recording (``tests/data/streams/*.sse``) is served verbatim by the fake server
(``model="openai/replay:<name>"``); LiteLLM parses it with the openai SDK, re-chunks it
in its ``CustomStreamWrapper``; :class:`~oturn.llm.litellm.LiteLLMModel` normalises each
chunk and :func:`oturn.agent.stream.apply` assembles the message. The result is
compared with the recording's ``expected`` result.

Where LiteLLM loses or changes something, :data:`LITELLM_CHANGES` states LiteLLM's
exact result and why, so these tests pass today and fail the day LiteLLM changes
(better or worse). oturn's own SSE reader + normaliser, which get every recording right,
are tested in ``tests/llm/test_recorded_streams.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio

from oturn import ProviderError, StreamInterrupted
from oturn.agent.effects import CallModel
from oturn.agent.stream import StreamState, apply, end
from oturn.agent.usage import Usage
from oturn.llm.litellm import LiteLLMModel, _import_litellm, prewarm
from oturn.llm.normalize import usage_from_dict
from oturn.testing.openai_server import OpenAIServer

STREAMS: Final = Path(__file__).resolve().parents[1] / "data" / "streams"
EXPECTED: Final[dict[str, Any]] = json.loads((STREAMS / "expected.json").read_text())
NAMES: Final = sorted(name.removesuffix(".sse") for name in EXPECTED)

module_loop = pytest.mark.asyncio(loop_scope="module")


def _fails_without_finish() -> bool:
    _import_litellm()  # oturn's import: its environment settings must precede LiteLLM's first import
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    return hasattr(CustomStreamWrapper, "_should_fail_on_clean_eof")


LITELLM_FAILS_WITHOUT_FINISH: Final = _fails_without_finish()
"""LiteLLM 1.110 treats an OpenAI-style stream that ends (even with ``[DONE]``) without any
``finish_reason`` as truncated: the call fails with "Stream ended before a finish_reason was
received" and the usage chunk it held back is never yielded. LiteLLMModel ends such a stream
normally instead (finish_reason None, as oturn's own reader and ``expected`` have it) and
recovers the held-back usage. LiteLLM ≤ 1.106 made up ``finish_reason="stop"``. Only
recording 12 ends so."""

LITELLM_CHANGES: Final[dict[str, dict[str, Any]]] = {
    # Refusal text is lost. CustomStreamWrapper.is_chunk_non_empty() does not count
    # `delta.refusal`, so every chunk whose delta only has a refusal is dropped; only the
    # first chunk survives (it is kept for its `role`), with its `refusal: ""`.
    "05-openai-gpt4o-refusal": {"refusal": ""},
    # n=3: the contents of all three choices come through, but LiteLLM keeps one
    # finish_reason per stream (received_finish_reason, reported on choice 0 by the
    # wrapper's own finish chunk); the finish chunks of choices 1 and 2 are dropped.
    "07-openai-gpt4o-n3-choices": {"choices[1].finish_reason": None, "choices[2].finish_reason": None},
    # Magistral's thinking is lost. Its deltas carry `content` as a LIST of typed parts;
    # handle_openai_chat_completion_chunk() takes delta.content as the text and
    # is_chunk_non_empty() only counts a non-empty *string*, so those chunks are dropped.
    "11-mistral-magistral-thinking-content-parts": {"reasoning": None},
    # Snowflake: (1) `reasoning_details` survives only on the first chunk (kept for its
    # `role`); later reasoning_details-only chunks are dropped as empty, so only "15" of
    # "15 * 27 = 405" arrives. (2) The provider sent no finish_reason at all: LiteLLM
    # ≤ 1.106 made up "stop"; later versions fail the call, which LiteLLMModel turns back
    # into a normal end (see LITELLM_FAILS_WITHOUT_FINISH).
    "12-snowflake-claude-reasoning-details-no-finish": {
        "reasoning": "15",
        "finish_reason": None if LITELLM_FAILS_WITHOUT_FINISH else "stop",
    },
    # The only `content: ""` is in the last chunk, beside finish_reason and usage; LiteLLM
    # replaces that chunk by its own finish chunk (Delta(content=None)), so "content
    # appeared, empty" becomes "no content" (harmless: both mean no text).
    "16-deepseek-reasoner-reasoning-then-tool-call": {"content": None},
}
"""Per recording, the fields where LiteLLM's result differs from ``expected``, with LiteLLM's value."""

RAW_USAGE_CHANGES: Final[dict[str, tuple[set[str], set[str]]]] = {
    # (keys of the provider's usage object LiteLLM drops, keys it adds). LiteLLM rebuilds
    # the usage object (stream_chunk_builder / its Usage model), stamps its own `cost`
    # where its price map knows the response's model, and drops fields it does not model.
    **{
        name: (set(), {"cost"})
        for name in (
            "01-openai-gpt4o-text",
            "03-openai-gpt4o-tool-call-41-deltas",
            "04-openai-gpt4o-parallel-tool-calls",
            "05-openai-gpt4o-refusal",
            "06-openai-gpt4o-length-1-token",
            "07-openai-gpt4o-n3-choices",
            "08-openai-gpt5-usage-then-moderation",
            "09-azure-gpt4omini-filter-chunk-tool-call",
        )
    },
    # vLLM and Mistral sent no completion_tokens_details; LiteLLM adds
    # {"reasoning_tokens": 0, "text_tokens": N}.
    "02-vllm-llama33-text-usage": (set(), {"completion_tokens_details"}),
    "11-mistral-magistral-thinking-content-parts": (set(), {"completion_tokens_details"}),
    # DeepSeek's cache counters are dropped (the cached count survives in
    # prompt_tokens_details.cached_tokens, so Usage.cached_tokens is still right).
    "10-deepseek-reasoner-reasoning-content": ({"prompt_cache_hit_tokens", "prompt_cache_miss_tokens"}, set()),
    "16-deepseek-reasoner-reasoning-then-tool-call": ({"prompt_cache_hit_tokens", "prompt_cache_miss_tokens"}, set()),
    # OpenRouter's own fields are dropped; its provider-reported `cost` is kept.
    "14-openrouter-kimi-tool-call-colon-id": ({"is_byok", "cost_details"}, set()),
}

PRICED_BY_LITELLM: Final = {name for name, (_, added) in RAW_USAGE_CHANGES.items() if "cost" in added}
"""Recordings whose response model (gpt-4o-2024-08-06, gpt-5-2025-08-07, gpt-4o-mini-2024-07-18)
LiteLLM's bundled price map knows: their usage gets a cost. OpenRouter reports its own (14)."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model() -> AsyncIterator[LiteLLMModel]:
    await prewarm()
    async with OpenAIServer(recordings=STREAMS) as server:
        yield LiteLLMModel(api_base=server.base_url, api_key="sk-recorded", timeout=10)


async def replay(model: LiteLLMModel, name: str) -> tuple[StreamState, ProviderError | None]:
    state = StreamState()
    call = CallModel(key="rec:m1", model=f"openai/replay:{name}", messages=[{"role": "user", "content": "hi"}])
    try:
        async for batch in model.stream(call):
            state = apply(state, batch)
    except ProviderError as exc:
        return state, exc
    return end(state), None


def summary(state: StreamState) -> dict[str, Any]:
    """The fields ``expected`` has, from the assembled state (choice 0 at the top level)."""
    out: dict[str, Any] = {
        "content": state.text,
        "reasoning": state.reasoning,
        "refusal": state.refusal,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in state.tool_calls],
        "finish_reason": state.finish_reason,
    }
    if len(state.choices) > 1:
        for c in state.choices:
            out[f"choices[{c.index}].content"] = c.text
            out[f"choices[{c.index}].finish_reason"] = c.finish_reason
    return out


def expected_summary(expected: dict[str, Any]) -> dict[str, Any]:
    out = {key: expected[key] for key in ("content", "reasoning", "refusal", "finish_reason")}
    out["tool_calls"] = [{k: call[k] for k in ("id", "name", "arguments")} for call in expected["tool_calls"]]
    for choice in expected.get("choices", []):
        out[f"choices[{choice['index']}].content"] = choice["content"]
        out[f"choices[{choice['index']}].finish_reason"] = choice["finish_reason"]
    return out


def tokens(usage: Usage) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cached_tokens=usage.cached_tokens,
        calls=usage.calls,
    )


def test_every_recording_is_covered() -> None:
    assert len(NAMES) == 16
    assert set(LITELLM_CHANGES) <= set(NAMES)
    assert set(RAW_USAGE_CHANGES) <= set(NAMES)


@module_loop
@pytest.mark.parametrize("name", NAMES)
async def test_recording_through_litellm(model: LiteLLMModel, name: str) -> None:
    expected = EXPECTED[f"{name}.sse"]["expected"]
    state, error = await replay(model, name)

    want = {**expected_summary(expected), **LITELLM_CHANGES.get(name, {})}
    assert summary(state) == want

    if expected["error"] is None:
        assert error is None
    else:
        # The openai SDK raises on the error payload before LiteLLM yields it, so it never
        # reaches normalize_chunk as a StreamErrorDelta: the call fails with StreamInterrupted,
        # carrying the status the payload stated and the text streamed before it.
        payload = expected["error"]["error"]
        assert type(error) is StreamInterrupted
        assert error.status == payload["status_code"]
        assert error.partial_text == expected["content"]
        assert payload["message"] in str(error)
        assert state.error is None


@module_loop
@pytest.mark.parametrize("name", NAMES)
async def test_recording_usage_through_litellm(model: LiteLLMModel, name: str) -> None:
    expected = EXPECTED[f"{name}.sse"]["expected"]["usage"]
    state, _ = await replay(model, name)
    if expected is None:
        assert state.usage is None
        return
    assert state.usage is not None
    # Token counts survive on every stream — also 08's usage chunk followed by a moderation
    # chunk with usage:null (LiteLLM re-emits the usage it collected at the very end).
    assert tokens(state.usage) == tokens(usage_from_dict(expected))
    if name in PRICED_BY_LITELLM:
        assert state.usage.cost is not None
        assert state.usage.cost > 0
    elif "cost" in expected:
        assert state.usage.cost == expected["cost"]  # provider-reported (OpenRouter), kept
    else:
        assert state.usage.cost is None  # unknown price: no cost, and no failure

    assert state.raw_usage is not None
    lost = {key for key in expected if key not in state.raw_usage}
    added = {key for key in state.raw_usage if key not in expected}
    assert (lost, added) == RAW_USAGE_CHANGES.get(name, (set(), set()))
    for key in set(expected) - lost:
        assert state.raw_usage[key] == expected[key], key


@module_loop
async def test_mistral_index_less_tool_call_gets_index_zero(model: LiteLLMModel) -> None:
    """Mistral sends its whole tool call without ``index`` (and without ``type``); LiteLLM fills
    in ``index`` (the call's position in the delta: 0 here) and ``type: "function"``, so the
    assembler keys it by index rather than by id. Same result (see
    ``test_index_less_parallel_calls`` in test_litellm_adapter.py for two calls)."""
    state, _ = await replay(model, "13-mistral-tool-call-no-index")
    [call] = state.tool_calls
    assert (call.index, call.id) == (0, "gSIMJiOkT")
