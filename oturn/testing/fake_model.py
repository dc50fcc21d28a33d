"""``FakeModel``: a scripted model for tests, examples and the offline demo.

::

    model = FakeModel([
        [FakeModel.reasoning("The user wants weather."), FakeModel.text("Let me check."),
         FakeModel.tool_call("get_weather", {"city": "Tokyo"}, fragments=5), FakeModel.usage(12, 30)],
        [FakeModel.text("It is sunny in Tokyo.")],
    ])
    agent = oturn.Agent(model, tools=[get_weather])
    ...
    model.assert_complete()       # every scripted response was used

Each model call takes the next response (a list of items, or a callable
``CallModel -> list of items`` for responses that depend on the request). Items
stream in order; everything between two :meth:`delay` items is yielded as one batch
(it was "ready together"), or one delta per batch with ``batch=False`` (as a network
stream would). :meth:`delay` waits on the given clock (a
:class:`~oturn.testing.FakeClock` in tests). :meth:`fail` raises a
:class:`~oturn.ProviderError` at that point of the stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
import msgspec

from oturn._exceptions import ProviderError, UsageError
from oturn.agent.deltas import (
    FinishDelta,
    ReasoningDelta,
    StreamDelta,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
)
from oturn.agent.effects import CallModel
from oturn.agent.usage import Usage
from oturn.runtime.clock import Clock

__all__ = ["FakeModel", "FakeModelError"]


class FakeModelError(UsageError, AssertionError):
    """The script and the calls disagree: more calls than responses, or responses left over."""


class _Delay(msgspec.Struct, frozen=True):
    seconds: float


class _Fail(msgspec.Struct, frozen=True):
    message: str
    status: int | None
    retry_after: float | None


Item = StreamDelta | _Delay | _Fail | Sequence[StreamDelta]
Response = Sequence[Item] | Callable[[CallModel], Sequence[Item]]


def _split(text: str, chunks: int | None) -> list[str]:
    if not text:
        return [text]
    if chunks is None:  # word by word, spaces kept with the word after them
        pieces: list[str] = []
        start = 0
        for i in range(1, len(text)):
            if text[i] == " " and text[i - 1] != " ":
                pieces.append(text[start:i])
                start = i
        pieces.append(text[start:])
        return pieces
    chunks = max(1, min(chunks, len(text)))
    size, extra = divmod(len(text), chunks)
    out, start = [], 0
    for i in range(chunks):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


class FakeModel:
    """A :class:`~oturn.agent.model.Model` that streams a script. See the module docstring."""

    name = "fake"

    def __init__(
        self,
        responses: Sequence[Response] = (),
        *,
        clock: Clock | None = None,
        batch: bool = True,
        name: str = "fake",
    ) -> None:
        self._responses: list[Response] = list(responses)
        self._next = 0
        self._clock = clock
        self._batch = batch
        self.name = name
        self.calls: list[CallModel] = []
        self._compiled = {i: self._compile(r) for i, r in enumerate(self._responses) if not callable(r)}

    # -- script items ---------------------------------------------------------------------

    @staticmethod
    def text(text: str, *, chunks: int | None = None) -> list[StreamDelta]:
        """Answer text, split word by word (or into ``chunks`` pieces)."""
        return [TextDelta(text=piece) for piece in _split(text, chunks)]

    @staticmethod
    def reasoning(text: str, *, chunks: int | None = None) -> list[StreamDelta]:
        """Reasoning text, split like :meth:`text`."""
        return [ReasoningDelta(text=piece) for piece in _split(text, chunks)]

    @staticmethod
    def tool_call(
        name: str,
        arguments: dict[str, Any] | str,
        *,
        id: str | None = None,
        index: int | None = None,
        fragments: int = 1,
    ) -> list[StreamDelta]:
        """A tool call whose JSON arguments arrive in ``fragments`` pieces (id and name with the first).

        ``index`` defaults to the number of tool calls before it in the response.
        """
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        pieces = _split(text, fragments) if text else [""]
        deltas: list[StreamDelta] = [ToolCallDelta(index=index, id=id, name=name, arguments=pieces[0])]
        deltas.extend(ToolCallDelta(index=index, arguments=piece) for piece in pieces[1:])
        return deltas

    @staticmethod
    def usage(prompt_tokens: int, completion_tokens: int, *, cost: float | None = None) -> list[StreamDelta]:
        """Token usage for the call."""
        return [
            UsageDelta(
                usage=Usage(
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    total_tokens=prompt_tokens + completion_tokens,
                    cost=cost,
                )
            )
        ]

    @staticmethod
    def finish(reason: str) -> list[StreamDelta]:
        """A ``finish_reason`` (``stop``, ``tool_calls``, ``length``, ...)."""
        return [FinishDelta(reason=reason)]

    @staticmethod
    def delay(seconds: float) -> _Delay:
        """Wait ``seconds`` on the model's clock before streaming on."""
        return _Delay(seconds)

    @staticmethod
    def fail(message: str = "provider failed", *, status: int | None = 500, retry_after: float | None = None) -> _Fail:
        """Raise :class:`~oturn.ProviderError` here (after what came before was streamed)."""
        return _Fail(message, status, retry_after)

    # -- the Model protocol ---------------------------------------------------------------

    async def stream(self, call: CallModel, /) -> AsyncIterator[Sequence[StreamDelta]]:
        """Stream the next scripted response."""
        self.calls.append(call)
        if self._next >= len(self._responses):
            raise FakeModelError(
                f"FakeModel got model call #{len(self.calls)} ({call.key}) but has only {len(self._responses)}"
                " scripted responses"
            )
        response = self._responses[self._next]
        self._next += 1
        steps = self._compiled.get(self._next - 1)
        if steps is None:
            steps = self._compile(response(call) if callable(response) else response)
        for step in steps:
            if type(step) is tuple:
                yield step
            elif isinstance(step, _Delay):
                await self._sleep(step.seconds)
            else:
                assert isinstance(step, _Fail)
                raise ProviderError(step.message, status=step.status, retry_after=step.retry_after)

    def _compile(self, items: Sequence[Item]) -> list[tuple[StreamDelta, ...] | _Delay | _Fail]:
        """The response as the batches to yield and the delays and failures between them."""
        steps: list[tuple[StreamDelta, ...] | _Delay | _Fail] = []
        pending: list[StreamDelta] = []
        tool_calls = 0
        for item in _flatten(items):
            if isinstance(item, _Delay | _Fail):
                if pending:
                    steps.append(tuple(pending))
                    pending = []
                steps.append(item)
                continue
            if isinstance(item, ToolCallDelta):
                if item.name is not None:
                    if item.index is None:
                        item = msgspec.structs.replace(item, index=tool_calls)
                    tool_calls = (item.index or 0) + 1
                elif item.index is None:
                    item = msgspec.structs.replace(item, index=max(tool_calls - 1, 0))
            if self._batch:
                pending.append(item)
            else:
                steps.append((item,))
        if pending:
            steps.append(tuple(pending))
        return steps

    async def _sleep(self, seconds: float) -> None:
        if self._clock is not None:
            await self._clock.sleep(seconds)
        else:
            await anyio.sleep(seconds)

    # -- checks ---------------------------------------------------------------------------

    @property
    def remaining(self) -> int:
        """Scripted responses not used yet."""
        return len(self._responses) - self._next

    def assert_complete(self) -> None:
        """Raise :class:`FakeModelError` unless every scripted response was used."""
        if self.remaining:
            raise FakeModelError(
                f"FakeModel has {self.remaining} unused scripted response(s) of {len(self._responses)}"
                f" after {len(self.calls)} call(s)"
            )

    def __repr__(self) -> str:
        return f"<FakeModel {self.name!r} used={self._next}/{len(self._responses)}>"


def _flatten(items: Sequence[Item]) -> list[StreamDelta | _Delay | _Fail]:
    flat: list[StreamDelta | _Delay | _Fail] = []
    for item in items:
        if isinstance(item, StreamDelta | _Delay | _Fail):
            flat.append(item)
        else:
            flat.extend(item)
    return flat
