"""LiteLLMModel end to end: LiteLLM (its real openai/httpx/aiohttp stack) against the fake server.

All tests of this module share one event loop and one fake server (module scope), so
LiteLLM's cached HTTP client and the server are set up once. LiteLLM is imported once
per process, off the loop (``prewarm``). The only real waiting is the idle/deadline
tests' 0.2 s timeouts.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest
import pytest_asyncio
from aiohttp import web
from litellm_helpers import MESSAGES, TEXT, TOOLS, collect, failure, module_loop

from oturn import (
    AuthenticationError,
    BadRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
    StreamStalled,
    UsageError,
)
from oturn.agent.deltas import StreamDelta, TextDelta
from oturn.agent.effects import CallModel
from oturn.agent.model import Model
from oturn.agent.stream import StreamState, apply
from oturn.llm.errors import exception_chain
from oturn.llm.litellm import LiteLLMModel, prewarm
from oturn.testing.openai_server import (
    DONE,
    SECOND_TOOL_ARGUMENTS,
    TOOL_ARGUMENTS,
    HTTPError,
    OpenAIServer,
    make_chunk,
)

KEY = "sk-oturn-test-7f3a9c"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[OpenAIServer]:
    await prewarm()
    async with OpenAIServer(text=TEXT, piece=5) as running:
        yield running


@pytest.fixture
def model(server: OpenAIServer) -> LiteLLMModel:
    server.requests.clear()
    server.request_headers.clear()
    return LiteLLMModel(api_base=server.base_url, api_key=KEY, timeout=10, idle_timeout=5)


def call(scenario: str, **kwargs: Any) -> CallModel:
    return CallModel(key="t1:m1", model=f"openai/{scenario}", messages=MESSAGES, **kwargs)


# -- streams that work ---------------------------------------------------------------------


@module_loop
async def test_text_with_usage(model: LiteLLMModel, server: OpenAIServer) -> None:
    state, batches = await collect(model, call("text"))
    assert state.text == TEXT
    assert state.finish_reason == "stop"
    assert state.usage is not None
    assert (state.usage.prompt_tokens, state.usage.completion_tokens, state.usage.total_tokens) == (11, 9, 20)
    assert state.usage.calls == 1
    assert state.usage.cost is None  # the fake model has no price: unknown, and the stream did not fail
    assert all(batches)  # chunks without deltas are not yielded
    texts = [d.text for b in batches for d in b if isinstance(d, TextDelta)]
    assert texts[1:] == [TEXT[i : i + 5] for i in range(0, len(TEXT), 5)]  # one batch per chunk, in order

    [sent] = server.requests
    assert sent["model"] == "text"  # "openai/" is LiteLLM's provider prefix
    assert sent["messages"] == MESSAGES
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert "tools" not in sent  # omitted when the call has none
    assert server.request_headers[0]["Authorization"] == f"Bearer {KEY}"


@module_loop
async def test_tools_and_params_are_sent(server: OpenAIServer) -> None:
    model = LiteLLMModel(api_base=server.base_url, api_key=KEY, params={"temperature": 0.25, "max_tokens": 50})
    server.requests.clear()
    c = call("text", tools=TOOLS, params={"max_tokens": 7, "stream_options": {"include_usage": False}})
    await collect(model, c)
    [sent] = server.requests
    assert sent["tools"] == TOOLS
    assert sent["temperature"] == 0.25
    assert sent["max_tokens"] == 7  # the call's params override the model's
    assert sent["stream_options"] == {"include_usage": True}  # usage is always asked for


@module_loop
async def test_detailed_usage(model: LiteLLMModel) -> None:
    state, _ = await collect(model, call("usage"))
    assert state.usage is not None
    assert state.usage.reasoning_tokens == 2
    assert state.usage.cached_tokens == 3
    assert state.raw_usage is not None
    assert state.raw_usage["prompt_tokens_details"]["cached_tokens"] == 3


@module_loop
async def test_tool_call_split_over_many_chunks(model: LiteLLMModel) -> None:
    state, batches = await collect(model, call("tool_calls", tools=TOOLS))
    assert len(batches) > 15
    [tool_call] = state.complete_tool_calls()
    assert (tool_call.index, tool_call.id, tool_call.name) == (0, "call_fake_1", "get_weather")
    assert tool_call.arguments == TOOL_ARGUMENTS
    assert json.loads(tool_call.arguments)["days"] == [1, 2, 3]
    assert state.finish_reason == "tool_calls"
    assert state.text is None  # content was null throughout


@module_loop
async def test_parallel_tool_calls_interleaved(model: LiteLLMModel) -> None:
    state, _ = await collect(model, call("parallel_tool_calls", tools=TOOLS))
    calls = state.complete_tool_calls()
    assert [(c.index, c.id, c.name) for c in calls] == [
        (0, "call_fake_a", "get_weather"),
        (1, "call_fake_b", "get_stock_price"),
    ]
    assert [c.arguments for c in calls] == [TOOL_ARGUMENTS, SECOND_TOOL_ARGUMENTS]


@module_loop
async def test_index_less_parallel_calls(model: LiteLLMModel, server: OpenAIServer) -> None:
    """Mistral-style: whole calls in one delta, without ``index``. LiteLLM numbers them by their
    position in the delta, so they stay two calls."""
    server.add_script(
        "index-less",
        [
            make_chunk("m", delta={"role": "assistant", "content": ""}),
            make_chunk(
                "m",
                delta={
                    "tool_calls": [
                        {"id": "aaa", "function": {"name": "f", "arguments": '{"x": 1}'}},
                        {"id": "bbb", "function": {"name": "g", "arguments": '{"y": 2}'}},
                    ]
                },
                finish_reason="tool_calls",
            ),
            DONE,
        ],
    )
    state, _ = await collect(model, call("index-less", tools=TOOLS))
    assert [(c.index, c.id, c.name, c.arguments) for c in state.complete_tool_calls()] == [
        (0, "aaa", "f", '{"x": 1}'),
        (1, "bbb", "g", '{"y": 2}'),
    ]
    assert state.finish_reason == "tool_calls"


@module_loop
async def test_litellm_estimates_usage_the_provider_did_not_send(model: LiteLLMModel, server: OpenAIServer) -> None:
    """With ``include_usage`` asked for and no usage chunk from the provider, LiteLLM counts the
    tokens itself (its tokenizer) and still reports a usage: the call's usage is an estimate then."""
    server.add_script("no-usage", [make_chunk("m", delta={"content": "hello there"}, finish_reason="stop"), DONE])
    state, _ = await collect(model, call("no-usage"))
    assert state.usage is not None
    assert state.usage.prompt_tokens > 0
    assert state.usage.completion_tokens > 0


