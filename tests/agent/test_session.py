"""A session end to end: the turn reducer on a nucleus, with FakeModel and real tools.

Every test runs on asyncio and on trio (``pytest.mark.anyio``; the conftest hands these
tests to anyio's plugin). Nothing sleeps for real: tools wait on events, time is a
FakeClock where a timer is involved, and the only real-time wait is the tiny tool
timeout of the timeout test (the tool runner times tools on the event loop's clock).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import sniffio
from turn_strategies import assert_history_valid

from oturn import ClosedError, UsageError, WouldBlock
from oturn.agent.agent import Agent
from oturn.agent.effects import CallModel
from oturn.agent.events import (
    ApprovalRequest,
    ApprovalResolved,
    AssistantDelta,
    AssistantFinal,
    ChoiceRequest,
    ChoiceResolved,
    Ignored,
    ToolExit,
    ToolOutput,
    ToolResult,
    ToolStarted,
    TurnFinished,
)
from oturn.agent.session import InputRejectedError, Session
from oturn.agent.signals import Choose
from oturn.agent.usage import Usage
from oturn.core.envelope import Envelope
from oturn.testing import FakeClock, capture
from oturn.testing.fake_model import FakeModel, FakeModelError
from oturn.tools import ToolContext, tool

pytestmark = pytest.mark.anyio

LIMIT = 10.0  # a safety net against hangs, never reached when the code works


async def run(session: Session, text: str) -> TurnFinished:
    """``session.run(text)``, bounded by the safety net."""
    with anyio.fail_after(LIMIT):
        return await session.run(text)


async def read_turn(session: Session, text: str) -> list[Envelope]:
    """Every envelope of ``session.stream(text)``, bounded by the safety net."""
    with anyio.fail_after(LIMIT):
        async with session.stream(text) as turn:
            return [envelope async for envelope in turn]


def hanging_tool() -> Any:
    """A tool named ``hang`` that waits until it is cancelled."""
    never = anyio.Event()

    @tool
    async def hang() -> str:
        """Wait for ever."""
        await never.wait()
        return "impossible"

    return hang


def last_tool_message(call: CallModel) -> str:
    content = call.messages[-1]["content"]
    assert call.messages[-1]["role"] == "tool"
    assert isinstance(content, str)
    return content


def echo_tool_result(call: CallModel) -> list[Any]:
    """A scripted response that answers with the last tool result (so tests can read it in the final text)."""
    return [FakeModel.text(f"tool said: {last_tool_message(call)}")]


def events_of(envelopes: Sequence[Envelope], kind: type[Any]) -> list[Any]:
    return [env.event for env in envelopes if isinstance(env.event, kind)]


async def test_the_backend_really_is_the_one_asked_for(anyio_backend: str) -> None:
    assert sniffio.current_async_library() == anyio_backend


async def test_run_returns_the_turn_finished_with_text_and_usage() -> None:
    model = FakeModel(
        [[FakeModel.reasoning("Easy."), FakeModel.text("Hello there, friend."), FakeModel.usage(12, 30, cost=0.01)]]
    )
    agent = Agent(model, system="Be nice.")
    async with agent.session(id="s1") as session:
        result = await run(session, "hi")
        assert isinstance(result, TurnFinished)
        assert (result.outcome, result.text, result.turn, result.steps) == (
            "completed",
            "Hello there, friend.",
            "t1",
            1,
        )
        assert result.usage == Usage(prompt_tokens=12, completion_tokens=30, total_tokens=42, cost=0.01, calls=1)
        assert session.state.phase == "idle"
        assert session.history == (
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello there, friend."},
        )
        assert session.id == "s1"
        assert "idle" in repr(session)
        envelopes = session.nucleus.history()
        assert all(env.session == "s1" for env in envelopes)
        assert [env.seq for env in envelopes] == list(range(1, len(envelopes) + 1))
    model.assert_complete()
    assert model.calls[0].messages == [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}]
    assert model.calls[0].model == "fake"


async def test_two_tool_calls_run_concurrently() -> None:
    started = 0
    both = anyio.Event()

    async def meet(name: str) -> str:
        nonlocal started
        started += 1
        if started == 2:
            both.set()
        await both.wait()  # each call waits until both have started: they must run at once
        return f"{name} ok"

    @tool
    async def left() -> str:
        """The left tool."""
        return await meet("left")

    @tool
    async def right() -> str:
        """The right tool."""
        return await meet("right")

    model = FakeModel(
        [
            [FakeModel.tool_call("left", {}), FakeModel.tool_call("right", {})],
            [FakeModel.text("both done")],
        ]
    )
    async with Agent(model, tools=[left, right]).session() as session, capture(session.nucleus) as cap:
        result = await run(session, "go")
        assert (result.outcome, result.text, result.steps) == ("completed", "both done", 2)
        results = events_of(cap.envelopes, ToolResult)
        assert sorted(e.content for e in results) == ["left ok", "right ok"]
        assert_history_valid(session.history)
    model.assert_complete()


async def test_a_sequential_tool_never_runs_beside_another() -> None:
    running = 0
    peak = 0

    @tool(sequential=True)
    async def alone(n: int) -> str:
        """Must run alone."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        running -= 1
        return str(n)

    model = FakeModel(
        [
            [FakeModel.tool_call("alone", {"n": 1}), FakeModel.tool_call("alone", {"n": 2})],
            [FakeModel.text("ok")],
        ]
    )
    async with Agent(model, tools=[alone]).session() as session:
        assert (await run(session, "go")).outcome == "completed"
        assert [m["content"] for m in session.history if m["role"] == "tool"] == ["1", "2"]
    assert peak == 1


