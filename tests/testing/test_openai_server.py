"""The fake OpenAI-compatible server, exercised with a plain aiohttp client (no LiteLLM)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from oturn.llm.sse import SSEEvent, iter_sse
from oturn.testing.openai_server import (
    DONE,
    SECOND_TOOL_ARGUMENTS,
    TOOL_ARGUMENTS,
    Drop,
    HTTPError,
    OpenAIServer,
    Pause,
    SSEvent,
    Stall,
    make_chunk,
)

STREAMS = Path(__file__).resolve().parents[1] / "data" / "streams"


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer(recordings=STREAMS, text="one two three four five", piece=4) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True, **extra}


async def post(
    session: aiohttp.ClientSession, server: OpenAIServer, model: str, **extra: Any
) -> aiohttp.ClientResponse:
    return await session.post(
        f"{server.base_url}/chat/completions", json=body(model, **extra), headers={"Authorization": "Bearer sk-test"}
    )


async def events(response: aiohttp.ClientResponse) -> list[SSEEvent]:
    return list(iter_sse(await response.read()))


def payloads(evs: list[SSEEvent]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in evs if e.data != "[DONE]"]


def content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def tool_arguments(chunks: list[dict[str, Any]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                out[call["index"]] = out.get(call["index"], "") + call["function"].get("arguments", "")
    return out


async def test_text_stream_is_openai_shaped(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "text") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        evs = await events(response)
    assert evs[-1].data == "[DONE]"
    chunks = payloads(evs)
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "text" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert content(chunks) == "one two three four five"
    assert len(chunks) == 1 + 6 + 1  # role, six 4-char pieces, finish
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # not asked for


async def test_usage_chunk_when_asked(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "text", stream_options={"include_usage": True}) as response:
        chunks = payloads(await events(response))
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}


async def test_usage_scenario_always_sends_detailed_usage(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "usage") as response:
        chunks = payloads(await events(response))
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 2


async def test_requests_and_headers_are_recorded(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with await post(session, server, "text", tools=tools) as response:
        await response.read()
    assert server.requests == [body("text", tools=tools)]
    assert server.request_headers[0]["Authorization"] == "Bearer sk-test"


async def test_tool_call_arguments_split_over_many_chunks(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "tool_calls") as response:
        chunks = payloads(await events(response))
    fragments = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert len(fragments) > 10
    first = fragments[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["id"] == "call_fake_1"
    assert first["function"]["name"] == "get_weather"
    assert tool_arguments(chunks) == {0: TOOL_ARGUMENTS}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_parallel_tool_calls_interleave(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "parallel_tool_calls") as response:
        chunks = payloads(await events(response))
    order = [
        c["choices"][0]["delta"]["tool_calls"][0]["index"] for c in chunks if c["choices"][0]["delta"].get("tool_calls")
    ]
    assert order[:4] == [0, 1, 0, 1]
    assert tool_arguments(chunks) == {0: TOOL_ARGUMENTS, 1: SECOND_TOOL_ARGUMENTS}


async def test_rate_limit_is_a_429_with_retry_after(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "rate_limit") as response:
        assert response.status == 429
        assert response.headers["retry-after"] == "2"
        error = (await response.json())["error"]
    assert error["code"] == "rate_limit_exceeded"


async def test_server_error_and_unknown_scenario(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "server_error") as response:
        assert response.status == 500
    async with await post(session, server, "no-such-scenario") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "model_not_found"


async def test_non_streaming_requests_are_refused(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "text", stream=False) as response:
        assert response.status == 400


async def test_bad_bodies_are_refused(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{server.base_url}/chat/completions", data=b"not json") as response:
        assert response.status == 400
    async with session.post(f"{server.base_url}/chat/completions", json=[1, 2]) as response:
        assert response.status == 400
    assert server.requests == []


async def test_slow_waits_for_the_gate(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "slow") as response:
        received = b""
        while received.count(b"\n\n") < 2:
            received += await response.content.readany()
        with anyio.move_on_after(0.05) as waited:  # nothing more until the test opens the gate
            await response.content.readany()
        assert waited.cancelled_caught
        server.gate.set()
        received += await response.read()
    chunks = payloads(list(iter_sse(received)))
    assert content(chunks) == "one two three four five"


async def test_stall_keeps_the_connection_open_until_close(session: aiohttp.ClientSession) -> None:
    server = OpenAIServer(text="abcdefghij", piece=2)
    async with server:
        response = await post(session, server, "stall")
        received = b""
        while received.count(b"\n\n") < 3:
            received += await response.content.readany()
        with anyio.move_on_after(0.05) as waited:
            await response.content.readany()
        assert waited.cancelled_caught
    # closing the server released the stalled handler and closed the connection mid-body
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    response.release()
    assert content(payloads(list(iter_sse(received)))) == "abcd"


async def test_drop_closes_the_connection_mid_body(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "drop") as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_error_chunk_ends_with_an_error_event(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    async with await post(session, server, "error_chunk") as response:
        evs = await events(response)
    assert evs[-1].event == "error"
    assert json.loads(evs[-1].data)["error"]["code"] == "invalid_output"
    assert content(payloads(evs[:-1])) == "one two "


async def test_replay_streams_the_recording_verbatim(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    name = "14-openrouter-kimi-tool-call-colon-id"
    async with await post(session, server, f"replay:{name}") as response:
        assert response.status == 200
        assert await response.read() == (STREAMS / f"{name}.sse").read_bytes()


@pytest.mark.parametrize("name", ["no-such-recording", "../streams/01-openai-gpt4o-text", "../../pyproject"])
async def test_replay_of_a_missing_recording_is_a_404(
    server: OpenAIServer, session: aiohttp.ClientSession, name: str
) -> None:
    async with await post(session, server, f"replay:{name}") as response:
        assert response.status == 404


async def test_replay_without_a_recordings_directory(session: aiohttp.ClientSession) -> None:
    async with OpenAIServer() as server, await post(session, server, "replay:x") as response:
        assert response.status == 404


async def test_custom_script(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    go = anyio.Event()
    server.add_script(
        "custom",
        [
            make_chunk("m", delta={"content": "a"}),
            b": a comment line\n\n",
            "data: " + json.dumps(make_chunk("m", delta={"content": "b"})) + "\n\n",
            Pause(go),
            SSEvent("note", {"hello": "world"}),
            make_chunk("m", choices=[], usage={"prompt_tokens": 1}),
            DONE,
        ],
    )
    async with await post(session, server, "custom") as response:
        received = b""
        while received.count(b"\n\n") < 3:
            received += await response.content.readany()
        go.set()
        received += await response.read()
    evs = list(iter_sse(received))
    assert [e.event for e in evs] == [None, None, "note", None, None]
    assert content(payloads([e for e in evs if e.event is None])) == "ab"
    assert evs[-1].data == "[DONE]"


async def test_custom_http_error_and_drop(server: OpenAIServer, session: aiohttp.ClientSession) -> None:
    server.add_script("teapot", [HTTPError(418, "short and stout", {"x-kind": "teapot"})])
    async with await post(session, server, "teapot") as response:
        assert response.status == 418
        assert response.headers["x-kind"] == "teapot"
        assert await response.text() == "short and stout"
    server.add_script("gone", [make_chunk("m", delta={"content": "x"}), Drop()])
    async with await post(session, server, "gone") as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_a_script_overrides_a_builtin_and_a_handler_overrides_a_script(
    server: OpenAIServer, session: aiohttp.ClientSession
) -> None:
    server.add_script("text", [make_chunk("m", delta={"content": "overridden"}), DONE])
    async with await post(session, server, "text") as response:
        assert content(payloads(await events(response))) == "overridden"

    async def handler(request: web.Request, received: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"echo": received["model"]}, status=202)

    server.add_handler("text", handler)
    async with await post(session, server, "text") as response:
        assert response.status == 202
        assert await response.json() == {"echo": "text"}


def test_http_error_must_be_alone() -> None:
    server = OpenAIServer()
    with pytest.raises(ValueError, match="only step"):
        server.add_script("bad", [make_chunk("m"), HTTPError(500)])
    with pytest.raises(ValueError, match="piece"):
        OpenAIServer(piece=0)


async def test_addresses_and_lifecycle() -> None:
    server = OpenAIServer()
    assert "not running" in repr(server)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.gate
    async with server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.base_url in repr(server)
        with pytest.raises(RuntimeError, match="already running"):
            await server.start()
    assert "not running" in repr(server)
    await server.close()  # idempotent


async def test_stall_step_in_a_custom_script(session: aiohttp.ClientSession) -> None:
    async with OpenAIServer() as server:
        server.add_script("hang", [make_chunk("m", delta={"content": "x"}), Stall()])
        response = await post(session, server, "hang")
        assert (await response.content.readany()).startswith(b"data: ")
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    response.release()