@module_loop
async def test_cost_where_litellm_knows_the_model(model: LiteLLMModel, server: OpenAIServer) -> None:
    import litellm

    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
    server.add_script(
        "gpt-4o-mini",
        [
            make_chunk("gpt-4o-mini", delta={"role": "assistant", "content": "hi"}),
            make_chunk("gpt-4o-mini", finish_reason="stop"),
            make_chunk("gpt-4o-mini", choices=[], usage=usage),
            DONE,
        ],
    )
    state, _ = await collect(model, call("gpt-4o-mini"))
    prompt_cost, completion_cost = litellm.cost_per_token(
        model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=500
    )
    assert state.usage is not None
    assert state.usage.cost is not None
    assert state.usage.cost == pytest.approx(prompt_cost + completion_cost)
    assert state.usage.cost > 0


@module_loop
async def test_provider_reported_cost_is_kept(model: LiteLLMModel, server: OpenAIServer) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.125}
    server.add_script(
        "reported-cost",
        [
            make_chunk("x", delta={"content": "ok"}, finish_reason="stop"),
            make_chunk("x", choices=[], usage=usage),
            DONE,
        ],
    )
    state, _ = await collect(model, call("reported-cost"))
    assert state.usage is not None
    assert state.usage.cost == 0.125


@module_loop
async def test_stopping_early_closes_the_stream(model: LiteLLMModel, server: OpenAIServer) -> None:
    server.reset_gate()  # a fresh, unset gate: "slow" waits for it until set
    stream = model.stream(call("slow"))
    start = time.monotonic()
    first = await stream.__anext__()
    assert first
    await stream.aclose()  # must not wait for the rest of the stream
    assert time.monotonic() - start < 2


