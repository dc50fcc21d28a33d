"""The LiteLLM model adapter: :class:`LiteLLMModel` streams a :class:`~oturn.agent.effects.CallModel`.

LiteLLM is imported lazily, once, in a worker thread (its import takes seconds and
must not stall the event loop); :func:`prewarm` does it ahead of the first call. Before
the import the adapter sets ``LITELLM_LOCAL_MODEL_COST_MAP`` and
``LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS`` (``os.environ.setdefault``: the import would
otherwise fetch them over the network); afterwards ``litellm.suppress_debug_info``.

Every call passes ``stream=True``, ``stream_options={"include_usage": True}``,
``max_retries=0`` (retrying is the pipeline's business) and an explicit ``timeout``.
Each LiteLLM chunk is turned into a plain dict with ``model_dump(exclude_none=True)``
(a few microseconds; LiteLLM itself spends ~1 ms per chunk) and normalised by
:func:`oturn.llm.normalize.normalize_chunk`; each chunk's deltas are yielded as one
batch. Failures are translated by :func:`oturn.llm.errors.translate_error`.

Deadlines: ``timeout`` bounds the whole call, ``idle_timeout`` the silence between two
chunks (a stream that stalls fails with :class:`~oturn.StreamStalled` instead of
hanging). Neither is a cancel scope around the ``yield``\\ s of the generator (that
would cancel the consumer's code, not the stream's): each wait for LiteLLM gets its own
scope, bounded by what is left of the deadline.

LiteLLM runs on asyncio only; so does this adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar, Final

import anyio
from msgspec.structs import replace

from oturn._exceptions import ProviderError, ProviderTimeout, StreamInterrupted, StreamStalled, UsageError
from oturn.agent.deltas import StreamDelta, StreamErrorDelta, TextDelta, UsageDelta
from oturn.agent.effects import CallModel
from oturn.agent.usage import Usage
from oturn.llm.errors import exception_chain, redact, translate_error
from oturn.llm.normalize import normalize_chunk

__all__ = ["LiteLLMModel", "is_litellm_loaded", "prewarm"]

DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_IDLE_TIMEOUT: Final = 30.0
_CLOSE_TIMEOUT: Final = 2.0

_RESERVED: Final = frozenset(
    {"model", "messages", "tools", "stream", "max_retries", "timeout", "api_base", "base_url", "api_key"}
)
"""Keys the adapter sets itself; ``params`` may not override them."""

_ENVIRONMENT: Final = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
}

_WARM_MODULES: Final = (
    "openai.resources",
    "openai.lib.streaming.chat",
    "litellm.litellm_core_utils.default_encoding",
    "litellm.proxy._types",
    "litellm.proxy.openai_files_endpoints.common_utils",
    "litellm._service_logger",
    "litellm.llms.openai_like.dynamic_config",
    "litellm.llms.litellm_proxy.chat",
    "litellm.types.litellm_core_utils.streaming_chunk_builder_utils",
)
"""Modules LiteLLM (1.106) imports lazily during its first streamed call: ~480 modules,
~0.7 s on the event loop. Importing them with LiteLLM, in the worker thread, brings the
first call down to ~0.06 s. Best effort: a name a LiteLLM version lacks is skipped."""

_litellm: ModuleType | None = None
_import_lock = threading.Lock()
_skip_mcp_handler = False
"""Whether calls with tools must pass ``_skip_mcp_handler=True`` (see :func:`_import_litellm`)."""


def _has_mcp_precheck() -> bool:
    """Whether this LiteLLM checks ``tools`` before it imports its MCP gateway (1.110 does)."""
    try:
        return importlib.util.find_spec("litellm.responses.mcp.tool_precheck") is not None
    except ImportError:
        return False


def _import_litellm() -> ModuleType:
    """Import and configure LiteLLM (in a worker thread); concurrent callers import it once."""
    global _litellm, _skip_mcp_handler
    with _import_lock:
        if _litellm is None:
            for name, value in _ENVIRONMENT.items():
                os.environ.setdefault(name, value)
            # The import allocates hundreds of thousands of objects; full garbage collections
            # triggered in this thread would stop the event loop (which needs the GIL) for
            # 50-150 ms each. Collect nothing while importing, then move what survived to the
            # permanent generation so that later collections do not scan it either.
            collecting = gc.isenabled()
            gc.disable()
            try:
                import litellm
            finally:
                if collecting:
                    gc.freeze()
                    gc.enable()

            litellm.suppress_debug_info = True
            # LiteLLM 1.x (seen in 1.106) imports its MCP gateway, which needs the optional
            # `mcp` package, for every completion that has `tools`: without `mcp` installed
            # each such call fails with "No module named 'mcp'". oturn's tools are plain
            # function tools, so the gateway is never wanted; its own private switch skips it.
            # Passed only when `mcp` is missing and LiteLLM lacks the tool precheck it grew
            # by 1.110 (which only enters the gateway for tools that name it); the canary
            # test in tests/llm/test_litellm_adapter.py checks both versions' behaviour.
            _skip_mcp_handler = importlib.util.find_spec("mcp") is None and not _has_mcp_precheck()
            gc.disable()
            try:
                for name in _WARM_MODULES:
                    with contextlib.suppress(Exception):
                        importlib.import_module(name)
                # LiteLLM builds many pydantic schemas lazily, on its first streamed response:
                # tens of milliseconds on the event loop. Stream one mocked response here, in
                # this worker thread (on an event loop of its own), so they are built already.
                with contextlib.suppress(Exception):
                    asyncio.run(_mock_stream(litellm))
            finally:
                if collecting:
                    gc.freeze()
                    gc.enable()
            _litellm = litellm
        return _litellm


async def _mock_stream(litellm: Any) -> None:
    response = await litellm.acompletion(
        model="openai/oturn-warm-up",
        messages=[{"role": "user", "content": "warm up"}],
        mock_response="ok",
        stream=True,
        stream_options={"include_usage": True},
        max_retries=0,
        timeout=5,
    )
    async for chunk in response:
        chunk.model_dump()


_last_loop: weakref.ReferenceType[asyncio.AbstractEventLoop] | None = None
_stale_clients: list[object] = []


def _forget_clients_of_other_loops(litellm: Any) -> None:
    """Drop LiteLLM's cached HTTP clients when calls come from a new event loop.

    LiteLLM keys its client cache by ``id(loop)``; a new loop can get the id of a closed
    one, and a client bound to the closed loop then hangs the call. Flushing the cache
    when the loop object changes avoids that (in the common one-loop program it never
    happens after the first call).
    """
    global _last_loop
    loop = asyncio.get_running_loop()
    previous = _last_loop() if _last_loop is not None else None
    if previous is loop:
        return
    if _last_loop is not None:
        cache = getattr(litellm, "in_memory_llm_clients_cache", None)
        flush = getattr(cache, "flush_cache", None)
        if callable(flush):
            with contextlib.suppress(Exception):
                # The clients belong to a closed loop and cannot be closed any more; keep
                # them referenced so that they are not collected (with a ResourceWarning each).
                _stale_clients.extend(getattr(cache, "cache_dict", {}).values())
                flush()
    _last_loop = weakref.ref(loop)


async def _load() -> ModuleType:
    module = _litellm
    if module is not None:
        return module
    return await anyio.to_thread.run_sync(_import_litellm)


async def prewarm() -> None:
    """Import LiteLLM now, off the event loop, so the first call does not wait seconds for it."""
    await _load()


def is_litellm_loaded() -> bool:
    """Whether this adapter has imported (and configured) LiteLLM yet."""
    return _litellm is not None


class _LiteLLMOptions:
    """The options of :class:`LiteLLMModel` and ``LiteLLMProcessModel``: checked and stored in one place."""

    __slots__ = ("_api_key", "api_base", "idle_timeout", "name", "params", "timeout")
    _repr_name: ClassVar[str]

    def __init__(
        self,
        name: str | None,
        *,
        api_base: str | None,
        api_key: str | None,
        timeout: float,
        idle_timeout: float | None,
        params: Mapping[str, Any] | None,
    ) -> None:
        if not timeout > 0:
            raise UsageError(f"timeout must be positive, got {timeout!r}")
        if idle_timeout is not None and not idle_timeout > 0:
            raise UsageError(f"idle_timeout must be positive, got {idle_timeout!r}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise UsageError(f"the model name is a LiteLLM model string like 'openai/gpt-4o-mini'; got {name!r}")
        params = dict(params or {})
        _check_params(params, "params")
        self.name = name
        """The model name an :class:`~oturn.Agent` built on this object calls (``None``: none given)."""
        self.api_base = api_base
        self._api_key = api_key
        self.timeout = float(timeout)
        self.idle_timeout = float(idle_timeout) if idle_timeout is not None else min(DEFAULT_IDLE_TIMEOUT, self.timeout)
        self.params: dict[str, Any] = params

    def __repr__(self) -> str:
        key = "None" if self._api_key is None else "'***'"
        return (
            f"{self._repr_name}({self.name!r}, api_base={self.api_base!r}, api_key={key}, timeout={self.timeout:g},"
            f" idle_timeout={self.idle_timeout:g}, params={sorted(self.params)})"
        )


class LiteLLMModel(_LiteLLMOptions):
    """A :class:`~oturn.agent.model.Model` that streams through ``litellm.acompletion``.

    - ``name`` (positional, optional): the model an :class:`~oturn.Agent` given this
      object calls, e.g. ``LiteLLMModel("openai/gpt-4o-mini", api_base=...)``; a
      :class:`~oturn.agent.effects.CallModel` names its own model either way.
    - ``api_base`` / ``api_key``: passed on every call (``None``: LiteLLM's defaults,
      e.g. ``OPENAI_API_KEY``). The key is never logged and ``repr`` masks it; provider
      messages that echo it are redacted in oturn's exceptions.
    - ``timeout``: the deadline of a whole call, in seconds (also given to LiteLLM as
      its ``timeout=``). Raise it for long generations.
    - ``idle_timeout``: the longest silence allowed between two chunks once the
      response has started (default ``min(30, timeout)``).
    - ``params``: extra keyword arguments for every call (``temperature``,
      ``extra_headers``, ...); a call's own ``params`` override them. The keys the
      adapter sets (``model``, ``messages``, ``tools``, ``stream``, ``max_retries``,
      ``timeout``, ``api_base``, ``base_url``, ``api_key``) are refused;
      ``stream_options`` is merged with ``include_usage``.
    """

    __slots__ = ()
    _repr_name: ClassVar[str] = "LiteLLMModel"

    def __init__(
        self,
        name: str | None = None,
        /,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        idle_timeout: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            name, api_base=api_base, api_key=api_key, timeout=timeout, idle_timeout=idle_timeout, params=params
        )

    @staticmethod
    async def prewarm() -> None:
        """Import LiteLLM now (see :func:`prewarm`)."""
        await prewarm()

    def completion_kwargs(self, call: CallModel) -> dict[str, Any]:
        """The keyword arguments :meth:`stream` gives ``litellm.acompletion`` for ``call``."""
        _check_params(call.params, "CallModel.params")
        kwargs: dict[str, Any] = {**self.params, **call.params}
        stream_options = dict(kwargs.pop("stream_options", None) or {})
        stream_options["include_usage"] = True
        kwargs.update(
            model=call.model,
            messages=call.messages,
            stream=True,
            stream_options=stream_options,
            max_retries=0,
            timeout=self.timeout,
        )
        if call.tools:
            kwargs["tools"] = call.tools
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        if self._api_key is not None:
            kwargs["api_key"] = self._api_key
        return kwargs

    async def stream(self, call: CallModel, /) -> AsyncGenerator[Sequence[StreamDelta], None]:
        """Stream ``call``: one batch of deltas per LiteLLM chunk (chunks with none are skipped).

        Raises a :class:`~oturn.ProviderError` subclass when the call fails, from the
        original exception.
        """
        litellm = await _load()
        _forget_clients_of_other_loops(litellm)
        kwargs = self.completion_kwargs(call)
        if call.tools and _skip_mcp_handler:
            kwargs["_skip_mcp_handler"] = True
        run = _Run(self, litellm, call)
        try:
            await run.open(kwargs)
            while True:
                batch = await run.next_batch()
                if batch is None:
                    return
                yield batch
        finally:
            await run.close()


def _check_params(params: Mapping[str, Any], where: str) -> None:
    reserved = sorted(_RESERVED.intersection(params))
    if reserved:
        raise UsageError(f"{where} may not set {', '.join(reserved)}: LiteLLMModel sets them itself")


class _Run:
    """The state of one streaming call (kept out of the generator so errors are translated in one place)."""

    __slots__ = ("call", "deadline", "litellm", "model", "parts", "response", "started")

    def __init__(self, model: LiteLLMModel, litellm: ModuleType, call: CallModel) -> None:
        self.model = model
        self.litellm = litellm
        self.call = call
        self.deadline = anyio.current_time() + model.timeout
        self.response: Any = None
        self.started = False
        self.parts: list[str] = []

    def _secrets(self) -> tuple[str | None, ...]:
        return (self.model._api_key,)

    def _translate(self, exc: Exception) -> ProviderError:
        return translate_error(exc, started=self.started, partial_text="".join(self.parts), secrets=self._secrets())

    async def open(self, kwargs: dict[str, Any]) -> None:
        left = self.deadline - anyio.current_time()
        try:
            with anyio.move_on_after(left) as scope:
                self.response = await self.litellm.acompletion(**kwargs)
        except Exception as exc:
            raise self._translate(exc) from exc
        if scope.cancelled_caught:
            raise ProviderTimeout(
                f"no response from {self.call.model!r} within the call's timeout of {self.model.timeout:g} s"
            )
        self.started = True

    async def next_batch(self) -> list[StreamDelta] | None:
        """The deltas of the next chunk that has any; ``None`` at the end of the stream."""
        response = self.response
        if response is None:  # ended already (see _ended_without_finish)
            return None
        while True:
            left = self.deadline - anyio.current_time()
            idle = self.model.idle_timeout
            wait = min(idle, left)
            try:
                with anyio.move_on_after(wait) as scope:
                    chunk = await response.__anext__()
            except StopAsyncIteration:
                return None
            except Exception as exc:
                if _ended_without_finish(exc):
                    # LiteLLM >= 1.110 fails a stream that ended cleanly without any
                    # finish_reason (Snowflake sends none). oturn's contract, as its own
                    # reader keeps it, is an ordinary end with finish_reason None: end
                    # the stream, with the usage LiteLLM held back.
                    self.response = None
                    usage = _held_usage(response)
                    return self._inspect(usage, None) if usage else None
                raise self._translate(exc) from exc
            if scope.cancelled_caught:
                text = "".join(self.parts)
                if wait < idle:
                    reason = f"the call's timeout of {self.model.timeout:g} s passed mid-stream"
                else:
                    reason = f"no chunk arrived within the idle timeout of {idle:g} s"
                raise StreamStalled(f"the model stream stalled: {reason}", partial_text=text)
            deltas = normalize_chunk(chunk.model_dump(exclude_none=True))
            if not deltas:
                continue
            return self._inspect(deltas, chunk)

    def _inspect(self, deltas: list[StreamDelta], chunk: Any) -> list[StreamDelta]:
        for position, delta in enumerate(deltas):
            if isinstance(delta, TextDelta):
                if delta.choice == 0:
                    self.parts.append(delta.text)
            elif isinstance(delta, UsageDelta):
                if delta.usage.cost is None:
                    cost = _call_cost(self.litellm, self.call.model, delta.usage, chunk)
                    if cost is not None:
                        deltas[position] = replace(delta, usage=replace(delta.usage, cost=cost))
            elif isinstance(delta, StreamErrorDelta):
                raise StreamInterrupted(
                    f"the provider sent an error mid-stream: {redact(delta.error.message, self._secrets())}",
                    status=delta.error.status,
                    partial_text="".join(self.parts),
                )
        return deltas

    async def close(self) -> None:
        response, self.response = self.response, None
        if response is None:
            return
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            # Closing a broken stream may fail again; the original error is what matters.
            with contextlib.suppress(Exception):
                await response.aclose()


_NO_FINISH: Final = "Stream ended before a finish_reason was received"


def _ended_without_finish(exc: BaseException) -> bool:
    """Whether ``exc`` is LiteLLM's error for a stream that ended cleanly without a finish_reason.

    LiteLLM raises it (wrapped: MidStreamFallbackError, APIConnectionError) while handling
    the ``StopAsyncIteration`` of the provider's stream, so both must be on the chain: a
    connection that broke raises its own error instead.
    """
    chain = exception_chain(exc)
    said = any(str(link).endswith(_NO_FINISH) for link in chain)
    return said and any(isinstance(link, StopAsyncIteration | StopIteration) for link in chain)


def _held_usage(response: Any) -> list[StreamDelta]:
    """The usage of the last usage chunk LiteLLM's stream wrapper recorded but never yielded."""
    chunks = getattr(response, "chunks", None)
    if not isinstance(chunks, list):
        return []
    for chunk in reversed(chunks):
        if getattr(chunk, "usage", None) is None:
            continue
        try:
            dumped = chunk.model_dump(exclude_none=True)
        except Exception:  # a chunk LiteLLM changed the shape of: no usage rather than a failure
            return []
        return [delta for delta in normalize_chunk({"usage": dumped["usage"]}) if isinstance(delta, UsageDelta)]
    return []


def _call_cost(litellm: ModuleType, model: str, usage: Usage, chunk: Any) -> float | None:
    """The call's cost where LiteLLM knows it; ``None`` (never an error) where it does not.

    LiteLLM 1.106 stamps ``usage.cost`` on the final chunk itself (normalize_chunk reads
    it); this covers versions that do not: the chunk's ``_hidden_params["response_cost"]``,
    else ``litellm.cost_per_token`` for the call's model.
    """
    hidden = getattr(chunk, "_hidden_params", None)
    if isinstance(hidden, Mapping):
        cost = hidden.get("response_cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost > 0:
            return float(cost)
    if usage.prompt_tokens <= 0 and usage.completion_tokens <= 0:
        return None
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
        )
        total = float(prompt_cost) + float(completion_cost)
    except Exception:  # unknown model, no pricing: the cost stays unknown
        return None
    return total if total > 0 else None
