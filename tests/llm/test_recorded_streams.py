"""Real provider streams (tests/data/streams) decode, normalise and assemble to their ``expected.json`` result.

Each ``.sse`` body goes through :class:`SSEDecoder` (whole, in fixed-size pieces, and cut
at random points), :func:`normalize_sse_payload` and :func:`apply`, and the assembled
state is compared field by field with the documented accumulation rule's result.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oturn.agent.deltas import StreamDelta, StreamErrorDelta
from oturn.agent.stream import ChoiceState, StreamState, apply, end
from oturn.llm.normalize import normalize_sse_payload, usage_from_dict
from oturn.llm.sse import SSEDecoder, SSEEvent

STREAMS = Path(__file__).resolve().parent.parent / "data" / "streams"
EXPECTED: dict[str, Any] = json.loads((STREAMS / "expected.json").read_text(encoding="utf-8"))
FILES = sorted(p.name for p in STREAMS.glob("*.sse"))


class Outcome:
    """Everything one recording produced: the batches of deltas, the error event name, the done marker."""

    def __init__(self) -> None:
        self.batches: list[list[StreamDelta]] = []
        self.done = False
        self.error_event: str | None = None


def decode(pieces: Sequence[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events


def normalise(events: list[SSEEvent]) -> Outcome:
    outcome = Outcome()
    for event in events:
        deltas = normalize_sse_payload(event)
        if deltas is None:
            outcome.done = True  # [DONE] ends the stream
            break
        outcome.batches.append(deltas)
        if any(isinstance(d, StreamErrorDelta) for d in deltas):
            outcome.error_event = event.event
            break  # accumulation stops at the first error payload
    return outcome


def assemble(batches: Sequence[Sequence[StreamDelta]]) -> StreamState:
    state = StreamState()
    for batch in batches:
        state = apply(state, batch)
    return state


def choice_view(c: ChoiceState) -> dict[str, Any]:
    return {
        "content": c.text,
        "reasoning": c.reasoning,
        "refusal": c.refusal,
        "tool_calls": [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in c.tool_calls],
        "finish_reason": c.finish_reason,
    }


def check(name: str, outcome: Outcome, state: StreamState) -> None:
    expected = EXPECTED[name]["expected"]
    got = choice_view(state.choice(0))
    got["usage"] = state.raw_usage
    got["done_marker_seen"] = outcome.done
    for key in ("content", "reasoning", "refusal", "tool_calls", "finish_reason", "usage", "done_marker_seen"):
        assert got[key] == expected[key], f"{name}: {key}"
    if "choices" in expected:
        assert [c.index for c in state.choices] == [c["index"] for c in expected["choices"]]
        for c in expected["choices"]:
            assert choice_view(state.choice(c["index"])) == {k: c[k] for k in choice_view(state.choice(0))}
    else:
        assert [c.index for c in state.choices] == [0]
    check_error(name, expected["error"], outcome, state)
    if expected["usage"] is not None:
        assert state.usage == usage_from_dict(expected["usage"])


def check_error(name: str, expected: dict[str, Any] | None, outcome: Outcome, state: StreamState) -> None:
    if expected is None:
        assert state.error is None, name
        return
    assert state.error is not None, name
    assert outcome.error_event == expected.get("event")
    body = expected["error"]
    assert state.error.kind == "stream_error"
    assert state.error.message.startswith(body["message"])
    if isinstance(body.get("code"), str):
        assert body["code"] in state.error.message
    assert state.error.status == body.get("status_code")
    assert state.error.type == body["type"]


def read(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


def test_every_recording_has_an_expected_result() -> None:
    assert len(FILES) == 16
    assert set(FILES) == set(EXPECTED)


@pytest.mark.parametrize("name", FILES)
def test_recording_assembles_to_the_expected_result(name: str) -> None:
    outcome = normalise(decode([read(name)]))
    check(name, outcome, assemble(outcome.batches))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000])
@pytest.mark.parametrize("name", FILES)
def test_recording_fed_in_fixed_size_pieces_gives_the_same_events(name: str, size: int) -> None:
    raw = read(name)
    whole = decode([raw])
    assert decode([raw[i : i + size] for i in range(0, len(raw), size)]) == whole


@pytest.mark.parametrize("eol", [b"\r\n", b"\r"])
@pytest.mark.parametrize("name", FILES)
def test_recording_with_other_line_ends_gives_the_same_events(name: str, eol: bytes) -> None:
    raw = read(name)
    assert decode([raw.replace(b"\n", eol)]) == decode([raw])


@pytest.mark.parametrize("name", FILES)
def test_recording_assembled_in_one_batch_or_delta_by_delta_gives_the_same_result(name: str) -> None:
    outcome = normalise(decode([read(name)]))
    flat = [d for batch in outcome.batches for d in batch]
    check(name, outcome, assemble([flat]))
    check(name, outcome, assemble([[d] for d in flat]))


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(FILES), seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_recording_cut_and_batched_at_random_assembles_to_the_expected_result(name: str, seed: int) -> None:
    rng = random.Random(seed)
    raw = read(name)
    cuts = sorted(rng.sample(range(1, len(raw)), k=min(len(raw) - 1, rng.randint(1, 200))))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    outcome = normalise(decode(pieces))
    flat = [d for batch in outcome.batches for d in batch]
    batches: list[list[StreamDelta]] = []
    i = 0
    while i < len(flat):
        n = rng.randint(1, 12)
        batches.append(flat[i : i + n])
        i += n
    check(name, outcome, assemble(batches))


def test_expected_tool_calls_are_complete_once_the_stream_ends() -> None:
    for name in FILES:
        outcome = normalise(decode([read(name)]))
        state = end(assemble(outcome.batches))
        expected = EXPECTED[name]["expected"]
        if expected["error"] is None:
            complete = [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in state.complete_tool_calls()]
            assert complete == expected["tool_calls"], name
        else:
            assert state.complete_tool_calls() == (), name
