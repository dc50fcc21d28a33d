"""The stream assembler folds deltas into one model call's assistant message, by the documented rules."""

from __future__ import annotations

import itertools
import math

import msgspec

from oturn.agent.deltas import (
    FinishDelta,
    ReasoningDelta,
    RefusalDelta,
    StreamDelta,
    StreamErrorDelta,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
)
from oturn.agent.stream import AssembledToolCall, ChoiceState, StreamState, apply, end
from oturn.agent.usage import Usage
from oturn.core.builtins import ErrorInfo

ERROR = ErrorInfo(type="stream_error", message="boom", kind="stream_error")


def run(*batches: list[StreamDelta]) -> StreamState:
    state = StreamState()
    for batch in batches:
        state = apply(state, batch)
    return state


def call(index: int | None, id: str | None, name: str | None, arguments: str) -> AssembledToolCall:
    return AssembledToolCall(index=index, id=id, name=name, arguments=arguments)


def test_a_fresh_state_has_nothing() -> None:
    state = StreamState()
    assert (state.text, state.reasoning, state.refusal, state.tool_calls, state.finish_reason) == (
        None,
        None,
        None,
        (),
        None,
    )
    assert (state.usage, state.error, state.ended) == (None, None, False)


def test_text_deltas_concatenate_one_by_one_and_in_batches() -> None:
    assert run([TextDelta(text="Hel")], [TextDelta(text="lo")]).text == "Hello"
    assert run([TextDelta(text="Hel"), TextDelta(text="lo")], [TextDelta(text="!")]).text == "Hello!"


def test_text_is_none_when_never_seen_and_empty_when_only_empty_deltas_came() -> None:
    assert run([ReasoningDelta(text="r")]).text is None
    assert run([TextDelta(text="")], [TextDelta(text="")]).text == ""


def test_reasoning_and_refusal_accumulate_separately_from_text() -> None:
    state = run(
        [ReasoningDelta(text="think"), ReasoningDelta(text="ing"), TextDelta(text="ans")], [RefusalDelta(text="")]
    )
    assert (state.reasoning, state.text, state.refusal) == ("thinking", "ans", "")


def test_apply_returns_a_new_state_and_leaves_the_old_one_unchanged() -> None:
    before = run([TextDelta(text="a")], [ToolCallDelta(index=0, id="x", name="f", arguments="{")])
    snapshot = msgspec.json.encode(before)
    left = apply(before, [TextDelta(text="L"), ToolCallDelta(index=0, arguments="1}")])
    right = apply(before, [TextDelta(text="R"), ToolCallDelta(index=0, arguments="2}")])
    assert msgspec.json.encode(before) == snapshot
    assert (left.text, left.tool_calls[0].arguments) == ("aL", "{1}")
    assert (right.text, right.tool_calls[0].arguments) == ("aR", "{2}")


def test_an_empty_batch_returns_the_same_state() -> None:
    state = run([TextDelta(text="a")])
    assert apply(state, []) is state


def test_tool_call_fragments_are_keyed_by_index() -> None:
    state = run(
        [ToolCallDelta(index=0, id="a", name="f", arguments="")],
        [ToolCallDelta(index=1, id="b", name="g", arguments='{"y"')],
        [ToolCallDelta(index=0, arguments='{"x":1}')],
        [ToolCallDelta(index=1, arguments=":2}")],
    )
    assert state.tool_calls == (call(0, "a", "f", '{"x":1}'), call(1, "b", "g", '{"y":2}'))


def test_a_new_id_at_a_reused_index_starts_a_new_call() -> None:
    state = run(
        [ToolCallDelta(index=0, id="a", name="f", arguments="{}")],
        [ToolCallDelta(index=0, id="b", name="g", arguments="{")],
        [ToolCallDelta(index=0, arguments="}")],
    )
    assert state.tool_calls == (call(0, "a", "f", "{}"), call(0, "b", "g", "{}"))


def test_the_same_id_repeated_at_an_index_continues_the_call() -> None:
    state = run(
        [ToolCallDelta(index=0, id="a", name="f", arguments="{")], [ToolCallDelta(index=0, id="a", arguments="}")]
    )
    assert state.tool_calls == (call(0, "a", "f", "{}"),)


def test_an_id_arriving_later_fills_a_slot_that_had_none() -> None:
    state = run([ToolCallDelta(index=0, name="f")], [ToolCallDelta(index=0, id="late", arguments="{}")])
    assert state.tool_calls == (call(0, "late", "f", "{}"),)


def test_id_and_name_are_the_first_non_empty_ones() -> None:
    state = run(
        [ToolCallDelta(index=0, id="", name="", arguments="")],
        [ToolCallDelta(index=0, name="first")],
        [ToolCallDelta(index=0, name="second", arguments="{}")],
    )
    assert state.tool_calls == (call(0, None, "first", "{}"),)


def test_fragments_without_index_are_keyed_by_id() -> None:
    state = run(
        [ToolCallDelta(id="m1", name="weather", arguments='{"a"')],
        [ToolCallDelta(id="m2", name="time", arguments="{}")],
        [ToolCallDelta(id="m1", arguments=":1}")],
    )
    assert state.tool_calls == (call(None, "m1", "weather", '{"a":1}'), call(None, "m2", "time", "{}"))