async def test_a_sync_tool_runs_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    @tool
    def where() -> str:
        """Report the thread."""
        return "worker" if threading.get_ident() != loop_thread else "event loop"

    model = FakeModel([[FakeModel.tool_call("where", {})], echo_tool_result])
    async with Agent(model, tools=[where]).session() as session:
        result = await run(session, "where?")
    assert result.text == "tool said: worker"


async def test_a_tool_streams_progress_as_tool_output_events() -> None:
    @tool
    async def work(ctx: ToolContext) -> str:
        """Work in two halves."""
        await ctx.progress("half ")
        await ctx.progress("done")
        return "finished"

    model = FakeModel([[FakeModel.tool_call("work", {}, id="w1")], echo_tool_result])
    async with Agent(model, tools=[work]).session() as session, capture(session.nucleus) as cap:
        result = await run(session, "work")
        assert result.text == "tool said: finished"
        assert events_of(cap.envelopes, ToolOutput) == [
            ToolOutput(id="w1", text="half "),
            ToolOutput(id="w1", text="done"),
        ]
        order = [type(env.event).__name__ for env in cap.envelopes]
        assert order.index("ToolStarted") < order.index("ToolOutput") < order.index("ToolResult")


async def test_a_tool_asks_a_choice_and_the_answer_resumes_it() -> None:
    @tool
    async def paint(ctx: ToolContext) -> str:
        """Paint something."""
        colour = await ctx.choose("Which colour?", {"red": "Red", "blue": "Blue"})
        return f"painted {colour}"

    model = FakeModel([[FakeModel.tool_call("paint", {}, id="p1")], echo_tool_result])
    async with Agent(model, tools=[paint]).session() as session, capture(session.nucleus) as cap:
        await session.send("paint it")
        request = (await cap.wait_for(ChoiceRequest, timeout=LIMIT)).event
        assert isinstance(request, ChoiceRequest)
        assert (request.call_id, request.prompt, request.options) == (
            "p1",
            "Which colour?",
            {"red": "Red", "blue": "Blue"},
        )
        assert session.state.phase == "attention"
        await session.choose(request.id, "green")  # not an option: ignored, still waiting
        ignored = (await cap.wait_for(Ignored, timeout=LIMIT)).event
        assert isinstance(ignored, Ignored)
        assert ignored.signal == "choose"
        await session.choose(request.id, "blue")
        done = (await cap.wait_for(TurnFinished, timeout=LIMIT)).event
        assert isinstance(done, TurnFinished)
        assert (done.outcome, done.text) == ("completed", "tool said: painted blue")
        assert events_of(cap.envelopes, ChoiceResolved) == [ChoiceResolved(id=request.id, value="blue")]


