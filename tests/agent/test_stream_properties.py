"""Properties of the stream assembler: splitting, batching and interleaving never change what is assembled."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from oturn.agent.deltas import (
    FinishDelta,
    ReasoningDelta,
    RefusalDelta,
    StreamDelta,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
)
from oturn.agent.stream import AssembledToolCall, StreamState, apply
from oturn.agent.usage import Usage

_text = st.text(max_size=40)
_args = st.text(alphabet='{}[]":,abc 0123\u00e9', max_size=30)


@st.composite
def splits(draw: st.DrawFn, text: str, min_pieces: int = 1) -> list[str]:
    """``text`` cut at random points into at least ``min_pieces`` pieces (some may be empty)."""
    n = draw(st.integers(min_value=min_pieces, max_value=max(min_pieces, 8)))
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(text)), min_size=n - 1, max_size=n - 1)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@st.composite
def batched(draw: st.DrawFn, deltas: list[StreamDelta]) -> list[list[StreamDelta]]:
    """``deltas`` grouped, in order, into random non-empty batches."""
    batches: list[list[StreamDelta]] = []
    i = 0
    while i < len(deltas):
        n = draw(st.integers(min_value=1, max_value=6))
        batches.append(deltas[i : i + n])
        i += n
    return batches


@st.composite
def interleaved(draw: st.DrawFn, streams: list[list[StreamDelta]]) -> list[StreamDelta]:
    """A random merge of ``streams`` that keeps each one's own order."""
    labels = [k for k, s in enumerate(streams) for _ in s]
    order = draw(st.permutations(labels))
    positions = [0] * len(streams)
    out: list[StreamDelta] = []
    for k in order:
        out.append(streams[k][positions[k]])
        positions[k] += 1
    return out


def fold(batches: list[list[StreamDelta]]) -> StreamState:
    state = StreamState()
    for batch in batches:
        state = apply(state, batch)
    return state


def view(state: StreamState) -> list[dict[str, Any]]:
    return [
        {
            "index": c.index,
            "text": c.text,
            "reasoning": c.reasoning,
            "refusal": c.refusal,
            "tool_calls": c.tool_calls,
            "finish_reason": c.finish_reason,
        }
        for c in state.choices
    ]


_calls = st.lists(st.tuples(st.text(alphabet="abcdefgh_", min_size=1, max_size=8), _args), min_size=1, max_size=5)


@settings(deadline=None)
@given(data=st.data(), calls=_calls, id_on_every_fragment=st.booleans())
def test_interleaved_fragments_of_several_calls_assemble_into_those_calls(
    data: st.DataObject, calls: list[tuple[str, str]], id_on_every_fragment: bool
) -> None:
    streams: list[list[StreamDelta]] = []
    for index, (name, arguments) in enumerate(calls):
        pieces = data.draw(splits(arguments))
        fragments: list[StreamDelta] = [ToolCallDelta(index=index, id=f"id{index}", name=name, arguments=pieces[0])]
        for piece in pieces[1:]:
            fragments.append(
                ToolCallDelta(index=index, id=f"id{index}" if id_on_every_fragment else None, arguments=piece)
            )
        streams.append(fragments)
    deltas = data.draw(interleaved(streams))
    state = fold(data.draw(batched(deltas)))
    first_seen = [i for i in dict.fromkeys(d.index for d in deltas if isinstance(d, ToolCallDelta)) if i is not None]
    assert state.tool_calls == tuple(
        AssembledToolCall(index=i, id=f"id{i}", name=calls[i][0], arguments=calls[i][1]) for i in first_seen
    )


@settings(deadline=None)
@given(data=st.data(), calls=_calls)
def test_interleaved_calls_without_index_are_assembled_by_id(data: st.DataObject, calls: list[tuple[str, str]]) -> None:
    streams: list[list[StreamDelta]] = []
    for k, (name, arguments) in enumerate(calls):
        pieces = data.draw(splits(arguments))
        streams.append(
            [ToolCallDelta(id=f"m{k}", name=name if j == 0 else None, arguments=p) for j, p in enumerate(pieces)]
        )
    deltas = data.draw(interleaved(streams))
    state = fold(data.draw(batched(deltas)))
    first_seen = list(dict.fromkeys(d.id for d in deltas if isinstance(d, ToolCallDelta) and d.id))
    by_id = {f"m{k}": c for k, c in enumerate(calls)}
    assert state.tool_calls == tuple(
        AssembledToolCall(index=None, id=i, name=by_id[i][0], arguments=by_id[i][1]) for i in first_seen
    )


