"""OpenAI-style streaming chunks, as providers really send them, into :mod:`oturn.agent.deltas`.

:func:`normalize_chunk` takes one ``chat.completion.chunk`` as a mapping (parsed from
the wire, or a LiteLLM chunk's ``model_dump()``) and returns its deltas in order: per
choice reasoning, content, refusal, tool-call fragments and the finish reason; then the
chunk's usage. It copes with what recorded streams show (``tests/data/streams``):

- reasoning in ``reasoning_content`` (DeepSeek, xAI, LiteLLM), ``reasoning`` (Groq,
  OpenRouter), or — only when the delta has neither — ``reasoning_details``
  (``reasoning.text`` → its ``text``, ``reasoning.summary`` → its ``summary``; Snowflake);
- ``content`` given as a list of typed parts (Mistral Magistral): ``thinking`` parts are
  reasoning, ``text`` parts are content;
- empty strings are kept (``content: ""`` still says the field appeared; the assembler
  mirrors that as ``""`` rather than ``None``) — an empty ``refusal`` is no refusal, but is
  kept the same way so the state can tell "never seen" from "seen empty";
- tool-call fragments without ``index``, ``type``, ``id`` or ``arguments``; an empty
  ``id``/``name`` is treated as absent; non-string ``arguments`` are JSON-encoded;
- ``usage`` in any chunk (also beside choices); ``usage: null`` gives nothing;
- choices with ``index > 0`` (``n > 1``);
- an ``error`` key (also in a chunk with choices) → one :class:`StreamErrorDelta` and
  nothing else from that payload;
- payloads whose ``object`` is present but is not ``chat.completion.chunk`` (Azure's
  leading ``prompt_filter_results`` event, OpenAI's moderation objects) are skipped.

:func:`normalize_sse_payload` does the same for one :class:`~oturn.llm.sse.SSEEvent`:
``[DONE]`` gives ``None``, the data is parsed with msgspec, ``event: error`` frames are
errors whatever they hold, and undecodable data raises :class:`~oturn.StreamDecodeError`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from oturn._exceptions import StreamDecodeError
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
from oturn.agent.usage import Usage
from oturn.core.builtins import ErrorInfo
from oturn.llm.sse import SSEEvent

__all__ = ["error_info", "normalize_chunk", "normalize_sse_payload", "usage_from_dict"]

_CHUNK = "chat.completion.chunk"
_DONE = "[DONE]"
_EXCERPT = 200

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


def normalize_chunk(payload: Mapping[str, Any]) -> list[StreamDelta]:
    """The deltas of one streamed chat-completion chunk (possibly none)."""
    error = payload.get("error")
    if error is not None:
        return [StreamErrorDelta(error=error_info(error))]
    obj = payload.get("object")
    if obj is not None and obj != _CHUNK:
        return []
    out: list[StreamDelta] = []
    choices = payload.get("choices")
    if choices:
        for choice in choices:
            _choice(choice, out)
    usage = payload.get("usage")
    if type(usage) is dict or isinstance(usage, Mapping):
        out.append(UsageDelta(usage=usage_from_dict(usage), raw=usage if type(usage) is dict else dict(usage)))
    return out


def _choice(choice: Mapping[str, Any], out: list[StreamDelta]) -> None:
    index = choice.get("index") or 0
    delta = choice.get("delta")
    if delta:
        reasoning = delta.get("reasoning_content")
        if reasoning is None:
            reasoning = delta.get("reasoning")
            if reasoning is None:
                details = delta.get("reasoning_details")
                if details:
                    reasoning = _reasoning_details(details)
        if type(reasoning) is str:
            out.append(ReasoningDelta(text=reasoning, choice=index))
        content = delta.get("content")
        if content is not None:
            if type(content) is str:
                out.append(TextDelta(text=content, choice=index))
            elif isinstance(content, list):
                _content_parts(content, index, out)
        refusal = delta.get("refusal")
        if type(refusal) is str:
            out.append(RefusalDelta(text=refusal, choice=index))
        calls = delta.get("tool_calls")
        if calls:
            for call in calls:
                out.append(_tool_call(call, index))
    reason = choice.get("finish_reason")
    if reason is not None:
        out.append(FinishDelta(reason=str(reason), choice=index))


def _reasoning_details(details: Any) -> str | None:
    """Text of ``reasoning.text`` entries and summaries of ``reasoning.summary`` ones (others are opaque)."""
    if not isinstance(details, list):
        return None
    pieces: list[str] = []
    for item in details:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        text = (
            item.get("text")
            if kind == "reasoning.text"
            else item.get("summary")
            if kind == "reasoning.summary"
            else None
        )
        if type(text) is str:
            pieces.append(text)
    return "".join(pieces) if pieces else None


def _content_parts(parts: list[Any], index: int, out: list[StreamDelta]) -> None:
    """Mistral-style typed content parts: ``text`` → content, ``thinking`` → reasoning (in order)."""
    for part in parts:
        if isinstance(part, str):
            out.append(TextDelta(text=part, choice=index))
            continue
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if type(text) is str:
                out.append(TextDelta(text=text, choice=index))
        elif kind == "thinking":
            thinking = part.get("thinking")
            if type(thinking) is str:
                out.append(ReasoningDelta(text=thinking, choice=index))
            elif isinstance(thinking, list):
                texts = [t.get("text") for t in thinking if isinstance(t, Mapping)]
                out.append(ReasoningDelta(text="".join(t for t in texts if type(t) is str), choice=index))


def _tool_call(call: Mapping[str, Any], choice: int) -> ToolCallDelta:
    index = call.get("index")
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if arguments is not None and type(arguments) is not str:
        arguments = _encode_json(arguments).decode()
    return ToolCallDelta(
        index=index if type(index) is int else None,
        id=call.get("id") or None,
        name=function.get("name") or None,
        arguments=arguments,
        choice=choice,
    )


def _int(value: Any) -> int:
    return value if type(value) is int else int(value) if isinstance(value, float) else 0


def usage_from_dict(raw: Mapping[str, Any]) -> Usage:
    """Map an OpenAI-style ``usage`` object into :class:`~oturn.agent.usage.Usage` (one call).

    ``completion_tokens_details.reasoning_tokens`` → ``reasoning_tokens``;
    ``prompt_tokens_details.cached_tokens`` (or DeepSeek's ``prompt_cache_hit_tokens``)
    → ``cached_tokens``; a numeric ``cost`` (OpenRouter) → ``cost``; missing
    ``total_tokens`` is prompt + completion.
    """
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    total = raw.get("total_tokens")
    completion_details = raw.get("completion_tokens_details")
    prompt_details = raw.get("prompt_tokens_details")
    cached: Any = prompt_details.get("cached_tokens") if isinstance(prompt_details, Mapping) else None
    if cached is None:
        cached = raw.get("prompt_cache_hit_tokens")
    cost = raw.get("cost")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=_int(total) if total is not None else prompt + completion,
        reasoning_tokens=_int(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, Mapping)
        else 0,
        cached_tokens=_int(cached),
        cost=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        calls=1,
    )


def _status(value: Any) -> int | None:
    if type(value) is int and 100 <= value <= 599:
        return value
    if type(value) is str and len(value) == 3 and value.isdigit() and value[0] in "12345":
        return int(value)
    return None


def error_info(error: Any) -> ErrorInfo:
    """Describe a provider's in-stream ``error`` value (an object, or just a message) as :class:`ErrorInfo`.

    ``kind`` is ``"stream_error"``; ``status`` comes from an HTTP-like ``code`` (or from
    ``status_code``/``status``); a string ``code`` is kept in the message
    (``"... (code: tool_use_failed)"``); ``type`` is the provider's error ``type``, or
    ``"stream_error"``.
    """
    if isinstance(error, Mapping):
        message = error.get("message")
        code = error.get("code")
        kind = error.get("type")
        status = _status(code)
        if status is None:
            status = _status(error.get("status_code")) or _status(error.get("status"))
        text = message if isinstance(message, str) and message else _encode_json(dict(error)).decode()
        if code is not None and _status(code) is None:
            text = f"{text} (code: {code})"
        return ErrorInfo(
            type=kind if isinstance(kind, str) and kind else "stream_error",
            message=text,
            kind="stream_error",
            status=status,
        )
    text = error if isinstance(error, str) else _encode_json(error).decode()
    return ErrorInfo(type="stream_error", message=text or "error", kind="stream_error")


def _excerpt(data: str) -> str:
    return repr(data if len(data) <= _EXCERPT else data[:_EXCERPT] + "...")


def normalize_sse_payload(event: SSEEvent) -> list[StreamDelta] | None:
    """The deltas of one SSE event of a chat-completions stream; ``None`` for the ``[DONE]`` marker.

    An ``event: error`` frame is an error whatever its data (JSON with or without an
    ``error`` key, or plain text). Blank data (a keep-alive) gives no deltas. Data that is
    not a JSON object raises :class:`~oturn.StreamDecodeError`.
    """
    data = event.data
    if data == _DONE or (len(data) < 16 and data.strip() == _DONE):
        return None
    is_error = event.event == "error"
    if not data or data.isspace():
        return [StreamErrorDelta(error=error_info("error event without data"))] if is_error else []
    try:
        payload = _decode_json(data)
    except msgspec.DecodeError as exc:
        if is_error:
            return [StreamErrorDelta(error=error_info(data))]
        raise StreamDecodeError(f"stream payload is not valid JSON ({exc}): {_excerpt(data)}") from exc
    if not isinstance(payload, dict):
        if is_error:
            return [StreamErrorDelta(error=error_info(payload))]
        raise StreamDecodeError(f"stream payload is not a JSON object: {_excerpt(data)}")
    if is_error:
        error = payload.get("error")
        return [StreamErrorDelta(error=error_info(payload if error is None else error))]
    return normalize_chunk(payload)