async def test_an_approval_is_answered_from_another_task() -> None:
    ran: list[str] = []

    @tool(approval="ask")
    async def deploy(target: str) -> str:
        """Deploy somewhere."""
        ran.append(target)
        return f"deployed to {target}"

    model = FakeModel([[FakeModel.tool_call("deploy", {"target": "staging"})], echo_tool_result])
    async with Agent(model, tools=[deploy]).session() as session, capture(session.nucleus) as cap:

        async def approver() -> None:
            request = (await cap.wait_for(ApprovalRequest, timeout=LIMIT)).event
            assert isinstance(request, ApprovalRequest)
            assert ran == []  # nothing runs before the answer
            await session.approve(request.id, arguments='{"target": "prod"}')

        async with anyio.create_task_group() as tg:
            tg.start_soon(approver)
            result = await run(session, "ship it")
        assert result.text == "tool said: deployed to prod"
        assert ran == ["prod"]
        [resolved] = events_of(cap.envelopes, ApprovalResolved)
        assert (resolved.approved, resolved.how, resolved.arguments) == (True, "approved", '{"target": "prod"}')
        assert session.history[1]["tool_calls"][0]["function"]["arguments"] == '{"target": "prod"}'
        assert_history_valid(session.history)


async def test_a_denial_with_a_message_reaches_the_model() -> None:
    @tool(approval="ask")
    async def delete(path: str) -> str:
        """Delete a file."""
        raise AssertionError("never runs")

    model = FakeModel([[FakeModel.tool_call("delete", {"path": "/"})], echo_tool_result])
    async with Agent(model, tools=[delete]).session() as session, capture(session.nucleus) as cap:

        async def denier() -> None:
            request = (await cap.wait_for(ApprovalRequest, timeout=LIMIT)).event
            assert isinstance(request, ApprovalRequest)
            await session.deny(request.id, "Not the root, please.")

        async with anyio.create_task_group() as tg:
            tg.start_soon(denier)
            result = await run(session, "clean up")
        assert result.outcome == "completed"
        assert "Not the root, please." in result.text


async def test_an_unanswered_approval_times_out_on_the_session_clock() -> None:
    @tool(approval="ask")
    async def deploy() -> str:
        """Deploy."""
        raise AssertionError("never runs")

    model = FakeModel([[FakeModel.tool_call("deploy", {})], echo_tool_result])
    agent = Agent(model, tools=[deploy], approval_timeout=300.0, approval_timeout_outcome="deny")
    async with FakeClock() as clock, agent.session(clock=clock) as session, capture(session.nucleus) as cap:
        result = await run(session, "deploy")
        assert result.outcome == "completed"
        assert "timed out" in result.text
        [resolved] = events_of(cap.envelopes, ApprovalResolved)
        assert resolved.how == "timed_out"
        assert clock.now() == 300.0


async def test_cancel_while_a_tool_blocks_aborts_the_turn_and_the_next_run_works() -> None:
    never = anyio.Event()
    cancelled = anyio.Event()

    @tool
    async def hang() -> str:
        """Wait for ever."""
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "impossible"

    model = FakeModel([[FakeModel.text("Hanging."), FakeModel.tool_call("hang", {})], [FakeModel.text("fresh start")]])
    async with Agent(model, tools=[hang]).session() as session, capture(session.nucleus) as cap:
        await session.send("hang")
        await cap.wait_for(ToolStarted, timeout=LIMIT)
        await session.cancel()
        done = (await cap.wait_for(TurnFinished, timeout=LIMIT)).event
        assert isinstance(done, TurnFinished)
        assert done.outcome == "aborted"
        with anyio.fail_after(LIMIT):
            await cancelled.wait()  # the tool itself was cancelled
        assert session.state.phase == "idle"
        assert_history_valid(session.history)
        assert session.history[-1]["role"] == "tool"
        result = await run(session, "again")
        assert (result.outcome, result.text, result.turn) == ("completed", "fresh start", "t2")
        assert_history_valid(session.history)
    model.assert_complete()


