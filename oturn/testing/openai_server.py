"""An in-process, OpenAI-compatible chat-completions server for end-to-end tests.

``async with OpenAIServer() as server:`` listens on ``127.0.0.1`` (a free port) and
serves ``POST /v1/chat/completions`` with ``stream: true`` as server-sent events, the
way OpenAI does. Point LiteLLM (or any OpenAI client) at ``server.base_url`` and pick
the behaviour with the model name: ``model="openai/<scenario>"`` reaches the server as
``<scenario>``.

Built-in scenarios:

==========================  =============================================================
``text``                    ``text`` (constructor option) in small deltas, finish ``stop``
``usage``                   like ``text``, always with a detailed usage chunk
``tool_calls``              one tool call whose arguments arrive in many fragments
``parallel_tool_calls``     two tool calls whose fragments interleave (index 0 and 1)
``rate_limit``              HTTP 429 with ``retry-after: 2``
``server_error``            HTTP 500
``slow``                    the first delta, then waits for :attr:`gate` before the rest
``stall``                   a few deltas, then nothing more (until the server closes)
``drop``                    a few deltas, then the connection is closed abruptly
``error_chunk``             a few deltas, then an ``event: error`` frame and the end
``replay:<name>``           the bytes of ``<recordings>/<name>.sse``, verbatim
==========================  =============================================================

Custom behaviour: :meth:`OpenAIServer.add_script` registers a list of steps (chunks,
raw bytes, named events, pauses, a stall, a drop, ``[DONE]``, or an HTTP error) under a
scenario name; :meth:`OpenAIServer.add_handler` registers an arbitrary aiohttp handler.
:attr:`OpenAIServer.requests` keeps every JSON body received, in order.

aiohttp is a development dependency (LiteLLM pulls it in); it is imported when the
server starts, never by ``import oturn.testing``. The server runs on asyncio only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import anyio

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "DEFAULT_TEXT",
    "DONE",
    "Drop",
    "HTTPError",
    "OpenAIServer",
    "Pause",
    "SECOND_TOOL_ARGUMENTS",
    "SSEvent",
    "ScriptHandler",
    "ScriptStep",
    "Sleep",
    "Stall",
    "TOOL_ARGUMENTS",
    "make_chunk",
]

DEFAULT_TEXT: Final = "Hello! This reply arrives in several small deltas from the fake server."


@dataclass(frozen=True, slots=True)
class SSEvent:
    """A named SSE frame: ``event: <event>`` then ``data: <data>`` (a mapping is sent as JSON)."""

    event: str
    data: Mapping[str, Any] | str


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait for ``event`` (an ``anyio.Event`` the test sets; :attr:`OpenAIServer.gate` by default) before going on."""

    event: anyio.Event | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Sleep ``seconds`` of real time before the next step (prefer :class:`Pause`)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Stall:
    """Send nothing more and keep the connection open until the server closes."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection abruptly (no end of the chunked body, no ``[DONE]``)."""


@dataclass(frozen=True, slots=True)
class HTTPError:
    """Answer with a plain HTTP error instead of a stream (must be a script's only step)."""

    status: int
    body: Mapping[str, Any] | str = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


class _Done:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DONE"


DONE: Final = _Done()
"""The ``data: [DONE]`` marker."""

ScriptStep: TypeAlias = Mapping[str, Any] | bytes | str | SSEvent | Pause | Sleep | Stall | Drop | HTTPError | _Done
"""One step of a scripted response: a chunk (a mapping, sent as ``data: <json>``), raw
bytes or text (sent verbatim), a named event, a pause, a sleep, a stall, a drop,
:data:`DONE`, or an :class:`HTTPError`."""

ScriptHandler: TypeAlias = "Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]"
"""A custom handler: gets the request and its parsed JSON body, returns the response."""


