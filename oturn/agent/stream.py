"""Assemble one model call's stream of deltas into the assistant's message: the pure stream reducer.

``state = apply(state, deltas)`` folds a batch of :mod:`~oturn.agent.deltas` into an
immutable :class:`StreamState`, one per model call (start from ``StreamState()``). Per
choice it keeps the text, reasoning and refusal, the tool calls and the finish reason;
for the call, the last usage reported and the first error. The rules follow the
recorded provider streams (``tests/data/streams/README.md``):

- ``text``, ``reasoning``, ``refusal`` are the concatenation of their deltas; ``None``
  when no delta of that kind came, ``""`` when only empty ones did (an empty refusal is
  no refusal: :meth:`StreamState.message` leaves it out).
- Tool calls, in order of first appearance, are slots keyed by ``index``; a fragment at
  an index in use whose non-empty ``id`` differs from the slot's id starts a new call;
  a fragment without ``index`` is keyed by its ``id`` (Mistral sends whole calls that
  way); one with neither continues the call the previous fragment went to. A slot's
  ``id`` and ``name`` are the first non-empty ones; its arguments are the concatenation
  of every fragment's. Text that arrives beside tool calls is kept.
- ``finish_reason``: the last one given for the choice. ``usage``: the last one given
  (a later chunk without usage never erases it). After an error delta the state stops
  changing: later deltas are ignored.

Long answers stay cheap: text and arguments are kept as a few segments, each more
than twice as long as the next, so appending is amortised O(log n) instead of copying
the whole text for every delta, and a batch of text deltas is joined once. Read the
strings through the properties (``choice.text``, ``call.arguments``, ...). States built
from the same deltas in the same batches are equal (and encode identically with
msgspec); compare ``.text`` to compare content across different batchings.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import msgspec
from msgspec.structs import replace

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

__all__ = ["AssembledToolCall", "ChoiceState", "StreamState", "ToolCallSlot", "apply", "end"]

Segments = tuple[str, ...]

_TRUNCATED = frozenset({"length", "content_filter"})


def _push(segments: Segments | None, piece: str) -> Segments:
    """``segments`` with ``piece`` appended, keeping every segment more than twice as long as the next."""
    if segments is None:
        return (piece,) if piece else ()
    if not piece:
        return segments
    n = len(segments)
    if not n:
        return (piece,)
    size = len(piece)
    if len(segments[-1]) > 2 * size:
        return (*segments, piece)
    k = n - 1
    size += len(segments[k])
    while k and len(segments[k - 1]) <= 2 * size:
        k -= 1
        size += len(segments[k])
    return (*segments[:k], "".join((*segments[k:], piece)))


def _join(segments: Segments | None) -> str | None:
    if segments is None:
        return None
    return segments[0] if len(segments) == 1 else "".join(segments)


class AssembledToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call as assembled so far: ``index`` as the provider gave it (``None`` when it gave none),
    the first non-empty ``id`` and ``name`` (``None`` until one came), and the ``arguments`` text."""

    index: int | None
    id: str | None
    name: str | None
    arguments: str