@module_loop
async def test_cancelling_the_consumer_is_not_an_error(model: LiteLLMModel, server: OpenAIServer) -> None:
    server.reset_gate()
    seen: list[Sequence[StreamDelta]] = []
    with anyio.move_on_after(0.1) as scope:
        async for batch in model.stream(call("slow")):
            seen.append(batch)
    assert scope.cancelled_caught
    assert seen  # it was mid-stream when cancelled


@module_loop
async def test_slow_stream_continues_when_released(model: LiteLLMModel, server: OpenAIServer) -> None:
    server.reset_gate()
    state = StreamState()
    stream = model.stream(call("slow"))
    async for batch in stream:
        state = apply(state, batch)
        if not server.gate.is_set():
            server.gate.set()
    assert state.text == TEXT


@module_loop
async def test_calls_with_tools_work_without_the_mcp_package(server: OpenAIServer) -> None:
    """LiteLLM ≤ 1.106 imports its MCP gateway (and the optional ``mcp`` package) for every call
    with ``tools``, so without ``mcp`` each such call fails; LiteLLMModel passes LiteLLM's
    private ``_skip_mcp_handler=True`` then. LiteLLM 1.110 checks the tools first and needs no
    switch. The canary half states which behaviour this LiteLLM has, so the test fails the day
    it changes; either way LiteLLMModel's call works and the request carries no private key."""
    import importlib.util

    import litellm

    from oturn.llm import litellm as adapter

    if importlib.util.find_spec("mcp") is not None:
        pytest.skip("the mcp package is installed: LiteLLM's MCP import works")
    raw = litellm.acompletion(
        model="openai/text",
        messages=MESSAGES,
        tools=TOOLS,
        stream=True,
        max_retries=0,
        timeout=5,
        api_base=server.base_url,
        api_key=KEY,
    )
    if adapter._has_mcp_precheck():
        response = await raw
        async for _ in response:
            pass
        assert not adapter._skip_mcp_handler
    else:
        with pytest.raises(Exception, match="No module named 'mcp'"):
            await raw
        assert adapter._skip_mcp_handler
    server.requests.clear()
    model = LiteLLMModel(api_base=server.base_url, api_key=KEY)
    await collect(model, call("text", tools=TOOLS))
    assert all(not key.startswith("_") for key in server.requests[0])


# -- failures ----------------------------------------------------------------------------


@module_loop
async def test_rate_limit(model: LiteLLMModel, server: OpenAIServer) -> None:
    error, _ = await failure(model, call("rate_limit"))
    assert type(error) is RateLimited
    assert (error.status, error.retry_after, error.retryable) == (429, 2.0, True)
    assert len(server.requests) == 1  # max_retries=0: LiteLLM did not retry behind our back
    assert error.__cause__ is not None
    assert "Rate limit reached" in str(error)