async def test_cancel_while_idle_sends_nothing_and_does_not_touch_the_next_turn() -> None:
    model = FakeModel([[FakeModel.text("fine")]])
    async with Agent(model).session() as session:
        assert await session.cancel() is False
        assert session.statistics().signals_reduced == 0
        assert (await run(session, "hi")).outcome == "completed"


async def test_a_model_error_fails_the_turn_and_keeps_status_and_retry_after() -> None:
    model = FakeModel(
        [
            [FakeModel.text("Thinking"), FakeModel.fail("slow down", status=429, retry_after=7.5)],
            [FakeModel.text("better now")],
        ]
    )
    async with Agent(model).session() as session:
        result = await run(session, "hi")
        assert result.outcome == "failed"
        assert result.error is not None
        assert (result.error.status, result.error.retry_after) == (429, 7.5)
        assert "slow down" in result.error.message
        assert result.text == "Thinking"
        phase_after_failure = session.state.phase
        assert phase_after_failure == "error"
        assert_history_valid(session.history)
        assert (await run(session, "retry")).text == "better now"
        assert session.state.phase == "idle"


async def test_a_tool_that_raises_gives_an_error_result_and_the_turn_completes() -> None:
    @tool
    async def broken() -> str:
        """Always fails."""
        raise RuntimeError("disk on fire")

    model = FakeModel([[FakeModel.tool_call("broken", {})], echo_tool_result])
    async with Agent(model, tools=[broken]).session() as session, capture(session.nucleus) as cap:
        result = await run(session, "try")
        assert result.outcome == "completed"
        assert "disk on fire" in result.text
        assert [e.status for e in events_of(cap.envelopes, ToolExit)] == ["error"]
        assert [e.is_error for e in events_of(cap.envelopes, ToolResult)] == [True]


async def test_a_tool_that_times_out_gives_an_error_result_and_the_turn_completes() -> None:
    never = anyio.Event()

    @tool(timeout=0.005)
    async def stuck() -> str:
        """Never returns."""
        await never.wait()
        return "impossible"

    model = FakeModel([[FakeModel.tool_call("stuck", {})], echo_tool_result])
    async with Agent(model, tools=[stuck]).session() as session, capture(session.nucleus) as cap:
        result = await run(session, "try")
        assert result.outcome == "completed"
        assert [e.status for e in events_of(cap.envelopes, ToolExit)] == ["timeout"]
        assert_history_valid(session.history)


async def test_a_tool_that_times_out_while_asking_withdraws_its_choice() -> None:
    @tool(timeout=0.005)
    async def ask_slowly(ctx: ToolContext) -> str:
        """Ask, but nobody answers in time."""
        return await ctx.choose("Well?", ["yes", "no"])

    model = FakeModel([[FakeModel.tool_call("ask_slowly", {})], [FakeModel.text("moved on")]])
    async with Agent(model, tools=[ask_slowly]).session() as session, capture(session.nucleus) as cap:
        result = await run(session, "ask")
        assert (result.outcome, result.text, result.steps) == ("completed", "moved on", 2)
        [request] = events_of(cap.envelopes, ChoiceRequest)
        assert ChoiceResolved(id=request.id, value=None) in events_of(cap.envelopes, ChoiceResolved)
        assert session.state.choices == ()
        # a late answer is reported and starts nothing
        await session.signal(Choose(id=request.id, value="yes"))
        ignored = (await cap.wait_for(Ignored, timeout=LIMIT)).event
        assert isinstance(ignored, Ignored)
        assert ignored.id == request.id
        assert len(model.calls) == 2
        assert session.state.phase == "idle"
    model.assert_complete()


