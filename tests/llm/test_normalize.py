"""One provider chunk (or SSE event) becomes the right normalised deltas, whatever quirk it has."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import oturn
from oturn import ProviderError, StreamDecodeError
from oturn.agent.deltas import (
    FinishDelta,
    ReasoningDelta,
    RefusalDelta,
    StreamErrorDelta,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
)
from oturn.agent.usage import Usage
from oturn.llm import SSEEvent, error_info, normalize_chunk, normalize_sse_payload, usage_from_dict


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "choices": list(choices), **top}


def delta(index: int = 0, finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish_reason}


def test_string_content_becomes_a_text_delta() -> None:
    assert normalize_chunk(chunk(delta(content="Hi"))) == [TextDelta(text="Hi")]


def test_empty_content_is_kept_as_an_empty_text_delta_and_null_content_gives_nothing() -> None:
    assert normalize_chunk(chunk(delta(role="assistant", content=""))) == [TextDelta(text="")]
    assert normalize_chunk(chunk(delta(role="assistant", content=None))) == []


def test_reasoning_content_is_preferred_over_reasoning() -> None:
    assert normalize_chunk(chunk(delta(reasoning_content="a", reasoning="b"))) == [ReasoningDelta(text="a")]
    assert normalize_chunk(chunk(delta(reasoning="b", channel="analysis"))) == [ReasoningDelta(text="b")]


def test_reasoning_details_count_only_when_the_delta_has_neither_reasoning_field() -> None:
    details = [
        {"type": "reasoning.text", "text": "think", "format": "anthropic-claude-v1"},
        {"type": "reasoning.summary", "summary": " sum"},
        {"type": "reasoning.encrypted", "data": "opaque"},
    ]
    assert normalize_chunk(chunk(delta(reasoning_details=details))) == [ReasoningDelta(text="think sum")]
    assert normalize_chunk(chunk(delta(reasoning="r", reasoning_details=details))) == [ReasoningDelta(text="r")]
    assert normalize_chunk(chunk(delta(reasoning_details=[{"type": "reasoning.encrypted", "data": "x"}]))) == []


def test_mistral_content_parts_split_into_reasoning_and_text_in_order() -> None:
    parts = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}, {"type": "text", "text": "!"}]},
        {"type": "text", "text": "answer"},
        {"type": "image_url", "image_url": "ignored"},
        {"type": "thinking", "thinking": []},
    ]
    assert normalize_chunk(chunk(delta(content=parts))) == [
        ReasoningDelta(text="hmm!"),
        TextDelta(text="answer"),
        ReasoningDelta(text=""),
    ]


def test_refusal_deltas_keep_empty_strings_and_skip_null() -> None:
    assert normalize_chunk(chunk(delta(content=None, refusal="No."))) == [RefusalDelta(text="No.")]
    assert normalize_chunk(chunk(delta(refusal=""))) == [RefusalDelta(text="")]
    assert normalize_chunk(chunk(delta(refusal=None))) == []


def test_tool_call_fragments_keep_what_they_have_and_treat_empty_id_and_name_as_absent() -> None:
    calls = [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"a"'}},
        {"id": "mistral", "function": {"name": "g", "arguments": "{}"}},
        {"index": 1, "id": "", "function": {"name": ""}},
        {"index": 2, "function": {"name": "h", "arguments": {"x": 1}}},
    ]
    assert normalize_chunk(chunk(delta(content=None, tool_calls=calls))) == [
        ToolCallDelta(index=0, id="call_1", name="f", arguments=""),
        ToolCallDelta(index=0, arguments='{"a"'),
        ToolCallDelta(id="mistral", name="g", arguments="{}"),
        ToolCallDelta(index=1),
        ToolCallDelta(index=2, name="h", arguments='{"x":1}'),
    ]


def test_finish_reason_and_usage_in_the_same_chunk_come_after_the_choice_deltas() -> None:
    usage = {"prompt_tokens": 124, "total_tokens": 146, "completion_tokens": 22}
    out = normalize_chunk(chunk(delta(content="x", finish_reason="tool_calls"), usage=usage))
    assert out == [
        TextDelta(text="x"),
        FinishDelta(reason="tool_calls"),
        UsageDelta(usage=Usage(prompt_tokens=124, completion_tokens=22, total_tokens=146, calls=1), raw=usage),
    ]


def test_null_usage_gives_no_usage_delta() -> None:
    assert normalize_chunk(chunk(delta(content="x"), usage=None)) == [TextDelta(text="x")]
    assert normalize_chunk(chunk(usage=None)) == []


def test_usage_only_chunk_with_empty_choices_gives_one_usage_delta() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    out = normalize_chunk(chunk(usage=usage))
    assert len(out) == 1
    assert isinstance(out[0], UsageDelta)
    assert out[0].raw == usage


def test_choices_other_than_zero_are_labelled() -> None:
    out = normalize_chunk(chunk(delta(index=2, content="c", finish_reason="stop")))
    assert out == [TextDelta(text="c", choice=2), FinishDelta(reason="stop", choice=2)]


def test_usage_maps_reasoning_cached_cost_and_fills_a_missing_total() -> None:
    assert usage_from_dict(
        {
            "prompt_tokens": 339,
            "completion_tokens": 83,
            "total_tokens": 422,
            "prompt_tokens_details": {"cached_tokens": 320},
            "completion_tokens_details": {"reasoning_tokens": 39},
            "cost": 5.952e-05,
        }
    ) == Usage(
        prompt_tokens=339,
        completion_tokens=83,
        total_tokens=422,
        reasoning_tokens=39,
        cached_tokens=320,
        cost=5.952e-05,
        calls=1,
    )
    assert usage_from_dict({"prompt_tokens": 2, "completion_tokens": 3, "prompt_cache_hit_tokens": 1}) == Usage(
        prompt_tokens=2, completion_tokens=3, total_tokens=5, cached_tokens=1, calls=1
    )
    assert usage_from_dict({"completion_tokens_details": None, "prompt_tokens_details": None}) == Usage(calls=1)


def test_an_error_key_anywhere_gives_only_a_stream_error() -> None:
    payload = chunk(
        delta(content="lost"),
        error={"message": "Overloaded", "type": "server_error", "code": 529},
        usage={"prompt_tokens": 1},
    )
    out = normalize_chunk(payload)
    assert len(out) == 1
    assert isinstance(out[0], StreamErrorDelta)
    info = out[0].error
    assert (info.kind, info.type, info.message, info.status) == ("stream_error", "server_error", "Overloaded", 529)


def test_a_string_error_code_is_kept_in_the_message_and_status_code_gives_the_status() -> None:
    info = error_info(
        {"message": "No tool", "type": "invalid_request_error", "code": "tool_use_failed", "status_code": 400}
    )
    assert info.message == "No tool (code: tool_use_failed)"
    assert info.status == 400
    assert error_info("plain text").message == "plain text"
    assert error_info({"code": "x"}).message == '{"code":"x"} (code: x)'


def test_payloads_of_another_object_type_are_skipped() -> None:
    azure = {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [{}]}
    assert normalize_chunk(azure) == []
    assert normalize_chunk({"object": "chat.completion", "choices": [delta(content="x")]}) == []
    assert normalize_chunk({"choices": [delta(content="no object key")]}) == [TextDelta(text="no object key")]


def test_a_litellm_model_dump_is_understood() -> None:
    dumped = {
        "id": "chatcmpl-1",
        "created": 1,
        "model": "gpt-4o",
        "object": "chat.completion.chunk",
        "system_fingerprint": None,
        "choices": [
            {
                "finish_reason": None,
                "index": 0,
                "delta": {
                    "provider_specific_fields": None,
                    "refusal": None,
                    "content": None,
                    "role": None,
                    "function_call": None,
                    "tool_calls": [
                        {"id": None, "function": {"arguments": '{"q":', "name": None}, "type": "function", "index": 0}
                    ],
                    "audio": None,
                    "reasoning_content": None,
                },
                "logprobs": None,
            }
        ],
        "provider_specific_fields": None,
    }
    assert normalize_chunk(dumped) == [ToolCallDelta(index=0, arguments='{"q":')]


def test_done_marker_gives_none() -> None:
    assert normalize_sse_payload(SSEEvent(None, "[DONE]")) is None
    assert normalize_sse_payload(SSEEvent(None, " [DONE] ")) is None


def test_sse_payload_is_parsed_and_normalised() -> None:
    event = SSEEvent(None, '{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\u00d7"}}]}')
    assert normalize_sse_payload(event) == [TextDelta(text="\u00d7")]


def test_blank_data_is_a_keep_alive() -> None:
    assert normalize_sse_payload(SSEEvent(None, "")) == []
    assert normalize_sse_payload(SSEEvent(None, " \n")) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"error":{"message":"boom","code":"tool_use_failed"}}', "boom (code: tool_use_failed)"),
        ('{"message":"no error key"}', "no error key"),
        ("upstream exploded", "upstream exploded"),
        ('["not", "an", "object"]', '["not","an","object"]'),
        ("", "error event without data"),
    ],
)
def test_an_error_event_is_an_error_whatever_its_data(data: str, message: str) -> None:
    out = normalize_sse_payload(SSEEvent("error", data))
    assert out is not None
    assert len(out) == 1
    assert isinstance(out[0], StreamErrorDelta)
    assert out[0].error.message == message
    assert out[0].error.kind == "stream_error"


@pytest.mark.parametrize("data", ['{"choices": [', "not json", "[1, 2]", '"text"'])
def test_undecodable_data_raises_stream_decode_error(data: str) -> None:
    with pytest.raises(StreamDecodeError) as caught:
        normalize_sse_payload(SSEEvent(None, data))
    assert isinstance(caught.value, ProviderError)
    assert repr(data[:10]).strip("'") in str(caught.value)


def test_stream_decode_error_is_public_and_a_provider_error() -> None:
    assert oturn.StreamDecodeError is StreamDecodeError
    assert "StreamDecodeError" in oturn.__all__
    assert issubclass(StreamDecodeError, ProviderError)


def test_importing_oturn_llm_does_not_import_litellm() -> None:
    code = "import sys, oturn.llm; print('litellm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