@module_loop
async def test_server_error(model: LiteLLMModel, server: OpenAIServer) -> None:
    error, _ = await failure(model, call("server_error"))
    assert type(error) is ProviderUnavailable
    assert (error.status, error.retryable) == (500, True)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "expected", "litellm_says"),
    [
        (400, BadRequest, "BadRequestError"),
        (401, AuthenticationError, "AuthenticationError"),
        (403, AuthenticationError, "APIError"),
        (404, BadRequest, "NotFoundError"),
        (408, ProviderTimeout, "Timeout"),
        (422, BadRequest, "BadRequestError"),
        (502, ProviderUnavailable, "BadGatewayError"),
        (503, ProviderUnavailable, "ServiceUnavailableError"),
        (504, ProviderUnavailable, "Timeout"),  # a gateway timeout is the provider's failure
        (529, ProviderUnavailable, "APIError"),
    ],
)
@module_loop
async def test_http_statuses(
    model: LiteLLMModel, server: OpenAIServer, status: int, expected: type[ProviderError], litellm_says: str
) -> None:
    server.add_script(f"status-{status}", [HTTPError(status, {"error": {"message": f"status {status}", "code": None}})])
    error, _ = await failure(model, call(f"status-{status}"))
    assert type(error) is expected
    assert error.status == status
    assert type(error.__cause__).__name__ == litellm_says  # whatever LiteLLM called it
    assert len(server.requests) == 1


@module_loop
async def test_stall_fails_within_the_idle_timeout(server: OpenAIServer) -> None:
    model = LiteLLMModel(api_base=server.base_url, api_key=KEY, timeout=10, idle_timeout=0.2)
    start = time.monotonic()
    error, state = await failure(model, call("stall"))
    elapsed = time.monotonic() - start
    assert type(error) is StreamStalled
    assert isinstance(error, ProviderTimeout)
    assert isinstance(error, StreamInterrupted)
    assert error.partial_text == TEXT[:10] == state.text
    assert error.retryable
    assert "idle timeout of 0.2 s" in str(error)
    assert 0.2 <= elapsed < 2


@module_loop
async def test_deadline_passes_mid_stream(server: OpenAIServer) -> None:
    server.reset_gate()
    model = LiteLLMModel(api_base=server.base_url, api_key=KEY, timeout=0.2, idle_timeout=0.2)
    error, _ = await failure(model, call("slow"))
    assert type(error) is StreamStalled
    assert "timeout" in str(error)


