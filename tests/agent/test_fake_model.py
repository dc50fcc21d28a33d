"""FakeModel: the scripted model streams its script as the documented batches, on asyncio and trio."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from oturn import ProviderError, UsageError
from oturn.agent.deltas import FinishDelta, ReasoningDelta, StreamDelta, TextDelta, ToolCallDelta, UsageDelta
from oturn.agent.effects import CallModel
from oturn.agent.model import Model
from oturn.agent.stream import StreamState, apply, end
from oturn.agent.usage import Usage
from oturn.testing import FakeClock
from oturn.testing.fake_model import FakeModel, FakeModelError

pytestmark = pytest.mark.anyio


def request(key: str = "t1.1", text: str = "hi") -> CallModel:
    return CallModel(key=key, model="fake", messages=[{"role": "user", "content": text}])


async def collect(model: FakeModel, call: CallModel | None = None) -> list[list[StreamDelta]]:
    return [list(batch) async for batch in model.stream(call or request())]


def assemble(batches: Sequence[Sequence[StreamDelta]]) -> StreamState:
    state = StreamState()
    for batch in batches:
        state = apply(state, batch)
    return end(state)


# -- script items (pure) ------------------------------------------------------------------


def test_text_is_split_word_by_word_keeping_spaces_with_the_next_word() -> None:
    assert FakeModel.text("It is  sunny.") == [TextDelta(text="It"), TextDelta(text=" is"), TextDelta(text="  sunny.")]
    assert FakeModel.text("") == [TextDelta(text="")]
    assert FakeModel.reasoning("a b") == [ReasoningDelta(text="a"), ReasoningDelta(text=" b")]


@pytest.mark.parametrize("chunks", [1, 2, 3, 5, 100])
def test_text_in_chunks_keeps_the_text(chunks: int) -> None:
    pieces = FakeModel.text("hello", chunks=chunks)
    assert "".join(p.text for p in pieces if isinstance(p, TextDelta)) == "hello"
    assert len(pieces) == min(chunks, 5)


def test_a_tool_call_sends_id_and_name_with_the_first_fragment() -> None:
    deltas = FakeModel.tool_call("get_weather", {"city": "Tokyo"}, id="c1", fragments=3)
    assert len(deltas) == 3
    first, *rest = deltas
    assert isinstance(first, ToolCallDelta)
    assert (first.id, first.name) == ("c1", "get_weather")
    assert all(isinstance(d, ToolCallDelta) and d.id is None and d.name is None for d in rest)
    assert "".join(d.arguments or "" for d in deltas if isinstance(d, ToolCallDelta)) == '{"city": "Tokyo"}'
    assert FakeModel.tool_call("x", "") == [ToolCallDelta(name="x", arguments="")]
    assert FakeModel.tool_call("x", "{raw", index=4)[0] == ToolCallDelta(index=4, name="x", arguments="{raw")


def test_usage_and_finish_items() -> None:
    assert FakeModel.usage(3, 4, cost=0.5) == [
        UsageDelta(usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7, cost=0.5))
    ]
    assert FakeModel.finish("length") == [FinishDelta(reason="length")]


def test_a_fake_model_is_a_model() -> None:
    model = FakeModel([], name="scripted")
    assert isinstance(model, Model)
    assert model.name == "scripted"
    assert repr(model) == "<FakeModel 'scripted' used=0/0>"


def test_fake_model_error_is_an_assertion_and_a_usage_error() -> None:
    assert issubclass(FakeModelError, AssertionError)
    assert issubclass(FakeModelError, UsageError)


# -- streaming ----------------------------------------------------------------------------


async def test_a_response_streams_as_one_batch_by_default() -> None:
    model = FakeModel([[FakeModel.reasoning("hmm"), FakeModel.text("Hi there"), FakeModel.usage(1, 2)]])
    batches = await collect(model)
    assert len(batches) == 1
    state = assemble(batches)
    assert (state.reasoning, state.text) == ("hmm", "Hi there")
    assert state.usage is not None
    assert state.usage.total_tokens == 3


async def test_batch_false_streams_one_delta_per_batch() -> None:
    model = FakeModel([[FakeModel.text("a b c")]], batch=False)
    assert await collect(model) == [[TextDelta(text="a")], [TextDelta(text=" b")], [TextDelta(text=" c")]]


async def test_tool_calls_get_indexes_in_order_and_assemble_into_complete_calls() -> None:
    model = FakeModel(
        [
            [
                FakeModel.text("Checking."),
                FakeModel.tool_call("get_weather", {"city": "Tokyo"}, id="a", fragments=4),
                FakeModel.tool_call("get_time", {"zone": "JST"}, fragments=2),
                FakeModel.finish("tool_calls"),
            ]
        ],
        batch=False,
    )
    batches = await collect(model)
    indexes = [d.index for batch in batches for d in batch if isinstance(d, ToolCallDelta)]
    assert indexes == [0, 0, 0, 0, 1, 1]
    state = assemble(batches)
    assert [(c.index, c.id, c.name, c.arguments) for c in state.complete_tool_calls()] == [
        (0, "a", "get_weather", '{"city": "Tokyo"}'),
        (1, None, "get_time", '{"zone": "JST"}'),
    ]
    assert state.text == "Checking."


async def test_an_explicit_index_is_kept_and_a_reused_index_with_a_new_id_is_a_new_call() -> None:
    model = FakeModel(
        [
            [
                FakeModel.tool_call("a", {}, id="x", index=0),
                FakeModel.tool_call("b", {"n": 1}, id="y", index=0, fragments=2),
            ]
        ]
    )
    state = assemble(await collect(model))
    assert [(c.index, c.id, c.name, c.arguments) for c in state.tool_calls] == [
        (0, "x", "a", "{}"),
        (0, "y", "b", '{"n": 1}'),
    ]


async def test_delays_split_batches_and_wait_on_the_given_clock() -> None:
    async with FakeClock() as clock:
        model = FakeModel(
            [[FakeModel.text("one"), FakeModel.delay(5.0), FakeModel.text("two"), FakeModel.text("three")]], clock=clock
        )
        batches = await collect(model)
        assert clock.now() == 5.0
    assert batches == [[TextDelta(text="one")], [TextDelta(text="two"), TextDelta(text="three")]]


async def test_fail_streams_what_came_before_then_raises_a_provider_error() -> None:
    model = FakeModel([[FakeModel.text("partial"), FakeModel.fail("rate limited", status=429, retry_after=2.0)]])
    stream = model.stream(request())
    assert list(await anext(stream)) == [TextDelta(text="partial")]
    with pytest.raises(ProviderError, match="rate limited") as caught:
        await anext(stream)
    assert (caught.value.status, caught.value.retry_after) == (429, 2.0)


async def test_a_callable_response_sees_the_request() -> None:
    def answer(call: CallModel) -> list[Any]:
        return [FakeModel.text(f"you said {call.messages[-1]['content']} in {call.key}")]

    model = FakeModel([answer])
    state = assemble(await collect(model, request("t3.2", "hello")))
    assert state.text == "you said hello in t3.2"


async def test_calls_are_recorded_and_responses_used_in_order() -> None:
    model = FakeModel([[FakeModel.text("first")], [FakeModel.text("second")]])
    assert model.remaining == 2
    assert assemble(await collect(model, request("t1.1"))).text == "first"
    assert model.remaining == 1
    with pytest.raises(FakeModelError, match=r"1 unused scripted response\(s\) of 2 after 1 call"):
        model.assert_complete()
    assert assemble(await collect(model, request("t1.2"))).text == "second"
    model.assert_complete()
    assert [c.key for c in model.calls] == ["t1.1", "t1.2"]
    assert repr(model) == "<FakeModel 'fake' used=2/2>"


async def test_a_call_beyond_the_script_raises_fake_model_error() -> None:
    model = FakeModel([[FakeModel.text("only")]])
    await collect(model)
    with pytest.raises(FakeModelError, match=r"model call #2 \(t1.2\) but has only 1 scripted responses"):
        await collect(model, request("t1.2"))
    assert len(model.calls) == 2
