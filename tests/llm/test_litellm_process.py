"""LiteLLMProcessModel end to end: LiteLLM in a worker process, against the fake server.

The tests share one event loop, one fake server and one worker process (module scope):
LiteLLM's import (2-3 s) is paid by the worker once, plus once per test that kills it
on purpose. The worker is started inside a network guard, which it inherits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio
from aiohttp import web
from litellm_helpers import MESSAGES, TEXT, TOOLS, collect, failure, module_loop

import oturn
from oturn import (
    AuthenticationError,
    ClosedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
    StreamStalled,
    UsageError,
)
from oturn.agent.deltas import StreamDelta
from oturn.agent.effects import CallModel
from oturn.agent.model import Model
from oturn.agent.stream import StreamState, apply, end
from oturn.llm.litellm import LiteLLMModel
from oturn.llm.process import LiteLLMProcessModel, LiteLLMWorker, RemoteException
from oturn.testing.network import no_network
from oturn.testing.openai_server import (
    DONE,
    SECOND_TOOL_ARGUMENTS,
    TOOL_ARGUMENTS,
    HTTPError,
    OpenAIServer,
    make_chunk,
)

KEY = "sk-oturn-process-5e1d7b"


class Endless:
    """A scenario that streams a chunk every 20 ms until the client goes away (then ``gone`` is set)."""

    def __init__(self) -> None:
        self.gone = anyio.Event()
        self.sent = 0

    async def __call__(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                chunk = make_chunk("endless", delta={"content": "x"})
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.sent += 1
                await anyio.sleep(0.02)
        except OSError:  # ConnectionResetError: the client closed the connection
            pass
        finally:
            self.gone.set()
        return response


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer(text=TEXT, piece=5) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def worker() -> AsyncIterator[LiteLLMWorker]:
    running = LiteLLMWorker()
    with no_network():  # the worker inherits the guard (module fixtures start before the per-test guard)
        await running.start()
    try:
        yield running
    finally:
        pid = running.pid
        await running.aclose()
        assert pid is None or not _alive(pid)


@pytest.fixture
def model(server: OpenAIServer, worker: LiteLLMWorker) -> LiteLLMProcessModel:
    server.requests.clear()
    server.request_headers.clear()
    return LiteLLMProcessModel(api_base=server.base_url, api_key=KEY, timeout=10, idle_timeout=5, worker=worker)


def call(scenario: str, **kwargs: Any) -> CallModel:
    return CallModel(key="t1.1", model=f"openai/{scenario}", messages=MESSAGES, **kwargs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers signal 0: look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# -- streams that work ---------------------------------------------------------------------


@module_loop
async def test_text_with_usage(model: LiteLLMProcessModel, server: OpenAIServer, worker: LiteLLMWorker) -> None:
    state, batches = await collect(model, call("text"))
    assert state.text == TEXT
    assert state.finish_reason == "stop"
    assert state.usage is not None
    assert (state.usage.prompt_tokens, state.usage.completion_tokens, state.usage.total_tokens) == (11, 9, 20)
    assert all(batches)
    assert all(type(d).__module__ == "oturn.agent.deltas" for b in batches for d in b)  # typed, not dicts
    [sent] = server.requests
    assert sent["model"] == "text"
    assert sent["messages"] == MESSAGES
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert "tools" not in sent
    assert server.request_headers[0]["Authorization"] == f"Bearer {KEY}"
    assert worker.pid is not None
    assert worker.pid != os.getpid()
    assert worker.litellm_version


@module_loop
async def test_tools_and_params_are_sent(server: OpenAIServer, worker: LiteLLMWorker) -> None:
    model = LiteLLMProcessModel(
        api_base=server.base_url, api_key=KEY, params={"temperature": 0.25, "max_tokens": 50}, worker=worker
    )
    server.requests.clear()
    c = call("text", tools=TOOLS, params={"max_tokens": 7, "stream_options": {"include_usage": False}})
    await collect(model, c)
    [sent] = server.requests
    assert sent["tools"] == TOOLS
    assert sent["temperature"] == 0.25
    assert sent["max_tokens"] == 7
    assert sent["stream_options"] == {"include_usage": True}
    assert all(not key.startswith("_") for key in sent)  # the MCP workaround leaves no trace


@module_loop
async def test_detailed_usage(model: LiteLLMProcessModel) -> None:
    state, _ = await collect(model, call("usage"))
    assert state.usage is not None
    assert (state.usage.reasoning_tokens, state.usage.cached_tokens) == (2, 3)
    assert state.raw_usage is not None
    assert state.raw_usage["prompt_tokens_details"]["cached_tokens"] == 3


@module_loop
async def test_tool_call_split_over_many_chunks(model: LiteLLMProcessModel) -> None:
    state, _ = await collect(model, call("tool_calls", tools=TOOLS))
    [tool_call] = state.complete_tool_calls()
    assert (tool_call.index, tool_call.id, tool_call.name) == (0, "call_fake_1", "get_weather")
    assert tool_call.arguments == TOOL_ARGUMENTS
    assert state.finish_reason == "tool_calls"


@module_loop
async def test_parallel_tool_calls_interleaved(model: LiteLLMProcessModel) -> None:
    state, _ = await collect(model, call("parallel_tool_calls", tools=TOOLS))
    calls = state.complete_tool_calls()
    assert [(c.index, c.id, c.name) for c in calls] == [
        (0, "call_fake_a", "get_weather"),
        (1, "call_fake_b", "get_stock_price"),
    ]
    assert [c.arguments for c in calls] == [TOOL_ARGUMENTS, SECOND_TOOL_ARGUMENTS]


@module_loop
async def test_cost_is_computed_in_the_worker(model: LiteLLMProcessModel, server: OpenAIServer) -> None:
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
    assert state.usage is not None
    assert state.usage.cost is not None
    assert state.usage.cost > 0


@module_loop
async def test_concurrent_calls_share_the_worker(server: OpenAIServer, worker: LiteLLMWorker) -> None:
    """Two interleaved streams (one paused mid-way) and ten quick ones, all over one pipe."""
    model = LiteLLMProcessModel(api_base=server.base_url, api_key=KEY, timeout=10, worker=worker)
    gate = server.reset_gate()
    results: dict[str, str | None] = {}
    first_batch = anyio.Event()
    quick_done = anyio.Event()

    async def slow() -> None:
        state = StreamState()
        async for batch in model.stream(call("slow")):
            state = apply(state, batch)
            first_batch.set()
        results["slow"] = end(state).text

    async def quick(n: int) -> None:
        state, _ = await collect(model, call("text"))
        results[f"quick{n}"] = state.text
        if len(results) == 10:
            quick_done.set()

    pid = worker.pid
    async with anyio.create_task_group() as group:
        group.start_soon(slow)
        await first_batch.wait()  # the slow stream is open and waiting on the server
        for n in range(10):
            group.start_soon(quick, n)
        with anyio.fail_after(10):
            await quick_done.wait()
        assert "slow" not in results  # still paused while the others went through
        gate.set()
    assert results == {"slow": TEXT, **{f"quick{n}": TEXT for n in range(10)}}
    assert worker.pid == pid  # one process served them all


# -- failures ----------------------------------------------------------------------------


@module_loop
async def test_rate_limit(model: LiteLLMProcessModel, server: OpenAIServer) -> None:
    error, _ = await failure(model, call("rate_limit"))
    assert type(error) is RateLimited
    assert (error.status, error.retry_after, error.retryable) == (429, 2.0, True)
    assert len(server.requests) == 1  # max_retries=0 in the worker too
    assert "Rate limit reached" in str(error)
    cause = error.__cause__
    assert isinstance(cause, RemoteException)
    assert any("RateLimitError" in line for line in cause.chain)


@module_loop
async def test_server_error(model: LiteLLMProcessModel) -> None:
    error, _ = await failure(model, call("server_error"))
    assert type(error) is ProviderUnavailable
    assert (error.status, error.retryable) == (500, True)


@module_loop
async def test_stall_fails_within_the_idle_timeout(server: OpenAIServer, worker: LiteLLMWorker) -> None:
    model = LiteLLMProcessModel(api_base=server.base_url, api_key=KEY, timeout=10, idle_timeout=0.2, worker=worker)
    start = time.monotonic()
    error, state = await failure(model, call("stall"))
    elapsed = time.monotonic() - start
    assert type(error) is StreamStalled
    assert isinstance(error, ProviderTimeout)
    assert error.partial_text == TEXT[:10] == state.text
    assert "idle timeout of 0.2 s" in str(error)
    assert 0.2 <= elapsed < 2


@module_loop
async def test_dropped_connection_keeps_the_partial_text(model: LiteLLMProcessModel) -> None:
    error, state = await failure(model, call("drop"))
    assert type(error) is StreamInterrupted
    assert error.partial_text == TEXT[:10] == state.text
    assert error.status is None
    assert error.retryable
    assert isinstance(error.__cause__, RemoteException)
    assert any("ClientPayloadError" in line for line in error.__cause__.chain)


@module_loop
async def test_error_chunk_mid_stream(model: LiteLLMProcessModel) -> None:
    error, state = await failure(model, call("error_chunk"))
    assert type(error) is StreamInterrupted
    assert error.status == 500
    assert error.partial_text == TEXT[:10] == state.text


@module_loop
async def test_the_worker_inherits_the_network_guard(model: LiteLLMProcessModel, worker: LiteLLMWorker) -> None:
    remote = LiteLLMProcessModel(api_base="http://192.0.2.1:9/v1", api_key=KEY, timeout=5, worker=worker)
    start = time.monotonic()
    error, _ = await failure(remote, call("text"))
    assert type(error) is ProviderConnectionError
    assert time.monotonic() - start < 2  # refused at once, not a connect timeout
    assert isinstance(error.__cause__, RemoteException)
    assert any("blocked" in line for line in error.__cause__.chain)


@module_loop
async def test_api_key_never_leaks(
    server: OpenAIServer, worker: LiteLLMWorker, capfd: pytest.CaptureFixture[str]
) -> None:
    server.add_script(
        "echo-key",
        [HTTPError(401, {"error": {"message": f"Incorrect API key provided: {KEY}.", "code": "invalid_api_key"}})],
    )
    model = LiteLLMProcessModel(api_base=server.base_url, api_key=KEY, worker=worker)
    assert KEY not in repr(model)
    assert "***" in repr(model)
    error, _ = await failure(model, call("echo-key"))
    assert type(error) is AuthenticationError
    assert not error.retryable
    assert "Incorrect API key provided: ***." in str(error)
    assert KEY not in str(error) + repr(error)
    assert isinstance(error.__cause__, RemoteException)
    assert error.__cause__.chain  # the worker's cause chain, as text...
    assert KEY not in str(error.__cause__)  # ...redacted: unlike in process, the original never crosses
    captured = capfd.readouterr()  # file-descriptor level: the worker's stderr is this process's
    assert KEY not in captured.out + captured.err


# -- cancellation and crashes --------------------------------------------------------------


@module_loop
async def test_cancelling_a_call_stops_it_in_the_worker(model: LiteLLMProcessModel, server: OpenAIServer) -> None:
    endless = Endless()
    server.add_handler("endless", endless)
    seen: list[Sequence[StreamDelta]] = []
    with anyio.move_on_after(0.3) as scope:
        async for batch in model.stream(call("endless")):
            seen.append(batch)
    cancelled_at = time.monotonic()
    assert scope.cancelled_caught
    assert seen
    with anyio.fail_after(5):
        await endless.gone.wait()  # the worker closed the provider's stream
    assert time.monotonic() - cancelled_at < 3
    state, _ = await collect(model, call("text"))  # and the worker goes on serving
    assert state.text == TEXT


@module_loop
async def test_the_cancel_scope_is_honoured_promptly(model: LiteLLMProcessModel, server: OpenAIServer) -> None:
    server.reset_gate()  # "slow" waits for the gate after its first deltas
    stream = model.stream(call("slow"))
    assert await stream.__anext__()
    with anyio.CancelScope() as scope:
        scope.cancel()
        start = time.monotonic()
        await stream.__anext__()
    assert scope.cancelled_caught
    assert time.monotonic() - start < 0.5
    await stream.aclose()


@module_loop
async def test_closing_a_stream_early(model: LiteLLMProcessModel, server: OpenAIServer) -> None:
    endless = Endless()
    server.add_handler("endless-close", endless)
    stream = model.stream(call("endless-close"))
    assert await stream.__anext__()
    start = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - start < 0.5
    with anyio.fail_after(5):
        await endless.gone.wait()


@module_loop
async def test_worker_killed_mid_stream_then_recovery(model: LiteLLMProcessModel, server: OpenAIServer) -> None:
    worker = model.worker
    server.reset_gate()
    pid = worker.pid
    assert pid is not None
    state = StreamState()

    async def consume() -> None:
        nonlocal state
        async for batch in model.stream(call("slow")):
            state = apply(state, batch)
            if state.text:
                os.kill(pid, signal.SIGKILL)  # mid-stream: the rest waits for the gate

    start = time.monotonic()
    with pytest.raises(StreamInterrupted) as info:
        await consume()
    assert time.monotonic() - start < 2
    error = info.value
    assert "killed by signal 9 (SIGKILL)" in str(error)
    assert error.partial_text == state.text != ""
    assert error.retryable
    assert not _alive(pid)
    server.gate.set()
    restarts = worker.restarts
    state, _ = await collect(model, call("text"))  # a new worker (LiteLLM imported again)
    assert state.text == TEXT
    assert worker.pid not in (None, pid)
    assert worker.restarts == restarts  # the dead one was seen dead: nothing to resend


@module_loop
async def test_worker_killed_while_idle_is_replaced_transparently(model: LiteLLMProcessModel) -> None:
    worker = model.worker
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for _ in range(500):
        if not _alive(pid):
            break
        await anyio.sleep(0.01)
    restarts = worker.restarts
    state, _ = await collect(model, call("text"))  # sent to the dead one, never accepted: resent once
    assert state.text == TEXT
    assert worker.restarts == restarts + 1
    assert worker.pid not in (None, pid)


# -- construction and lifetime ---------------------------------------------------------------


def test_options_and_protocol() -> None:
    model = LiteLLMProcessModel()
    assert isinstance(model, Model)
    assert (model.timeout, model.idle_timeout) == (60.0, 30.0)
    assert "api_key=None" in repr(model)
    with pytest.raises(UsageError):
        LiteLLMProcessModel(timeout=0)
    with pytest.raises(UsageError, match="stream"):
        LiteLLMProcessModel(params={"stream": False})
    with pytest.raises(UsageError, match="api_key"):
        model.request(call("text", params={"api_key": "x"}))
    request = LiteLLMProcessModel(params={"temperature": 0}).request(call("text", params={"top_p": 1}))
    assert request.call.params == {"temperature": 0, "top_p": 1}


def test_agent_picks_the_worker_process_by_default() -> None:
    assert isinstance(oturn.Agent("openai/gpt-4o-mini").model, LiteLLMProcessModel)
    assert isinstance(oturn.Agent("openai/gpt-4o-mini", llm_process=True).model, LiteLLMProcessModel)
    assert isinstance(oturn.Agent("openai/gpt-4o-mini", llm_process=False).model, LiteLLMModel)


@module_loop
async def test_unencodable_params_are_a_usage_error(model: LiteLLMProcessModel) -> None:
    with pytest.raises(UsageError, match="cannot be sent"):
        await collect(model, call("text", params={"response_format": object()}))


async def test_start_timeout_kills_the_worker() -> None:
    worker = LiteLLMWorker(start_timeout=0.05)
    with pytest.raises(ProviderConnectionError, match=r"did not start within 0\.05 s"):
        await worker.start()
    child = worker._child
    assert child is not None
    await worker.aclose()
    assert child.process.returncode is not None
    with pytest.raises(ClosedError):
        await worker.start()


async def test_litellm_missing_in_the_worker(tmp_path: Path) -> None:
    (tmp_path / "litellm.py").write_text("raise ImportError(\"No module named 'litellm'\")\n")
    worker = LiteLLMWorker(env={"PYTHONPATH": str(tmp_path)})
    model = LiteLLMProcessModel(worker=worker)
    try:
        with pytest.raises(ProviderError, match=r"could not be imported.*pip install 'oturn\[llm\]'"):
            await collect(model, call("text"))
    finally:
        await worker.aclose()


_LOOP_END = r"""
import asyncio, json
from oturn.llm.process import shared_worker