def make_chunk(
    model: str,
    *,
    delta: Mapping[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: Mapping[str, Any] | None = None,
    index: int = 0,
    choices: Sequence[Mapping[str, Any]] | None = None,
    id: str = "chatcmpl-fake",
    created: int = 1_700_000_000,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` payload.

    ``choices`` overrides the single choice built from ``delta``/``finish_reason``/``index``;
    pass ``choices=[]`` for a usage-only chunk.
    """
    if choices is None:
        choices = [{"index": index, "delta": dict(delta or {}), "logprobs": None, "finish_reason": finish_reason}]
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [dict(choice) for choice in choices],
    }
    if usage is not None:
        chunk["usage"] = dict(usage)
    return chunk


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class OpenAIServer:
    """A fake OpenAI-compatible server on ``127.0.0.1`` (see the module docstring).

    ``text`` is what the text-like scenarios say, cut into ``piece`` characters per
    delta; ``recordings`` is the directory ``replay:<name>`` reads ``<name>.sse`` from.
    """

    def __init__(
        self,
        *,
        text: str = DEFAULT_TEXT,
        piece: int = 6,
        recordings: str | Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if piece < 1:
            raise ValueError("piece must be at least 1")
        self.text = text
        self.piece = piece
        self.recordings = Path(recordings) if recordings is not None else None
        self.host = host
        self.requests: list[dict[str, Any]] = []
        """Every JSON body received, in order."""
        self.request_headers: list[dict[str, str]] = []
        """The headers of every request received (same order as :attr:`requests`)."""
        self._scripts: dict[str, Sequence[ScriptStep]] = {}
        self._handlers: dict[str, ScriptHandler] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._gate: anyio.Event | None = None
        self._closing: anyio.Event | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> OpenAIServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind a free port and start serving."""
        from aiohttp import web

        if self._runner is not None:
            raise RuntimeError("the server is already running")
        self._gate = anyio.Event()
        self._closing = anyio.Event()
        app = web.Application()
        app[_server_key()] = self
        app.router.add_post("/v1/chat/completions", _handle)
        app.router.add_post("/chat/completions", _handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(site)

    async def close(self) -> None:
        """Stop serving; stalled responses are released and connections closed."""
        runner, self._runner = self._runner, None
        if self._closing is not None:
            self._closing.set()
        if runner is not None:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

    # -- addresses ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not running (use `async with OpenAIServer() as server:`)")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``api_base`` to give LiteLLM or an OpenAI client."""
        return f"{self.url}/v1"

    @property
    def gate(self) -> anyio.Event:
        """The event the ``slow`` scenario (and :class:`Pause` steps) wait for; set it to go on."""
        if self._gate is None:
            raise RuntimeError("the server is not running")
        return self._gate

    def reset_gate(self) -> anyio.Event:
        """Replace :attr:`gate` with a fresh, unset event (for the next ``slow`` request) and return it."""
        if self._gate is None:
            raise RuntimeError("the server is not running")
        self._gate = anyio.Event()
        return self._gate

    # -- scenarios ----------------------------------------------------------------------

    def add_script(self, name: str, steps: Sequence[ScriptStep]) -> None:
        """Answer requests for model ``name`` with ``steps`` (see :data:`ScriptStep`)."""
        steps = list(steps)
        if any(isinstance(step, HTTPError) for step in steps) and len(steps) != 1:
            raise ValueError("an HTTPError step must be the only step of its script")
        self._scripts[name] = steps
        self._handlers.pop(name, None)

    def add_handler(self, name: str, handler: ScriptHandler) -> None:
        """Answer requests for model ``name`` with ``handler(request, body)``."""
        self._handlers[name] = handler
        self._scripts.pop(name, None)

    def script_for(self, scenario: str, body: Mapping[str, Any]) -> Sequence[ScriptStep]:
        """The steps a built-in or registered scenario sends for ``body`` (a request)."""
        if scenario in self._scripts:
            return self._scripts[scenario]
        if scenario.startswith("replay:"):
            return [self._recording(scenario.removeprefix("replay:"))]
        builder = _BUILTINS.get(scenario)
        if builder is None:
            return [
                HTTPError(
                    404,
                    _error_body(
                        f"The model `{scenario}` does not exist (unknown fake scenario)",
                        "invalid_request_error",
                        "model_not_found",
                    ),
                )
            ]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return builder(self, scenario, include_usage)

    def _recording(self, name: str) -> ScriptStep:
        if self.recordings is None:
            return HTTPError(
                404, _error_body("no recordings directory was given to OpenAIServer", "invalid_request_error", None)
            )
        path = (self.recordings / f"{name}.sse").resolve()
        plain = name and "/" not in name and "\\" not in name and not name.startswith(".")
        if not plain or path.parent != self.recordings.resolve() or not path.is_file():
            return HTTPError(404, _error_body(f"no recording named {name!r}", "invalid_request_error", None))
        return path.read_bytes()

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None and self._runner is not None else "not running"
        return f"<OpenAIServer {where} requests={len(self.requests)}>"

    # -- built-in scripts ---------------------------------------------------------------

    def _text_deltas(self, model: str) -> list[dict[str, Any]]:
        chunks = [make_chunk(model, delta={"role": "assistant", "content": ""})]
        chunks += [make_chunk(model, delta={"content": part}) for part in _split(self.text, self.piece)]
        return chunks

    def _usage(self, completion_tokens: int, *, detailed: bool = False) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": 11,
            "completion_tokens": completion_tokens,
            "total_tokens": 11 + completion_tokens,
        }
        if detailed:
            usage["prompt_tokens_details"] = {"cached_tokens": 3, "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": 2, "audio_tokens": 0}
        return usage

    def _ending(
        self, model: str, finish: str, include_usage: bool, completion_tokens: int, *, detailed: bool = False
    ) -> list[ScriptStep]:
        steps: list[ScriptStep] = [make_chunk(model, finish_reason=finish)]
        if include_usage or detailed:
            steps.append(make_chunk(model, choices=[], usage=self._usage(completion_tokens, detailed=detailed)))
        steps.append(DONE)
        return steps


def _text(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    deltas = server._text_deltas(model)
    return [*deltas, *server._ending(model, "stop", include_usage, len(deltas) - 1)]


def _usage_scenario(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    deltas = server._text_deltas(model)
    return [*deltas, *server._ending(model, "stop", include_usage, len(deltas) - 1, detailed=True)]


TOOL_ARGUMENTS: Final = '{"city": "Paris", "units": "celsius", "days": [1, 2, 3]}'
SECOND_TOOL_ARGUMENTS: Final = '{"ticker": "ACME", "exchange": "NASDAQ"}'


def _tool_start(index: int, call_id: str, name: str) -> dict[str, Any]:
    return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}


def _tool_args(index: int, fragment: str) -> dict[str, Any]:
    return {"index": index, "function": {"arguments": fragment}}


def _tool_calls(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    steps: list[ScriptStep] = [
        make_chunk(
            model,
            delta={"role": "assistant", "content": None, "tool_calls": [_tool_start(0, "call_fake_1", "get_weather")]},
        )
    ]
    fragments = _split(TOOL_ARGUMENTS, 3)
    steps += [make_chunk(model, delta={"tool_calls": [_tool_args(0, frag)]}) for frag in fragments]
    return [*steps, *server._ending(model, "tool_calls", include_usage, len(fragments))]


def _parallel_tool_calls(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    steps: list[ScriptStep] = [
        make_chunk(
            model,
            delta={"role": "assistant", "content": None, "tool_calls": [_tool_start(0, "call_fake_a", "get_weather")]},
        ),
        make_chunk(model, delta={"tool_calls": [_tool_start(1, "call_fake_b", "get_stock_price")]}),
    ]
    first, second = _split(TOOL_ARGUMENTS, 4), _split(SECOND_TOOL_ARGUMENTS, 4)
    for i in range(max(len(first), len(second))):
        if i < len(first):
            steps.append(make_chunk(model, delta={"tool_calls": [_tool_args(0, first[i])]}))
        if i < len(second):
            steps.append(make_chunk(model, delta={"tool_calls": [_tool_args(1, second[i])]}))
    return [*steps, *server._ending(model, "tool_calls", include_usage, len(first) + len(second))]


def _rate_limit(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    body = _error_body("Rate limit reached for requests (fake server)", "requests", "rate_limit_exceeded")
    return [HTTPError(429, body, {"retry-after": "2"})]


def _server_error(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    return [
        HTTPError(
            500, _error_body("The server had an error while processing your request (fake)", "server_error", None)
        )
    ]


def _slow(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    first, *rest = _text(server, model, include_usage)
    second, *tail = rest
    return [first, second, Pause(), *tail]


def _stall(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    return [*server._text_deltas(model)[:3], Stall()]


def _drop(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    return [*server._text_deltas(model)[:3], Drop()]


def _error_chunk(server: OpenAIServer, model: str, include_usage: bool) -> list[ScriptStep]:
    error = _error_body("The model produced invalid output (fake)", "server_error", "invalid_output")
    error["error"]["status_code"] = 500
    return [*server._text_deltas(model)[:3], SSEvent("error", error)]


_BUILTINS: Final[dict[str, Callable[[OpenAIServer, str, bool], list[ScriptStep]]]] = {
    "text": _text,
    "usage": _usage_scenario,
    "tool_calls": _tool_calls,
    "parallel_tool_calls": _parallel_tool_calls,
    "rate_limit": _rate_limit,
    "server_error": _server_error,
    "slow": _slow,
    "stall": _stall,
    "drop": _drop,
    "error_chunk": _error_chunk,
}


# -- aiohttp plumbing ------------------------------------------------------------------------


@functools.cache
def _server_key() -> web.AppKey[OpenAIServer]:
    """The ``web.AppKey`` holding the server (created on first use: aiohttp is imported lazily)."""
    from aiohttp import web

    return web.AppKey("oturn_openai_server", OpenAIServer)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    for sock in sockets:
        port: int = sock.getsockname()[1]
        return port
    raise RuntimeError("the fake server did not bind a socket")


async def _handle(request: web.Request) -> web.StreamResponse:
    from aiohttp import web

    server = request.app[_server_key()]
    try:
        body = await request.json()
    except ValueError:
        return web.json_response(_error_body("the body is not JSON", "invalid_request_error", None), status=400)
    if not isinstance(body, dict):
        return web.json_response(
            _error_body("the body is not a JSON object", "invalid_request_error", None), status=400
        )
    server.requests.append(body)
    server.request_headers.append(dict(request.headers))
    scenario = str(body.get("model", ""))
    handler = server._handlers.get(scenario)
    if handler is not None:
        return await handler(request, body)
    steps = server.script_for(scenario, body)
    if len(steps) == 1 and isinstance(steps[0], HTTPError):
        error = steps[0]
        if isinstance(error.body, str):
            return web.Response(status=error.status, text=error.body, headers=dict(error.headers))
        return web.json_response(dict(error.body), status=error.status, headers=dict(error.headers))
    if not body.get("stream"):
        return web.json_response(
            _error_body("the fake server only streams (send stream: true)", "invalid_request_error", None), status=400
        )
    return await _stream(server, request, steps)


async def _stream(server: OpenAIServer, request: web.Request, steps: Sequence[ScriptStep]) -> web.StreamResponse:
    from aiohttp import web

    response = web.StreamResponse(
        status=200, headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    for step in steps:
        if isinstance(step, Mapping):
            await response.write(b"data: " + json.dumps(step, ensure_ascii=False).encode() + b"\n\n")
        elif isinstance(step, bytes):
            await response.write(step)
        elif isinstance(step, str):
            await response.write(step.encode())
        elif isinstance(step, _Done):
            await response.write(b"data: [DONE]\n\n")
        elif isinstance(step, SSEvent):
            data = step.data if isinstance(step.data, str) else json.dumps(step.data, ensure_ascii=False)
            await response.write(f"event: {step.event}\ndata: {data}\n\n".encode())
        elif isinstance(step, Pause):
            await (step.event or server.gate).wait()
        elif isinstance(step, Sleep):
            await anyio.sleep(step.seconds)
        elif isinstance(step, Stall):
            assert server._closing is not None
            await server._closing.wait()
            _drop_connection(request)
            return response
        elif isinstance(step, Drop):
            _drop_connection(request)
            return response
        else:  # pragma: no cover - HTTPError mid-script is rejected by add_script
            raise TypeError(f"unexpected script step {step!r}")
    await response.write_eof()
    return response


def _drop_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes what was written, then closes: the chunked body never ends