class ToolCallSlot(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How :class:`ChoiceState` stores a tool call while it streams (arguments as segments).

    Read it as an :class:`AssembledToolCall` through :attr:`ChoiceState.tool_calls`.
    """

    index: int | None = None
    id: str | None = None
    name: str | None = None
    segments: Segments = ()

    def assembled(self) -> AssembledToolCall:
        """This slot as an :class:`AssembledToolCall`."""
        return AssembledToolCall(index=self.index, id=self.id, name=self.name, arguments=_join(self.segments) or "")


class ChoiceState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one choice (``index``) of the call has streamed so far.

    ``last_slot`` is the position of the tool call the latest fragment went to (where a
    fragment with neither index nor id continues), ``-1`` before any.
    """

    index: int = 0
    text_segments: Segments | None = None
    reasoning_segments: Segments | None = None
    refusal_segments: Segments | None = None
    slots: tuple[ToolCallSlot, ...] = ()
    last_slot: int = -1
    finish_reason: str | None = None

    @property
    def text(self) -> str | None:
        """The answer text (``None``: no content delta came; ``""``: only empty ones)."""
        return _join(self.text_segments)

    @property
    def reasoning(self) -> str | None:
        """The reasoning text (``None`` when the provider sent none)."""
        return _join(self.reasoning_segments)

    @property
    def refusal(self) -> str | None:
        """The refusal text (``None`` when never seen, ``""`` when only empty: not a refusal)."""
        return _join(self.refusal_segments)

    @property
    def tool_calls(self) -> tuple[AssembledToolCall, ...]:
        """The tool calls in order of first appearance."""
        return tuple(slot.assembled() for slot in self.slots)

    @property
    def truncated(self) -> bool:
        """The provider cut this choice short (``finish_reason`` ``length`` or ``content_filter``)."""
        return self.finish_reason in _TRUNCATED


_EMPTY_CHOICE = ChoiceState()


class StreamState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One model call's stream, assembled: ``choices`` (sorted by index), the last ``usage``
    (and the provider's ``raw_usage`` object), the first ``error``, and ``ended`` once
    :func:`end` said the stream finished.

    The properties ``text``, ``reasoning``, ``refusal``, ``tool_calls`` and
    ``finish_reason`` read choice 0, the one the agent follows.
    """

    choices: tuple[ChoiceState, ...] = ()
    usage: Usage | None = None
    raw_usage: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    ended: bool = False

    def choice(self, index: int = 0) -> ChoiceState:
        """The state of choice ``index`` (an empty one if nothing came for it)."""
        for c in self.choices:
            if c.index == index:
                return c
        return _EMPTY_CHOICE if index == 0 else ChoiceState(index=index)

    @property
    def text(self) -> str | None:
        """Choice 0's answer text (see :attr:`ChoiceState.text`)."""
        return self.choice(0).text

    @property
    def reasoning(self) -> str | None:
        """Choice 0's reasoning."""
        return self.choice(0).reasoning

    @property
    def refusal(self) -> str | None:
        """Choice 0's refusal."""
        return self.choice(0).refusal

    @property
    def tool_calls(self) -> tuple[AssembledToolCall, ...]:
        """Choice 0's tool calls, in order of first appearance."""
        return self.choice(0).tool_calls

    @property
    def finish_reason(self) -> str | None:
        """Choice 0's finish reason (``None``: not given, or not yet)."""
        return self.choice(0).finish_reason

    def complete_tool_calls(self, choice: int = 0) -> tuple[AssembledToolCall, ...]:
        """The tool calls of ``choice`` known to be fully streamed, safe to run.

        A fragment is only known to be a call's last once the choice is over, so this is
        every call once the choice has a ``finish_reason`` or the stream :func:`end`-ed, and
        none before. It is none, too, after an error and when the choice was truncated
        (``length``, ``content_filter``): half-streamed calls never run.
        """
        if self.error is not None:
            return ()
        c = self.choice(choice)
        if c.finish_reason is None and not self.ended:
            return ()
        if c.truncated:
            return ()
        return c.tool_calls

    def message(
        self, choice: int = 0, *, include_reasoning: bool = False, id_prefix: str = "oturn_call_"
    ) -> dict[str, Any]:
        """The assistant message of ``choice`` in the OpenAI chat format (what LiteLLM takes).

        ``content`` is the text (``None`` when it is empty and there are tool calls);
        ``tool_calls`` (when any) have ``type: "function"``; a call that never got an id
        is given ``f"{id_prefix}{position}"``; a non-empty refusal is kept as ``refusal``;
        with ``include_reasoning`` the reasoning goes in ``reasoning_content``.
        """
        c = self.choice(choice)
        text = c.text or ""
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if c.slots:
            if not text:
                message["content"] = None
            message["tool_calls"] = [
                {
                    "id": call.id or f"{id_prefix}{position}",
                    "type": "function",
                    "function": {"name": call.name or "", "arguments": call.arguments},
                }
                for position, call in enumerate(c.tool_calls)
            ]
        refusal = c.refusal
        if refusal:
            message["refusal"] = refusal
        if include_reasoning:
            reasoning = c.reasoning
            if reasoning:
                message["reasoning_content"] = reasoning
        return message


def end(state: StreamState) -> StreamState:
    """Mark the stream as finished normally (the provider closed it, or sent ``[DONE]``)."""
    return state if state.ended else replace(state, ended=True)


def apply(state: StreamState, deltas: Sequence[StreamDelta]) -> StreamState:
    """Fold a batch of deltas, in order, into ``state``; return the new state (``state`` is unchanged).

    After an error (in an earlier batch, or earlier in this one) the rest is ignored.
    """
    if state.error is not None or not deltas:
        return state
    first = deltas[0]
    if type(first) is TextDelta:
        if len(deltas) == 1:
            return _add_text(state, first.choice, first.text)
        choice = first.choice
        for d in deltas:
            if type(d) is not TextDelta or d.choice != choice:
                break
        else:
            return _add_text(state, choice, "".join([d.text for d in cast("Sequence[TextDelta]", deltas)]))
    return _Batch(state).run(deltas)


def _find(choices: tuple[ChoiceState, ...], index: int) -> int:
    for position, c in enumerate(choices):
        if c.index == index:
            return position
    return -1


def _with_choice(state: StreamState, position: int, new: ChoiceState) -> StreamState:
    choices = state.choices
    if position < 0:
        merged = sorted((*choices, new), key=_by_index)
        return replace(state, choices=tuple(merged))
    if len(choices) == 1:
        return replace(state, choices=(new,))
    return replace(state, choices=(*choices[:position], new, *choices[position + 1 :]))


def _by_index(c: ChoiceState) -> int:
    return c.index


def _add_text(state: StreamState, index: int, text: str) -> StreamState:
    choices = state.choices
    if choices and choices[0].index == index:
        c = choices[0]
        return _with_choice(state, 0, replace(c, text_segments=_push(c.text_segments, text)))
    position = _find(choices, index)
    c = choices[position] if position >= 0 else ChoiceState(index=index)
    return _with_choice(state, position, replace(c, text_segments=_push(c.text_segments, text)))


class _Slot:
    """A tool-call slot being changed by the current batch (scratch; never escapes :func:`apply`)."""

    __slots__ = ("id", "index", "name", "pieces", "segments")

    def __init__(self, index: int | None, id: str | None, name: str | None, segments: Segments) -> None:
        self.index = index
        self.id = id
        self.name = name
        self.segments = segments
        self.pieces: list[str] = []

    def freeze(self) -> ToolCallSlot:
        segments = _push(self.segments, "".join(self.pieces)) if self.pieces else self.segments
        return ToolCallSlot(index=self.index, id=self.id, name=self.name, segments=segments)


class _Choice:
    """The changes the current batch makes to one choice (scratch; never escapes :func:`apply`)."""

    __slots__ = ("base", "finish", "last", "reasoning", "refusal", "slots", "text")

    def __init__(self, base: ChoiceState) -> None:
        self.base = base
        self.text: list[str] | None = None
        self.reasoning: list[str] | None = None
        self.refusal: list[str] | None = None
        self.slots: list[ToolCallSlot | _Slot] | None = None
        self.last = base.last_slot
        self.finish = base.finish_reason

    def tool(self, d: ToolCallDelta) -> None:
        slots = self.slots
        if slots is None:
            slots = self.slots = list(self.base.slots)
        call_id = d.id or None
        position = self._locate(slots, d.index, call_id)
        if position < 0:
            slot = _Slot(d.index, call_id, d.name or None, ())
            slots.append(slot)
            position = len(slots) - 1
        else:
            found = slots[position]
            if isinstance(found, _Slot):
                slot = found
            else:
                slot = slots[position] = _Slot(found.index, found.id, found.name, found.segments)
            if slot.id is None and call_id is not None:
                slot.id = call_id
            if slot.name is None and d.name:
                slot.name = d.name
        if d.arguments:
            slot.pieces.append(d.arguments)
        self.last = position

    def _locate(self, slots: list[ToolCallSlot | _Slot], index: int | None, call_id: str | None) -> int:
        if index is not None:
            for position in range(len(slots) - 1, -1, -1):
                slot = slots[position]
                if slot.index == index:
                    if call_id is not None and slot.id is not None and slot.id != call_id:
                        return -1  # a new id at a reused index is a new call
                    return position
            return -1
        if call_id is not None:
            for position in range(len(slots) - 1, -1, -1):
                if slots[position].id == call_id:
                    return position
            return -1
        return self.last if 0 <= self.last < len(slots) else -1

    def freeze(self) -> ChoiceState:
        base = self.base
        return ChoiceState(
            index=base.index,
            text_segments=base.text_segments if self.text is None else _push(base.text_segments, "".join(self.text)),
            reasoning_segments=base.reasoning_segments
            if self.reasoning is None
            else _push(base.reasoning_segments, "".join(self.reasoning)),
            refusal_segments=base.refusal_segments
            if self.refusal is None
            else _push(base.refusal_segments, "".join(self.refusal)),
            slots=base.slots
            if self.slots is None
            else tuple(s.freeze() if isinstance(s, _Slot) else s for s in self.slots),
            last_slot=self.last,
            finish_reason=self.finish,
        )


class _Batch:
    """One general :func:`apply` (scratch; never escapes it)."""

    __slots__ = ("choices", "state")

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self.choices: dict[int, _Choice] = {}

    def _choice(self, index: int) -> _Choice:
        b = self.choices.get(index)
        if b is None:
            position = _find(self.state.choices, index)
            base = self.state.choices[position] if position >= 0 else ChoiceState(index=index)
            b = self.choices[index] = _Choice(base)
        return b

    def run(self, deltas: Sequence[StreamDelta]) -> StreamState:
        state = self.state
        usage, raw_usage, error = state.usage, state.raw_usage, None
        last_index, last = -1, None  # most batches are all choice 0: skip the lookup
        for d in deltas:
            kind = type(d)
            if kind is TextDelta or kind is ReasoningDelta or kind is RefusalDelta or kind is ToolCallDelta:
                index = d.choice  # type: ignore[attr-defined]
                if index == last_index and last is not None:
                    b = last
                else:
                    b = last = self._choice(index)
                    last_index = index
                if kind is TextDelta:
                    if b.text is None:
                        b.text = [d.text]  # type: ignore[attr-defined]
                    else:
                        b.text.append(d.text)  # type: ignore[attr-defined]
                elif kind is ToolCallDelta:
                    b.tool(d)  # type: ignore[arg-type]
                elif kind is ReasoningDelta:
                    if b.reasoning is None:
                        b.reasoning = [d.text]  # type: ignore[attr-defined]
                    else:
                        b.reasoning.append(d.text)  # type: ignore[attr-defined]
                elif b.refusal is None:
                    b.refusal = [d.text]  # type: ignore[attr-defined]
                else:
                    b.refusal.append(d.text)  # type: ignore[attr-defined]
            elif isinstance(d, FinishDelta):
                self._choice(d.choice).finish = d.reason
            elif isinstance(d, UsageDelta):
                usage, raw_usage = d.usage, d.raw
            elif isinstance(d, StreamErrorDelta):
                error = d.error
                break
        choices = state.choices
        if self.choices:
            merged = {c.index: c for c in choices}
            for index, b in self.choices.items():
                merged[index] = b.freeze()
            choices = tuple(sorted(merged.values(), key=_by_index)) if len(merged) > 1 else tuple(merged.values())
        return StreamState(choices=choices, usage=usage, raw_usage=raw_usage, error=error, ended=state.ended)