async def test_empty_input_is_rejected() -> None:
    async with Agent(FakeModel([])).session() as session:
        with pytest.raises(InputRejectedError, match="empty message"):
            await run(session, "   ")
        assert session.state.turns == 0


async def test_input_mid_turn_is_rejected_with_policy_reject() -> None:
    hang = hanging_tool()

    model = FakeModel([[FakeModel.tool_call("hang", {})]])
    async with Agent(model, tools=[hang], input_policy="reject").session() as session, capture(session.nucleus) as cap:
        await session.send("hang")
        await cap.wait_for(ToolStarted, timeout=LIMIT)
        with pytest.raises(InputRejectedError, match="is running"):
            await run(session, "and this?")
        await session.cancel()
        await cap.wait_for(TurnFinished, timeout=LIMIT)


async def test_stream_yields_exactly_its_own_turn_in_seq_order_and_ends_at_turn_finished() -> None:
    gate = anyio.Event()

    @tool
    async def wait_gate() -> str:
        """Wait for the test."""
        await gate.wait()
        return "opened"

    model = FakeModel(
        [
            [FakeModel.tool_call("wait_gate", {})],
            [FakeModel.text("first done")],
            [FakeModel.text("second "), FakeModel.text("done")],
        ]
    )
    async with Agent(model, tools=[wait_gate]).session() as session, capture(session.nucleus) as cap:
        await session.send("first")
        await cap.wait_for(ToolStarted, timeout=LIMIT)
        with anyio.fail_after(LIMIT):
            async with session.stream("second") as turn:
                assert "turn=None" in repr(turn)  # not started yet
                gate.set()  # the first turn finishes while this stream reads
                got = [envelope async for envelope in turn]
        kinds = [type(env.event).__name__ for env in got]
        assert kinds[0] == "InputQueued"  # it waited behind turn t1
        assert kinds[-1] == "TurnFinished"
        assert "ToolStarted" not in kinds  # nothing of the first turn
        assert all(env.turn == "t2" for env in got[1:])
        assert [env.seq for env in got] == sorted({env.seq for env in got})
        assert "".join(e.text for e in events_of(got, AssistantDelta)) == "second done"
        assert turn.turn == "t2"
        assert turn.finished is not None
        assert turn.finished.text == "second done"
        assert turn.finished.input_id == turn.input_id
        assert got[-1].event == turn.finished
        assert "finished" in repr(turn)
    model.assert_complete()


async def test_stream_with_types_keeps_only_those_events() -> None:
    model = FakeModel([[FakeModel.text("a"), FakeModel.text("b"), FakeModel.usage(1, 2)]])
    async with Agent(model).session() as session:
        with anyio.fail_after(LIMIT):
            async with session.stream("hi", types=[AssistantDelta]) as turn:
                texts = [env.event.text async for env in turn]  # type: ignore[attr-defined]
        assert "".join(texts) == "ab"
        assert turn.finished is not None
        assert turn.finished.outcome == "completed"
        with pytest.raises(StopAsyncIteration):
            await turn.__anext__()  # ended for good


async def test_stream_raises_for_rejected_input_and_bad_arguments() -> None:
    async with Agent(FakeModel([])).session() as session:
        with pytest.raises(InputRejectedError, match="empty message"):
            await read_turn(session, "  ")
        with pytest.raises(UsageError, match="text"):
            session.stream(42)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="Event subclasses"):
            session.stream("hi", types=[int])  # type: ignore[list-item]
        with pytest.raises(UsageError, match="inside"):
            await session.stream("x").__anext__()
        assert session.nucleus.statistics().subscribers == 0


