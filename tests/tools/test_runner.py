"""run_tool / run_tools: failures become outcomes, timeouts, threads, cancellation, parallelism.

Async tests run on asyncio and trio (``pytest.mark.anyio``; the first test checks the
backend really changes). Timeouts are tiny and hit tools that wait on events that never
fire; nothing sleeps. Tests that could deadlock when broken carry a ``fail_after`` guard.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Awaitable, Mapping
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest
import sniffio
from pydantic import BaseModel

from oturn import ToolArgumentsError, ToolError, UsageError
from oturn.tools import (
    NoArguments,
    Tool,
    ToolCall,
    ToolContext,
    ToolOutcome,
    ToolRegistry,
    render_result,
    run_tool,
    run_tools,
    tool,
    tool_batches,
)

pytestmark = pytest.mark.anyio

SAFETY = 5.0  # seconds; only reached when a test is broken (a deadlock), never on success


def context(call_id: str = "call-1") -> ToolContext:
    return ToolContext(tool_call_id=call_id, tool_name="t", session="s1")


@tool
async def echo(text: str) -> str:
    """Echo."""
    return text


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


@tool
def fail(message: str = "boom") -> None:
    """Always fails."""
    raise ValueError(message)


REGISTRY = ToolRegistry([echo, add, fail])


async def test_tests_here_run_on_the_backend_they_name(anyio_backend: str) -> None:
    assert sniffio.current_async_library() == anyio_backend


# --------------------------------------------------------------------------- results


async def test_async_tool_result_becomes_the_content() -> None:
    outcome = await run_tool(REGISTRY, "echo", '{"text": "hi"}', context())
    assert outcome == ToolOutcome(content="hi", status="ok")
    assert outcome.ok
    assert not outcome.is_error
    assert outcome.duration is None  # the runner reads no clock


async def test_sync_tool_runs_in_a_worker_thread() -> None:
    threads: list[int] = []

    @tool
    def where() -> str:
        threads.append(threading.get_ident())
        return "done"

    outcome = await run_tool(ToolRegistry([where]), "where", "", context())
    assert outcome.content == "done"

    assert len(threads) == 1
    assert threads[0] != threading.get_ident()


async def test_sync_tool_returns_json_for_numbers() -> None:
    assert await run_tool(REGISTRY, "add", '{"a": 2, "b": 3}', context()) == ToolOutcome(content="5")


async def test_tool_receives_the_context_it_was_given() -> None:
    seen: list[ToolContext] = []

    @tool
    async def look(ctx: ToolContext) -> str:
        seen.append(ctx)
        return ctx.tool_call_id

    ctx = context("abc")

    assert (await run_tool(ToolRegistry([look]), "look", "{}", ctx)).content == "abc"

    assert seen == [ctx]


async def test_tool_progress_reaches_the_sink_in_order() -> None:
    chunks: list[str] = []

    async def sink(text: str) -> None:
        chunks.append(text)

    @tool
    async def download(url: str, ctx: ToolContext) -> str:
        await ctx.progress("10%")
        await ctx.progress("100%")
        return url

    ctx = ToolContext(tool_call_id="c", progress=sink)
    outcome = await run_tool(ToolRegistry([download]), "download", '{"url": "u"}', ctx)
    assert outcome.content == "u"

    assert chunks == ["10%", "100%"]


async def test_sync_tool_reports_progress_from_its_thread() -> None:
    chunks: list[str] = []

    async def sink(text: str) -> None:
        chunks.append(text)

    @tool
    def crunch(ctx: ToolContext) -> str:
        anyio.from_thread.run(ctx.progress, "half way")
        return "crunched"

    ctx = ToolContext(tool_call_id="c", progress=sink)
    assert (await run_tool(ToolRegistry([crunch]), "crunch", "", ctx)).content == "crunched"

    assert chunks == ["half way"]


async def test_tool_choice_is_answered_through_the_asker() -> None:
    asked: list[tuple[str, dict[str, str]]] = []

    async def ask(prompt: str, options: Mapping[str, str]) -> str:
        asked.append((prompt, dict(options)))
        return "overwrite"

    @tool
    async def save(path: str, ctx: ToolContext) -> str:
        choice = await ctx.choose(f"{path} exists", {"overwrite": "Overwrite it", "skip": "Keep the old one"})
        return f"{choice} {path}"

    ctx = ToolContext(tool_call_id="c", choose=ask)
    outcome = await run_tool(ToolRegistry([save]), "save", '{"path": "a.txt"}', ctx)
    assert outcome.content == "overwrite a.txt"

    assert asked == [("a.txt exists", {"overwrite": "Overwrite it", "skip": "Keep the old one"})]


async def test_class_form_tools_run_sync_and_async() -> None:
    class Upper(Tool):
        class Args(BaseModel):
            text: str

        async def run(self, args: Args, ctx: ToolContext) -> str:
            return args.text.upper()

    class Threads(Tool):
        def run(self, args: NoArguments, ctx: ToolContext) -> bool:
            return threading.current_thread() is not threading.main_thread()

    registry = ToolRegistry([Upper, Threads])

    assert (await run_tool(registry, "upper", '{"text": "a"}', context())).content == "A"
    assert (await run_tool(registry, "threads", "", context())).content == "true"


async def test_plain_function_returning_a_coroutine_gives_an_error_outcome() -> None:
    async def later(x: int) -> int:
        return x * 2

    def deferred(x: int) -> Awaitable[int]:
        return later(x)

    outcome = await run_tool(ToolRegistry([tool(deferred)]), "deferred", '{"x": 4}', context())
    assert outcome.status == "error"
    assert outcome.content.startswith("Tool 'deferred' raised TypeError: ")


# --------------------------------------------------------------------------- failures are outcomes


async def test_unknown_tool_outcome_lists_the_available_tools() -> None:
    outcome = await run_tool(REGISTRY, "nope", "{}", context())
    assert outcome == ToolOutcome(
        content="Unknown tool 'nope'. Available tools: echo, add, fail.",
        status="unknown_tool",
        error_type="oturn._exceptions.UnknownToolError",
    )
    assert outcome.is_error


async def test_unknown_tool_in_an_empty_registry_says_there_are_none() -> None:
    outcome = await run_tool(ToolRegistry(), "x", "", context())
    assert outcome.content == "Unknown tool 'x'. Available tools: none."


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1', "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('"text"', "expected a JSON object, got a string"),
        ('{"a": 1}', "- b: missing (required, integer)"),
        ('{"a": 1, "b": 2, "c": 3}', "- c: unexpected argument (accepted: a, b)"),
        (
            '{"a": 1, "b": "two"}',
            '- b: Input should be a valid integer, unable to parse string as an integer (got "two")',
        ),
        ("", "- a: missing"),
    ],
    ids=["invalid-json", "array", "string", "missing", "extra", "mistyped", "empty"],
)
async def test_bad_arguments_give_an_invalid_arguments_outcome(arguments: str, expected: str) -> None:
    called: list[int] = []

    @tool
    def add(a: int, b: int) -> int:
        called.append(1)
        return a + b

    outcome = await run_tool(ToolRegistry([add]), "add", arguments, context())
    assert outcome.status == "invalid_arguments"
    assert outcome.error_type == "oturn._exceptions.ToolArgumentsError"
    assert outcome.content.startswith("Invalid arguments for tool 'add'")
    assert expected in outcome.content

    assert called == []  # validated before the call


async def test_tool_exception_gives_type_and_message_without_traceback() -> None:
    outcome = await run_tool(REGISTRY, "fail", '{"message": "disk full"}', context())
    assert outcome == ToolOutcome(
        content="Tool 'fail' raised ValueError: disk full", status="error", error_type="builtins.ValueError"
    )
    assert "Traceback" not in outcome.content


async def test_exception_without_message_or_with_a_broken_str_still_gives_an_outcome() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    @tool
    async def silent() -> None:
        raise KeyError

    @tool
    async def broken() -> None:
        raise Broken

    registry = ToolRegistry([silent, broken])

    assert (await run_tool(registry, "silent", "", context())).content == "Tool 'silent' raised KeyError."
    outcome = await run_tool(registry, "broken", "", context())
    assert outcome.status == "error"
    assert outcome.content == "Tool 'broken' raised Broken."


async def test_tool_error_raised_on_purpose_reads_as_its_message() -> None:
    @tool
    async def read(path: str) -> str:
        raise ToolError(f"{path} does not exist; list the directory first")

    outcome = await run_tool(ToolRegistry([read]), "read", '{"path": "x"}', context())
    assert outcome.content == "Tool 'read' failed: x does not exist; list the directory first"
    assert outcome.status == "error"
    assert outcome.error_type == "oturn._exceptions.ToolError"


async def test_tool_rejecting_its_own_arguments_gives_invalid_arguments() -> None:
    @tool
    async def divide(a: int, b: int) -> float:
        if b == 0:
            raise ToolArgumentsError("b must not be 0")
        return a / b

    outcome = await run_tool(ToolRegistry([divide]), "divide", '{"a": 1, "b": 0}', context())
    assert outcome == ToolOutcome(
        content="b must not be 0", status="invalid_arguments", error_type="oturn._exceptions.ToolArgumentsError"
    )


async def test_an_unrenderable_result_gives_an_error_outcome() -> None:
    class Opaque:
        def __str__(self) -> str:
            raise RuntimeError("cannot render")

    @tool
    async def weird() -> object:
        return Opaque()

    outcome = await run_tool(ToolRegistry([weird]), "weird", "", context())
    assert outcome.status == "error"
    assert outcome.content == "Tool 'weird' raised RuntimeError: cannot render"


# --------------------------------------------------------------------------- timeouts


async def test_tool_timeout_gives_a_timeout_outcome() -> None:
    @tool(timeout=0.001)
    async def hang() -> None:
        await anyio.Event().wait()

    outcome = await run_tool(ToolRegistry([hang]), "hang", "", context(), default_timeout=None)
    assert outcome == ToolOutcome(
        content="Tool 'hang' timed out after 0.001 seconds.",
        status="timeout",
        error_type="oturn._exceptions.ToolTimeoutError",
    )


async def test_default_timeout_applies_to_tools_without_their_own() -> None:
    @tool
    async def hang() -> None:
        await anyio.Event().wait()

    outcome = await run_tool(ToolRegistry([hang]), "hang", "", context(), default_timeout=1e-6)
    assert outcome.status == "timeout"
    assert outcome.content == "Tool 'hang' timed out after 1e-06 seconds."


async def test_tool_own_timeout_takes_precedence_over_the_default() -> None:
    @tool(timeout=60.0)
    async def patient() -> str:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()  # a 1e-9 s default would have expired here
        return "finished"

    impatient = tool(patient.fn, name="impatient")  # the same function without a timeout of its own
    registry = ToolRegistry([patient, impatient])

    outcome = await run_tool(registry, "patient", "", context(), default_timeout=1e-9)
    assert outcome.content == "finished"
    assert (await run_tool(registry, "impatient", "", context(), default_timeout=1e-9)).status == "timeout"


async def test_sync_tool_timeout_gives_a_timeout_outcome_without_waiting_for_the_thread() -> None:
    release = threading.Event()

    @tool(timeout=0.001)
    def blocking() -> str:
        release.wait()
        return "late"

    try:
        outcome = await run_tool(ToolRegistry([blocking]), "blocking", "", context())
        assert outcome.status == "timeout"
    finally:
        release.set()  # the abandoned thread (if it started at all) may end now


# --------------------------------------------------------------------------- cancellation


async def test_cancelling_the_caller_propagates_out_of_an_async_tool() -> None:
    started = anyio.Event()
    results: list[ToolOutcome] = []
    cancelled: list[BaseException] = []

    @tool(timeout=60.0)  # its own timeout scope must not swallow the outer cancel
    async def hang() -> None:
        started.set()
        await anyio.Event().wait()

    async def caller() -> None:
        try:
            results.append(await run_tool(ToolRegistry([hang]), "hang", "", context()))
        except anyio.get_cancelled_exc_class() as exc:
            cancelled.append(exc)
            raise

    with anyio.fail_after(SAFETY):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(caller)
                await started.wait()
                scope.cancel()
        assert scope.cancelled_caught

    assert results == []
    assert len(cancelled) == 1


async def test_cancelling_the_caller_propagates_out_of_a_sync_tool_promptly() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()
    results: list[ToolOutcome] = []

    @tool
    def blocking() -> None:
        started.set()
        release.wait()
        finished.set()

    with anyio.fail_after(SAFETY):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:

                async def caller() -> None:
                    results.append(await run_tool(ToolRegistry([blocking]), "blocking", "", context()))

                group.start_soon(caller)
                await anyio.to_thread.run_sync(started.wait, SAFETY)
                scope.cancel()
        assert scope.cancelled_caught
        assert not finished.is_set()  # abandoned, not stopped: the thread is still running
        release.set()
        assert await anyio.to_thread.run_sync(finished.wait, SAFETY)

    assert results == []


async def test_cancelling_the_caller_of_run_tools_propagates() -> None:
    results: list[list[ToolOutcome]] = []
    started: list[int] = []

    with anyio.fail_after(SAFETY):
        both = anyio.Event()

        @tool
        async def hang(n: int) -> None:
            started.append(n)
            if len(started) == 2:
                both.set()
            await anyio.Event().wait()

        calls = [ToolCall(id=f"c{n}", name="hang", arguments=f'{{"n": {n}}}') for n in range(2)]
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:

                async def caller() -> None:
                    results.append(await run_tools(ToolRegistry([hang]), calls))

                group.start_soon(caller)
                await both.wait()
                scope.cancel()
        assert scope.cancelled_caught

    assert results == []
    assert sorted(started) == [0, 1]


# --------------------------------------------------------------------------- run_tools


async def test_run_tools_returns_outcomes_in_the_order_of_the_calls() -> None:
    with anyio.fail_after(SAFETY):
        second_done = anyio.Event()

        @tool
        async def first() -> str:
            await second_done.wait()  # finishes after the second call
            return "first"

        @tool
        async def second() -> str:
            second_done.set()
            return "second"

        registry = ToolRegistry([first, second])
        calls = [ToolCall(id="1", name="first"), ToolCall(id="2", name="second")]
        outcomes = await run_tools(registry, calls, max_parallel=2)
        assert [o.content for o in outcomes] == ["first", "second"]


async def test_run_tools_turns_each_failure_into_its_own_outcome() -> None:
    calls = [
        ToolCall(id="1", name="add", arguments='{"a": 1, "b": 2}'),
        ToolCall(id="2", name="fail"),
        ToolCall(id="3", name="missing"),
        ToolCall(id="4", name="add", arguments="{"),
    ]
    outcomes = await run_tools(REGISTRY, calls)
    assert [o.status for o in outcomes] == ["ok", "error", "unknown_tool", "invalid_arguments"]
    assert outcomes[0].content == "3"


async def test_run_tools_builds_each_context_with_the_factory() -> None:
    @tool
    async def who(ctx: ToolContext) -> str:
        return f"{ctx.session}/{ctx.tool_call_id}/{ctx.tool_name}"

    def make(call: ToolCall) -> ToolContext:
        return ToolContext(tool_call_id=call.id, tool_name=call.name, session="s9")

    calls = [ToolCall(id="a", name="who"), ToolCall(id="b", name="who")]
    outcomes = await run_tools(ToolRegistry([who]), calls, context=make)
    assert [o.content for o in outcomes] == ["s9/a/who", "s9/b/who"]
    default = await run_tools(ToolRegistry([who]), calls[:1])
    assert default[0].content == "/a/who"


async def test_run_tools_applies_the_default_timeout_per_call() -> None:
    @tool
    async def hang() -> None:
        await anyio.Event().wait()

    calls = [ToolCall(id="1", name="hang"), ToolCall(id="2", name="echo", arguments='{"text": "x"}')]
    outcomes = await run_tools(ToolRegistry([hang, echo]), calls, default_timeout=1e-6)
    assert [o.status for o in outcomes] == ["timeout", "ok"]


@pytest.mark.parametrize("cap", [1, 2, 3])
async def test_run_tools_runs_at_most_max_parallel_calls_at_once(cap: int) -> None:
    active = 0
    peak = 0

    with anyio.fail_after(SAFETY):
        full = anyio.Event()
        release = anyio.Event()

        @tool
        async def work(n: int) -> int:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            if active == cap:
                full.set()
            await release.wait()
            active -= 1
            return n

        calls = [ToolCall(id=str(n), name="work", arguments=f'{{"n": {n}}}') for n in range(6)]
        outcomes: list[ToolOutcome] = []
        async with anyio.create_task_group() as group:

            async def go() -> None:
                outcomes.extend(await run_tools(ToolRegistry([work]), calls, max_parallel=cap))

            group.start_soon(go)
            await full.wait()
            await anyio.wait_all_tasks_blocked()
            assert active == cap  # everyone else waits for a slot
            release.set()
        assert [o.content for o in outcomes] == [str(n) for n in range(6)]

    assert peak == cap


@pytest.mark.parametrize("max_parallel", [0, -1, True, 1.5])
async def test_run_tools_refuses_an_invalid_cap(max_parallel: Any) -> None:
    with pytest.raises(UsageError, match="max_parallel must be a positive int"):
        await run_tools(REGISTRY, [], max_parallel=max_parallel)


async def test_run_tools_with_no_calls_returns_nothing() -> None:
    assert await run_tools(REGISTRY, []) == []


async def test_sequential_tools_run_alone_in_their_place() -> None:
    log: list[str] = []

    with anyio.fail_after(SAFETY):
        started = {label: anyio.Event() for label in "abcd"}
        partner = {"a": "b", "b": "a", "c": "d", "d": "c"}

        @tool
        async def step(label: str) -> str:
            log.append(f"start {label}")
            started[label].set()
            await started[partner[label]].wait()  # deadlocks unless the pair runs concurrently
            log.append(f"end {label}")
            return label

        @tool(sequential=True)
        async def barrier(label: str) -> str:
            log.append(f"start {label}")
            await anyio.lowlevel.checkpoint()
            log.append(f"end {label}")
            return label

        order = ["a", "b", "S1", "S2", "c", "d"]
        calls = [
            ToolCall(id=label, name="barrier" if label.startswith("S") else "step", arguments=f'{{"label": "{label}"}}')
            for label in order
        ]
        outcomes = await run_tools(ToolRegistry([step, barrier]), calls, max_parallel=4)
        assert [o.content for o in outcomes] == order

    at = {entry: i for i, entry in enumerate(log)}
    assert max(at["end a"], at["end b"]) < at["start S1"]
    assert at["start S1"] + 1 == at["end S1"]
    assert at["end S1"] < at["start S2"]
    assert at["start S2"] + 1 == at["end S2"]
    assert at["end S2"] < min(at["start c"], at["start d"])


def test_tool_batches_make_each_sequential_call_a_barrier() -> None:
    @tool(sequential=True)
    def seq() -> None:
        return None

    registry = ToolRegistry([seq, echo])
    names = ["echo", "echo", "seq", "unknown", "echo", "seq", "seq"]
    assert tool_batches(registry, names) == [(0, 1), (2,), (3, 4), (5,), (6,)]
    assert tool_batches(registry, []) == []
    assert tool_batches(registry, ["seq"]) == [(0,)]


# --------------------------------------------------------------------------- rendering and the outcome type


class Weather(BaseModel):
    city: str
    degrees: float


class Reading(msgspec.Struct):
    value: int


@dataclasses.dataclass
class Pair:
    left: int
    right: str


class Thing:
    def __str__(self) -> str:
        return "a thing"


class Color(str, enum.Enum):  # noqa: UP042 - its str() is "Color.RED", unlike a StrEnum
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("as is", "as is"),
        ("", ""),
        (None, ""),
        (Weather(city="Oslo", degrees=-3.5), '{"city":"Oslo","degrees":-3.5}'),
        (Reading(value=3), '{"value":3}'),
        (Pair(1, "x"), '{"left":1,"right":"x"}'),
        ({"a": [1, 2], "é": None}, '{"a":[1,2],"é":null}'),
        ([Weather(city="A", degrees=1)], '[{"city":"A","degrees":1.0}]'),
        ((1, "two"), '[1,"two"]'),
        (42, "42"),
        (1.5, "1.5"),
        (True, "true"),
        ({"thing": Thing()}, '{"thing":"a thing"}'),
        (Thing(), "a thing"),
        (b"bytes", "b'bytes'"),
        (Color.RED, "red"),
        (Level.HIGH, "3"),
        ({"color": Color.RED}, '{"color":"red"}'),
    ],
)
def test_results_are_rendered_as_text(value: Any, text: str) -> None:
    assert render_result(value) == text


def test_synthesised_outcomes_for_calls_that_did_not_run() -> None:
    assert ToolOutcome.cancelled() == ToolOutcome(
        content="The tool call was cancelled before it finished.", status="cancelled"
    )
    assert ToolOutcome.denied("Not in production.") == ToolOutcome(content="Not in production.", status="denied")
    assert ToolOutcome.denied().is_error


def test_outcomes_are_frozen_and_round_trip_through_msgspec() -> None:
    outcome = ToolOutcome(content="x", status="timeout", error_type="E", duration=0.5)
    with pytest.raises(AttributeError):
        outcome.content = "y"  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(outcome), type=ToolOutcome) == outcome
    assert msgspec.structs.replace(ToolOutcome(content="x"), duration=1.25).duration == 1.25
