"""Running tool calls: every failure becomes a result the model can read, never an exception.

:func:`run_tool` runs one call and returns a :class:`ToolOutcome`: an unknown tool,
invalid arguments, an exception raised by the tool and a timeout all end as outcomes
with an error ``status`` and a short ``content`` for the model (no traceback). Only
the cancellation of the caller propagates (and ``KeyboardInterrupt``/``SystemExit``).

:func:`run_tools` runs the tool calls of one model response concurrently, with a cap,
honouring :attr:`Tool.sequential <oturn.tools.Tool.sequential>`.

Nothing here reads a clock: ``ToolOutcome.duration`` is left for the caller to fill in.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import anyio
import anyio.to_thread
import msgspec
import pydantic_core
from pydantic import BaseModel

from oturn._exceptions import ToolArgumentsError, ToolError, ToolTimeoutError, UnknownToolError, UsageError
from oturn.tools.context import ToolContext
from oturn.tools.registry import ToolRegistry
from oturn.tools.tool import Tool

__all__ = [
    "DEFAULT_MAX_PARALLEL",
    "DEFAULT_TOOL_TIMEOUT",
    "ToolCall",
    "ToolOutcome",
    "ToolStatus",
    "render_result",
    "run_tool",
    "run_tools",
    "tool_batches",
]

DEFAULT_TOOL_TIMEOUT = 60.0
"""Seconds a tool may run when neither it nor the caller sets a timeout."""

DEFAULT_MAX_PARALLEL = 8
"""How many tool calls of one response :func:`run_tools` runs at once by default."""

ToolStatus = Literal["ok", "error", "invalid_arguments", "unknown_tool", "timeout", "cancelled", "denied"]
"""How a tool call ended. Only ``"ok"`` is a success."""


class ToolOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one tool call, as the model will read it.

    - ``content``: the text sent back to the model (the rendered result, or what went
      wrong and how to fix it).
    - ``status``: ``ok``, ``error`` (the tool raised), ``invalid_arguments``,
      ``unknown_tool``, ``timeout``; ``cancelled`` and ``denied`` are never produced by
      the runner — they are for callers that synthesise results for calls that did not
      run (see :meth:`cancelled`, :meth:`denied`).
    - ``error_type``: the qualified exception class name for failures (as in
      :class:`~oturn.ErrorInfo`), else ``None``.
    - ``duration``: seconds, filled in by a caller that has a clock (the runner reads none).
    """

    content: str
    status: ToolStatus = "ok"
    error_type: str | None = None
    duration: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the tool ran and returned normally."""
        return self.status == "ok"

    @property
    def is_error(self) -> bool:
        """Whether the model should read this as a failed call (Anthropic's ``is_error``)."""
        return self.status != "ok"

    @classmethod
    def cancelled(cls, message: str = "The tool call was cancelled before it finished.") -> ToolOutcome:
        """The synthesised result of a call that was cancelled or never started."""
        return cls(content=message, status="cancelled")

    @classmethod
    def denied(cls, message: str = "The user denied this tool call.") -> ToolOutcome:
        """The synthesised result of a call the user (or the approval policy) refused."""
        return cls(content=message, status="denied")


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call of a model response: its ``id``, the tool ``name`` and the JSON ``arguments``."""

    id: str
    name: str
    arguments: str = ""


def _error_type(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"  # as in ErrorInfo.type


def _failure(status: ToolStatus, exc: BaseException, content: str | None = None) -> ToolOutcome:
    return ToolOutcome(content=str(exc) if content is None else content, status=status, error_type=_error_type(exc))


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not break the turn
        return ""


def _describe(tool_name: str, exc: Exception) -> str:
    message = _safe_str(exc).strip()
    if isinstance(exc, ToolError):
        return f"Tool {tool_name!r} failed: {message or type(exc).__name__}"
    return f"Tool {tool_name!r} raised {type(exc).__name__}" + (f": {message}" if message else ".")


def render_result(value: Any) -> str:
    """The text a tool's return value is sent to the model as.

    ``str`` as is; ``None`` → ``""``; an enum member → its value, rendered; pydantic
    models, msgspec Structs, dataclasses, dicts, lists, tuples, numbers and booleans →
    JSON text (values JSON cannot hold become their ``str()``); anything else →
    ``str(value)``.
    """
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return str.__str__(value)  # a plain str, also for str subclasses
    if value is None:
        return ""
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, msgspec.Struct):
        return msgspec.json.encode(value, enc_hook=str).decode()
    if isinstance(value, dict | list | tuple | int | float) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        return pydantic_core.to_json(value, fallback=str).decode()
    return str(value)


async def _invoke(entry: Tool, args: BaseModel, ctx: ToolContext) -> Any:
    if entry.is_async:
        result = await entry.run(args, ctx)
    else:
        # abandon_on_cancel: a timeout or cancel returns at once; the thread itself cannot
        # be interrupted and keeps running until the function returns (its result is dropped).
        result = await anyio.to_thread.run_sync(entry.run, args, ctx, abandon_on_cancel=True)
    if inspect.iscoroutine(result):  # a plain function that returned a coroutine (trio refuses these itself)
        result.close()
        raise TypeError("the tool is a plain function that returned a coroutine; declare it with async def")
    return result


async def run_tool(
    registry: ToolRegistry,
    name: str,
    arguments_json: str,
    ctx: ToolContext,
    *,
    default_timeout: float | None = DEFAULT_TOOL_TIMEOUT,
) -> ToolOutcome:
    """Run the tool ``name`` with the model's JSON arguments and return its outcome.

    Never raises for a failure of the call: an unknown tool (the content lists the
    available ones), invalid arguments (what to fix), an exception from the tool (its
    type and message, no traceback; a :class:`~oturn.ToolError` raised on purpose gives
    its message as is) and a timeout each give an outcome with an error ``status``.

    The timeout is the tool's own ``timeout``, else ``default_timeout`` (``None``: no
    limit). A sync tool runs in a worker thread; on timeout or cancellation the call
    returns at once but **the thread keeps running** until the function returns (a
    function whose thread had not started yet never runs).

    Cancellation of the caller is never swallowed: it propagates out of ``run_tool``.
    """
    entry = registry.get(name)
    if entry is None:
        return _failure("unknown_tool", UnknownToolError(name, registry.names))
    try:
        args = entry.parse_arguments(arguments_json)
    except ToolArgumentsError as exc:
        return _failure("invalid_arguments", exc)
    timeout = entry.timeout if entry.timeout is not None else default_timeout
    with anyio.move_on_after(timeout):
        try:
            return ToolOutcome(content=render_result(await _invoke(entry, args, ctx)))
        except ToolArgumentsError as exc:  # the tool's own checks of its arguments
            return _failure("invalid_arguments", exc)
        except Exception as exc:
            return _failure("error", exc, _describe(entry.name, exc))
    # Only this scope's own deadline gets here: an outer cancellation propagates through it.
    return _failure("timeout", ToolTimeoutError(entry.name, timeout if timeout is not None else float("inf")))


def tool_batches(registry: ToolRegistry, names: Sequence[str]) -> list[tuple[int, ...]]:
    """Group the calls of one response (given by tool name) into batches, by index.

    The calls of a batch may run concurrently; batches run one after another, in order.
    A **sequential** tool's call is a barrier: it is a batch of its own, so it starts
    after every call before it has finished, and the calls after it start once it has
    finished. Runs of other calls (unknown tools included) between barriers form one
    batch. Pure: the agent's reducer can use it to plan its ``RunTool`` effects.
    """
    batches: list[tuple[int, ...]] = []
    current: list[int] = []
    for index, name in enumerate(names):
        entry = registry.get(name)
        if entry is not None and entry.sequential:
            if current:
                batches.append(tuple(current))
                current = []
            batches.append((index,))
        else:
            current.append(index)
    if current:
        batches.append(tuple(current))
    return batches


def _default_context(call: ToolCall) -> ToolContext:
    return ToolContext(tool_call_id=call.id, tool_name=call.name)


async def run_tools(
    registry: ToolRegistry,
    calls: Sequence[ToolCall],
    *,
    context: Callable[[ToolCall], ToolContext] = _default_context,
    default_timeout: float | None = DEFAULT_TOOL_TIMEOUT,
    max_parallel: int = DEFAULT_MAX_PARALLEL,
) -> list[ToolOutcome]:
    """Run the tool calls of one model response; return their outcomes in the calls' order.

    Calls run concurrently, at most ``max_parallel`` at a time, in the batches of
    :func:`tool_batches`: a ``sequential`` tool runs alone, after everything before it
    and before everything after it. ``context(call)`` builds each call's
    :class:`~oturn.tools.ToolContext` (by default one with no progress sink and no
    user). Like :func:`run_tool`, failures are outcomes; cancellation of the caller
    cancels the running calls and propagates.
    """
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise UsageError(f"max_parallel must be a positive int, not {max_parallel!r}")
    outcomes: list[ToolOutcome | None] = [None] * len(calls)
    limiter = anyio.CapacityLimiter(max_parallel)
    run = functools.partial(run_tool, registry, default_timeout=default_timeout)

    async def one(index: int) -> None:
        call = calls[index]
        async with limiter:
            outcomes[index] = await run(call.name, call.arguments, context(call))

    for batch in tool_batches(registry, [call.name for call in calls]):
        if len(batch) == 1:
            await one(batch[0])
            continue
        async with anyio.create_task_group() as group:
            for index in batch:
                group.start_soon(one, index)
    return cast(list[ToolOutcome], outcomes)  # every slot is filled once no exception escaped