@module_loop
async def test_deadline_before_the_response(server: OpenAIServer) -> None:
    never = anyio.Event()

    async def hang(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await never.wait()
        raise AssertionError("unreachable")  # pragma: no cover

    server.add_handler("hang", hang)
    model = LiteLLMModel(api_base=server.base_url, api_key=KEY, timeout=0.2)
    start = time.monotonic()
    error, _ = await failure(model, call("hang"))
    assert type(error) is ProviderTimeout
    assert error.retryable
    assert time.monotonic() - start < 2
    never.set()


@module_loop
async def test_dropped_connection_keeps_the_partial_text(model: LiteLLMModel) -> None:
    error, state = await failure(model, call("drop"))
    assert type(error) is StreamInterrupted
    assert error.partial_text == TEXT[:10] == state.text
    assert error.status is None  # LiteLLM says 500; nothing on the wire said so
    assert error.retryable
    assert any(type(e).__name__ == "ClientPayloadError" for e in exception_chain(error))


@module_loop
async def test_error_chunk_mid_stream(model: LiteLLMModel) -> None:
    error, state = await failure(model, call("error_chunk"))
    assert type(error) is StreamInterrupted
    assert error.status == 500  # from the error payload's status_code
    assert error.partial_text == TEXT[:10] == state.text
    assert "invalid output" in str(error)


@module_loop
async def test_error_chunk_with_a_client_error_status_is_not_retryable(
    model: LiteLLMModel, server: OpenAIServer
) -> None:
    from oturn.testing.openai_server import SSEvent

    server.add_script(
        "bad-tool",
        [
            make_chunk("m", delta={"content": "maybe"}),
            SSEvent("error", {"error": {"message": "tool_use_failed", "code": "tool_use_failed", "status_code": 400}}),
        ],
    )
    error, _ = await failure(model, call("bad-tool"))
    assert type(error) is StreamInterrupted
    assert (error.status, error.retryable, error.partial_text) == (400, False, "maybe")


@module_loop
async def test_connection_refused(model: LiteLLMModel) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = LiteLLMModel(api_base=f"http://127.0.0.1:{port}/v1", api_key=KEY, timeout=5)
    error, _ = await failure(refused, call("text"))
    assert type(error) is ProviderConnectionError
    assert error.status is None  # LiteLLM calls it a 500 InternalServerError
    assert error.retryable
    assert type(error.__cause__).__name__ == "InternalServerError"
    assert any(isinstance(e, ConnectionRefusedError) for e in exception_chain(error))


@module_loop
async def test_api_key_never_leaks(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add_script(
        "echo-key",
        [HTTPError(401, {"error": {"message": f"Incorrect API key provided: {KEY}.", "code": "invalid_api_key"}})],
    )
    model = LiteLLMModel(api_base=server.base_url, api_key=KEY)
    assert KEY not in repr(model)
    assert "***" in repr(model)
    caplog.set_level(logging.DEBUG)
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai", "httpx", "httpcore", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)  # the most verbose LiteLLM and its stack can be
    error, _ = await failure(model, call("echo-key"))
    assert type(error) is AuthenticationError
    assert not error.retryable
    assert KEY not in str(error)
    assert KEY not in repr(error)
    assert "Incorrect API key provided: ***." in str(error)
    assert KEY in str(error.__cause__)  # the provider echoed it; the original is kept as it was
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    assert any(r.name in ("LiteLLM", "openai._base_client") for r in caplog.records)  # debug logs were on
    assert KEY not in caplog.text


# -- construction --------------------------------------------------------------------------


def test_completion_kwargs() -> None:
    model = LiteLLMModel(api_base="http://127.0.0.1:1/v1", api_key=KEY, timeout=12.5, params={"temperature": 0})
    kwargs = model.completion_kwargs(call("text"))
    assert kwargs == {
        "temperature": 0,
        "model": "openai/text",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_retries": 0,
        "timeout": 12.5,
        "api_base": "http://127.0.0.1:1/v1",
        "api_key": KEY,
    }
    assert "api_key" not in LiteLLMModel().completion_kwargs(call("text"))  # LiteLLM's own default then
    assert model.completion_kwargs(call("text", tools=TOOLS))["tools"] == TOOLS


@pytest.mark.parametrize("key", ["stream", "model", "max_retries", "timeout", "api_key", "tools"])
def test_reserved_params_are_refused(key: str) -> None:
    with pytest.raises(UsageError, match=key):
        LiteLLMModel(params={key: 1})
    with pytest.raises(UsageError, match=key):
        LiteLLMModel().completion_kwargs(call("text", params={key: 1}))


def test_a_named_model_drives_an_agent_and_a_nameless_one_is_refused() -> None:
    from oturn import Agent

    named = LiteLLMModel("openai/gpt-4o-mini", api_base="http://127.0.0.1:1/v1")
    assert named.name == "openai/gpt-4o-mini"
    assert repr(named).startswith("LiteLLMModel('openai/gpt-4o-mini', ")
    assert Agent(named).turn_config.model == "openai/gpt-4o-mini"
    assert Agent("openai/x", llm_process=False).model.name == "openai/x"  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match=r"no model name.*LiteLLMModel\('openai/"):
        Agent(LiteLLMModel())
    with pytest.raises(UsageError, match="api_key only apply to a model name"):
        Agent(named, api_key=KEY)
    for bad in ("", "  ", 3):
        with pytest.raises(UsageError, match="model name"):
            LiteLLMModel(bad)  # type: ignore[arg-type]


def test_options_and_protocol() -> None:
    model = LiteLLMModel()
    assert isinstance(model, Model)
    assert (model.timeout, model.idle_timeout) == (60.0, 30.0)
    assert LiteLLMModel(timeout=5).idle_timeout == 5.0
    assert "api_key=None" in repr(model)
    with pytest.raises(UsageError):
        LiteLLMModel(timeout=0)
    with pytest.raises(UsageError):
        LiteLLMModel(idle_timeout=-1)


_IMPORT_PROBE = r"""
import sys, time, asyncio, os, json
for name in ("LITELLM_LOCAL_MODEL_COST_MAP", "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"):
    os.environ.pop(name, None)
import oturn, oturn.llm, oturn.llm.litellm, oturn.llm.errors, oturn.testing.openai_server, oturn.testing.network
assert "litellm" not in sys.modules, "importing oturn imported litellm"
assert "aiohttp" not in sys.modules, "importing oturn imported aiohttp"
from oturn.llm.litellm import LiteLLMModel, is_litellm_loaded, prewarm
from oturn.testing.network import no_network

async def main():
    gaps = []
    async def heartbeat():
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    beat = asyncio.create_task(heartbeat())
    start = time.monotonic()
    with no_network() as guard:
        await asyncio.gather(prewarm(), LiteLLMModel.prewarm(), prewarm())
    took = time.monotonic() - start
    import_gap = max(gaps)
    from oturn.agent.effects import CallModel
    from oturn.testing.openai_server import OpenAIServer
    async with OpenAIServer() as server:  # the first call must not stall the loop either
        gaps.clear()
        model = LiteLLMModel(api_base=server.base_url, api_key="x")
        hi = [{"role": "user", "content": "hi"}]
        async for _ in model.stream(CallModel(key="k", model="openai/text", messages=hi)):
            pass
    beat.cancel()
    import litellm
    print(json.dumps({"took": took, "max_gap": import_gap, "first_call_gap": max(gaps), "blocked": guard.blocked,
           "loaded": is_litellm_loaded(), "suppress": litellm.suppress_debug_info,
           "env": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")}))

asyncio.run(main())
"""


def test_litellm_is_imported_lazily_off_the_loop_and_offline() -> None:
    """In a fresh interpreter: ``import oturn`` (and these modules) import neither LiteLLM nor aiohttp;
    concurrent prewarms import it once, in a thread, while the event loop keeps ticking; with the
    offline settings the import tries no network access (the guard saw none); and the first call
    after prewarm does not stall the loop with LiteLLM's own lazy imports."""
    result = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"]
    assert report["suppress"]
    assert report["env"] == "True"
    assert report["blocked"] == []
    assert report["max_gap"] < min(0.5, report["took"] / 2), report
    assert report["first_call_gap"] < 0.3, report  # LiteLLM's lazy imports were done by prewarm


def test_cost_fallbacks_never_fail() -> None:
    """Where a LiteLLM version does not stamp ``usage.cost`` itself (1.106 does), the adapter takes
    the chunk's ``_hidden_params["response_cost"]``, else prices the tokens with
    ``litellm.cost_per_token`` for the call's model; an unknown price is ``None``, never an error."""
    from oturn.agent.usage import Usage
    from oturn.llm.litellm import _call_cost, _import_litellm

    litellm = _import_litellm()
    usage = Usage(prompt_tokens=1000, completion_tokens=500, total_tokens=1500, calls=1)

    class Chunk:
        def __init__(self, hidden: dict[str, Any] | None = None) -> None:
            self._hidden_params = hidden or {}

    def cost(model_name: str, chunk: object, u: Usage = usage) -> float | None:
        return _call_cost(litellm, model_name, u, chunk)

    priced = Chunk({"response_cost": 0.5})
    assert cost("openai/unknown-model", priced) == 0.5
    prompt_cost, completion_cost = litellm.cost_per_token(
        model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=500
    )
    assert cost("openai/gpt-4o-mini", Chunk()) == pytest.approx(prompt_cost + completion_cost)
    assert cost("openai/no-such-model-anywhere", Chunk()) is None
    assert cost("openai/gpt-4o-mini", object(), Usage()) is None