@settings(deadline=None)
@given(data=st.data(), calls=_calls, index=st.integers(min_value=0, max_value=3))
def test_a_new_id_at_a_reused_index_makes_a_new_call(
    data: st.DataObject, calls: list[tuple[str, str]], index: int
) -> None:
    deltas: list[StreamDelta] = []
    for k, (name, arguments) in enumerate(calls):
        pieces = data.draw(splits(arguments))
        deltas.append(ToolCallDelta(index=index, id=f"c{k}", name=name, arguments=pieces[0]))
        deltas.extend(ToolCallDelta(index=index, arguments=p) for p in pieces[1:])
    state = fold(data.draw(batched(deltas)))
    assert state.tool_calls == tuple(
        AssembledToolCall(index=index, id=f"c{k}", name=name, arguments=arguments)
        for k, (name, arguments) in enumerate(calls)
    )


@given(data=st.data(), text=_text)
def test_splitting_a_text_into_random_deltas_and_batches_gives_the_same_text(data: st.DataObject, text: str) -> None:
    deltas: list[StreamDelta] = [TextDelta(text=p) for p in data.draw(splits(text))]
    assert fold(data.draw(batched(deltas))).text == text
    assert fold([deltas]).text == text


@given(data=st.data(), text=_text, reasoning=_text, choice=st.integers(min_value=0, max_value=2))
def test_text_and_reasoning_interleaved_stay_apart(data: st.DataObject, text: str, reasoning: str, choice: int) -> None:
    streams: list[list[StreamDelta]] = [
        [TextDelta(text=p, choice=choice) for p in data.draw(splits(text))],
        [ReasoningDelta(text=p, choice=choice) for p in data.draw(splits(reasoning))],
    ]
    state = fold(data.draw(batched(data.draw(interleaved(streams)))))
    assert (state.choice(choice).text, state.choice(choice).reasoning) == (text, reasoning)


def _any_delta() -> st.SearchStrategy[StreamDelta]:
    choice = st.integers(min_value=0, max_value=2)
    index = st.none() | st.integers(min_value=0, max_value=3)
    ident = st.none() | st.sampled_from(["", "a", "b", "c"])
    return st.one_of(
        st.builds(TextDelta, text=_text, choice=choice),
        st.builds(ReasoningDelta, text=_text, choice=choice),
        st.builds(RefusalDelta, text=st.sampled_from(["", "no"]), choice=choice),
        st.builds(
            ToolCallDelta,
            index=index,
            id=ident,
            name=st.none() | st.sampled_from(["", "f", "g"]),
            arguments=st.none() | _args,
            choice=choice,
        ),
        st.builds(FinishDelta, reason=st.sampled_from(["stop", "tool_calls", "length"]), choice=choice),
        st.builds(
            UsageDelta,
            usage=st.builds(Usage, prompt_tokens=st.integers(min_value=0, max_value=9)),
            raw=st.just({}),
        ),
    )


@settings(deadline=None)
@given(data=st.data(), deltas=st.lists(_any_delta(), max_size=40))
def test_any_batching_of_any_deltas_assembles_the_same(data: st.DataObject, deltas: list[StreamDelta]) -> None:
    one_by_one = fold([[d] for d in deltas])
    all_at_once = fold([deltas] if deltas else [])
    random = fold(data.draw(batched(deltas)))
    assert view(one_by_one) == view(all_at_once) == view(random)
    assert one_by_one.usage == all_at_once.usage == random.usage


@settings(deadline=None)
@given(
    data=st.data(),
    prefix=st.lists(_any_delta(), max_size=15),
    a=st.lists(_any_delta(), min_size=1, max_size=15),
    b=st.lists(_any_delta(), min_size=1, max_size=15),
)
def test_apply_never_changes_the_state_it_is_given(
    data: st.DataObject, prefix: list[StreamDelta], a: list[StreamDelta], b: list[StreamDelta]
) -> None:
    base = fold(data.draw(batched(prefix)))
    before = msgspec.json.encode(base)
    first = apply(base, a)
    apply(base, b)  # a sibling branch from the same parent
    assert apply(base, a) == first
    assert msgspec.json.encode(base) == before