async def main():
    worker = shared_worker()
    child = await worker._current()  # started, not waiting for LiteLLM's import
    return child.process

process = asyncio.run(main())
print(json.dumps({"pid": process.pid, "returncode": process.poll()}))
"""


def test_the_worker_ends_with_its_event_loop() -> None:
    """Nobody closed the shared worker: it is stopped when ``asyncio.run`` finalises async generators."""
    result = subprocess.run([sys.executable, "-c", _LOOP_END], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["returncode"] is not None  # reaped before asyncio.run returned
    assert not _alive(report["pid"])


_SERVER = r"""
import asyncio, sys
from oturn.testing.openai_server import OpenAIServer

async def main():
    async with OpenAIServer(text=sys.argv[1], piece=5) as server:
        print(server.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def test_on_trio() -> None:
    """The parent side is plain anyio: on trio too (the fake server, asyncio-only, runs in a process of its own)."""
    with subprocess.Popen(
        [sys.executable, "-c", _SERVER, TEXT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as server:
        assert server.stdin is not None
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()

        async def main() -> tuple[list[str | None], bool]:
            async with LiteLLMWorker() as worker:
                model = LiteLLMProcessModel(api_base=base_url, api_key=KEY, worker=worker)
                texts: list[str | None] = []

                async def one() -> None:
                    state, _ = await collect(model, call("text"))
                    texts.append(state.text)

                async with anyio.create_task_group() as group:
                    for _ in range(3):
                        group.start_soon(one)
                with anyio.move_on_after(0.05) as scope:
                    async for _batch in model.stream(call("slow")):
                        pass
                return texts, scope.cancelled_caught

        try:
            texts, cancelled = anyio.run(main, backend="trio")
        finally:
            server.stdin.close()  # the server exits when its stdin closes
    assert texts == [TEXT] * 3
    assert cancelled


# -- the event loop never stalls -------------------------------------------------------------

_STALL_PROBE = r"""
import asyncio, json, sys, time
import oturn
from oturn.testing.openai_server import OpenAIServer

async def main():
    gaps = []
    stop = asyncio.Event()

    async def ticker():
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.0005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with OpenAIServer() as server:
        agent = oturn.Agent("openai/text", api_base=server.base_url, api_key="x")
        async with agent.session() as session:
            task = asyncio.ensure_future(ticker())
            start = time.perf_counter()
            result = await session.run("hello")
            took = time.perf_counter() - start
            stop.set()
            await task
    print(json.dumps({"outcome": result.outcome, "text": result.text, "max_gap": max(gaps), "took": took,
                      "backend": type(agent.model).__name__, "litellm_here": "litellm" in sys.modules}))

asyncio.run(main())
"""


def test_first_call_of_a_fresh_process_does_not_stall_the_loop() -> None:
    """A fresh interpreter, the default ``Agent("openai/...")``: the worker imports LiteLLM while
    a ticker on this loop never waits long (the benchmark reports the real figure against the
    5 ms target; this bound only leaves room for a loaded machine: on a busy 2-core machine an
    idle loop alone sees gaps of tens of ms). LiteLLM is never imported in this process at all."""
    result = subprocess.run([sys.executable, "-c", _STALL_PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "completed"
    assert report["backend"] == "LiteLLMProcessModel"
    assert not report["litellm_here"]
    assert report["took"] > 0.5  # it did pay LiteLLM's import, elsewhere
    assert report["max_gap"] <= 0.060, report