def test_a_fragment_with_neither_index_nor_id_continues_the_previous_fragments_call() -> None:
    state = run(
        [ToolCallDelta(index=0, id="a", name="f", arguments="{")],
        [ToolCallDelta(index=1, id="b", name="g", arguments="[")],
        [ToolCallDelta(arguments="]")],
        [ToolCallDelta(index=0, arguments="}")],
        [ToolCallDelta(arguments=" ")],
    )
    assert state.tool_calls == (call(0, "a", "f", "{} "), call(1, "b", "g", "[]"))
    assert run([ToolCallDelta(arguments="{}")]).tool_calls == (call(None, None, None, "{}"),)


def test_text_beside_tool_calls_is_kept() -> None:
    state = run([TextDelta(text="Let me check. "), ToolCallDelta(index=0, id="a", name="f")], [TextDelta(text="Done.")])
    assert state.text == "Let me check. Done."
    assert state.tool_calls == (call(0, "a", "f", ""),)


def test_choices_are_assembled_separately_and_kept_sorted() -> None:
    state = run(
        [TextDelta(text="two", choice=2), TextDelta(text="zero")],
        [TextDelta(text="one", choice=1)],
        [TextDelta(text="!", choice=2)],
        [FinishDelta(reason="stop", choice=1)],
    )
    assert [c.index for c in state.choices] == [0, 1, 2]
    assert [state.choice(i).text for i in range(3)] == ["zero", "one", "two!"]
    assert state.choice(1).finish_reason == "stop"
    assert state.finish_reason is None
    assert state.choice(7) == ChoiceState(index=7)


def test_finish_reason_is_the_last_one_given() -> None:
    state = run([FinishDelta(reason="tool_calls")], [FinishDelta(reason="stop")])
    assert state.finish_reason == "stop"


def test_usage_is_the_last_one_given_and_is_never_erased() -> None:
    first = UsageDelta(usage=Usage(prompt_tokens=1, calls=1), raw={"prompt_tokens": 1})
    second = UsageDelta(usage=Usage(prompt_tokens=2, calls=1), raw={"prompt_tokens": 2})
    state = run([first], [TextDelta(text="x"), second], [TextDelta(text="y")])
    assert state.usage == Usage(prompt_tokens=2, calls=1)
    assert state.raw_usage == {"prompt_tokens": 2}


def test_an_error_stops_accumulation_but_earlier_deltas_of_its_batch_count() -> None:
    state = run([TextDelta(text="a"), StreamErrorDelta(error=ERROR), TextDelta(text="lost")])
    assert (state.text, state.error) == ("a", ERROR)
    after = apply(state, [TextDelta(text="b"), StreamErrorDelta(error=ErrorInfo(type="x", message="second"))])
    assert after is state


def test_message_gives_the_openai_assistant_message() -> None:
    state = run(
        [ReasoningDelta(text="hmm"), TextDelta(text="Sure.")],
        [ToolCallDelta(index=0, id="call_1", name="f", arguments='{"a":1}'), ToolCallDelta(index=1, name="g")],
    )
    assert state.message(id_prefix="t1:") == {
        "role": "assistant",
        "content": "Sure.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
            {"id": "t1:1", "type": "function", "function": {"name": "g", "arguments": ""}},
        ],
    }
    assert state.message()["tool_calls"][1]["id"] == "oturn_call_1"
    assert state.message(include_reasoning=True)["reasoning_content"] == "hmm"


def test_message_content_is_none_when_empty_beside_tool_calls_and_empty_string_otherwise() -> None:
    assert run([TextDelta(text=""), ToolCallDelta(index=0, id="a", name="f")]).message()["content"] is None
    assert StreamState().message() == {"role": "assistant", "content": ""}


def test_message_keeps_a_refusal_only_when_it_is_not_empty() -> None:
    assert run([RefusalDelta(text="No.")]).message() == {"role": "assistant", "content": "", "refusal": "No."}
    assert "refusal" not in run([RefusalDelta(text="")]).message()


def test_no_tool_call_is_complete_before_the_choice_finishes() -> None:
    state = run([ToolCallDelta(index=0, id="a", name="f", arguments="{}")], [ToolCallDelta(index=1, id="b", name="g")])
    assert state.complete_tool_calls() == ()
    assert [c.id for c in apply(state, [FinishDelta(reason="tool_calls")]).complete_tool_calls()] == ["a", "b"]
    assert [c.id for c in end(state).complete_tool_calls()] == ["a", "b"]


def test_tool_calls_of_a_truncated_or_failed_stream_are_never_complete() -> None:
    state = run([ToolCallDelta(index=0, id="a", name="f", arguments='{"x": ')])
    assert apply(state, [FinishDelta(reason="length")]).complete_tool_calls() == ()
    assert end(apply(state, [StreamErrorDelta(error=ERROR)])).complete_tool_calls() == ()


def test_end_marks_the_state_once() -> None:
    state = end(StreamState())
    assert state.ended
    assert end(state) is state


def test_states_round_trip_through_msgspec() -> None:
    state = run(
        [ReasoningDelta(text="r"), TextDelta(text="t"), ToolCallDelta(index=0, id="a", name="f", arguments="{}")],
        [UsageDelta(usage=Usage(total_tokens=3, calls=1), raw={"total_tokens": 3}), FinishDelta(reason="stop")],
    )
    assert msgspec.json.decode(msgspec.json.encode(state), type=StreamState) == state
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(end(state)), type=StreamState) == end(state)


def test_long_text_is_kept_in_few_segments() -> None:
    state = StreamState()
    for i in range(5000):
        state = apply(state, [TextDelta(text="x" * (1 + i % 7))])
    segments = state.choice(0).text_segments
    assert segments is not None
    total = sum(len(s) for s in segments)
    assert len(segments) <= math.log2(total) + 2
    assert all(len(a) > 2 * len(b) for a, b in itertools.pairwise(segments))