async def test_leaving_a_stream_early_closes_it_and_the_turn_goes_on() -> None:
    model = FakeModel([[FakeModel.text("one "), FakeModel.text("two")]])
    async with Agent(model).session() as session, capture(session.nucleus) as cap:
        with anyio.fail_after(LIMIT):
            async with session.stream("hi", buffer=1) as turn:
                async for _ in turn:
                    break
            assert session.nucleus.statistics().subscribers == 1  # only the capture left
            finished = await cap.wait_for(TurnFinished, timeout=LIMIT)
        assert finished.event.text == "one two"  # type: ignore[attr-defined]
        assert turn.finished is None
        assert "closed" in repr(turn)
    model.assert_complete()


async def test_a_stream_ends_with_closed_error_when_the_session_closes_first() -> None:
    hang = hanging_tool()

    model = FakeModel([[FakeModel.tool_call("hang", {})]])
    agent = Agent(model, tools=[hang])
    with anyio.fail_after(LIMIT):
        async with agent.session() as session, session.stream("hang", types=[ToolStarted]) as turn:
            await turn.__anext__()
            await session.nucleus.aclose()
            with pytest.raises(ClosedError, match="before the turn"):
                await turn.__anext__()


async def test_queued_input_runs_after_the_current_turn() -> None:
    gate = anyio.Event()

    @tool
    async def wait_gate() -> str:
        """Wait for the test."""
        await gate.wait()
        return "opened"

    model = FakeModel([[FakeModel.tool_call("wait_gate", {})], echo_tool_result, [FakeModel.text("second answer")]])
    async with Agent(model, tools=[wait_gate]).session() as session, capture(session.nucleus) as cap:
        await session.send("first", id="a")
        await cap.wait_for(ToolStarted, timeout=LIMIT)
        async with anyio.create_task_group() as tg:

            async def second() -> None:
                result = await run(session, "second")
                assert (result.text, result.turn) == ("second answer", "t2")

            tg.start_soon(second)
            await cap.wait_for(lambda env: type(env.event).__name__ == "InputQueued", timeout=LIMIT)
            gate.set()
        finished = events_of(cap.envelopes, TurnFinished)
        assert [(e.turn, e.text) for e in finished] == [("t1", "tool said: opened"), ("t2", "second answer")]
        assert [env.turn for env in cap.envelopes if isinstance(env.event, TurnFinished)] == ["t1", "t2"]
    model.assert_complete()


async def test_a_coalescing_slow_subscriber_gets_merged_deltas_that_add_up_to_the_answer() -> None:
    answer = "The quick brown fox jumps over the lazy dog and keeps running far away."
    model = FakeModel([[FakeModel.text(answer)]], batch=False)  # one delta per signal
    chunks = len(FakeModel.text(answer))
    async with Agent(model).session() as session:
        sub = session.subscribe(policy="coalesce", buffer=16)  # room for every non-delta event of the turn
        async with sub:
            result = await run(session, "tell me")  # nobody reads sub meanwhile
            assert result.text == answer
            received: list[Envelope] = []
            while True:
                try:
                    received.append(sub.get_nowait())
                except WouldBlock:
                    break
            deltas = [env.event.text for env in received if isinstance(env.event, AssistantDelta)]
            stats = sub.statistics()
        assert "".join(deltas) == answer
        assert 1 <= len(deltas) < chunks
        assert stats.merged > 0
        assert events_of(received, AssistantFinal) == [AssistantFinal(text=answer, finish_reason=None)]
        # the lossless history saw every delta
        assert len(events_of(session.nucleus.history(), AssistantDelta)) == chunks


async def test_fake_model_assert_complete_catches_unused_responses() -> None:
    model = FakeModel([[FakeModel.text("one")], [FakeModel.text("two")]])
    async with Agent(model).session() as session:
        assert (await run(session, "a")).text == "one"
        with pytest.raises(FakeModelError, match="1 unused scripted response"):
            model.assert_complete()
        assert (await run(session, "b")).text == "two"
    model.assert_complete()


async def test_more_model_calls_than_responses_fail_the_turn_with_a_clear_error() -> None:
    model = FakeModel([])
    async with Agent(model).session() as session:
        result = await run(session, "a")
    assert result.outcome == "failed"
    assert result.error is not None
    assert "only 0 scripted responses" in result.error.message
