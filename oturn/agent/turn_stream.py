"""One turn's envelopes as an async iterator: ``async with session.stream(text) as turn``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from oturn._exceptions import ClosedError, InputRejectedError, UsageError
from oturn.agent.events import InputQueued, InputRejected, TurnFinished, TurnStarted
from oturn.core.envelope import Envelope
from oturn.core.messages import Event
from oturn.runtime.subscription import Subscription

__all__ = ["TurnStream"]

# The events the stream itself must see to follow its turn, whatever the caller asked for.
_FOLLOW: tuple[type[Event], ...] = (InputQueued, InputRejected, TurnStarted, TurnFinished)


class TurnStream:
    """The envelopes of the turn that one user message starts, in ``seq`` order, losslessly.

    Made by :meth:`oturn.agent.Session.stream`; use it as an async context manager and
    iterate it::

        async with session.stream("What is 15 x 27?") as turn:
            async for envelope in turn:
                if isinstance(envelope.event, AssistantDelta):
                    print(envelope.event.text, end="")
        print(turn.finished.outcome)

    Entering subscribes (policy ``block``, so nothing is lost), then sends the message.
    The stream yields the envelopes about that message: ``input_queued`` while it waits
    behind a running turn, then everything stamped with its turn, up to and including
    the turn's ``turn_finished``, where iteration ends. Envelopes of other inputs'
    turns never appear. ``types=`` keeps only those event classes (the stream still
    follows the turn). Leaving the block early closes the subscription; the turn goes
    on (use :meth:`Session.cancel` to stop it).

    Raises :class:`~oturn.InputRejectedError` when the session does not accept the
    message, and :class:`~oturn.ClosedError` when the session ends first. While the
    stream is not read its buffer fills and then the session waits for the reader,
    like any ``block`` subscriber.
    """

    __slots__ = ("_done", "_send", "_sub", "_subscribe", "_types", "finished", "input_id", "turn")

    def __init__(
        self,
        subscribe: Callable[[tuple[type[Event], ...] | None], Subscription],
        send: Callable[[], Awaitable[object]],
        input_id: str,
        types: Iterable[type[Event]] | None,
    ) -> None:
        wanted = None if types is None else tuple(types)
        if wanted is not None and not all(isinstance(t, type) and issubclass(t, Event) for t in wanted):
            raise UsageError(f"types= takes Event subclasses; got {wanted!r}")
        self._types = wanted
        self._subscribe = subscribe
        self._send = send
        self._sub: Subscription | None = None
        self._done = False
        self.input_id = input_id
        """The id of the message this stream follows (echoed by its ``turn_started``)."""
        self.turn: str | None = None
        """The turn id once ``turn_started`` has been seen."""
        self.finished: TurnFinished | None = None
        """The turn's ``turn_finished`` once the stream has reached it."""

    async def __aenter__(self) -> TurnStream:
        if self._sub is not None or self._done:
            raise UsageError("a TurnStream is entered once")
        types = None if self._types is None else tuple(dict.fromkeys((*self._types, *_FOLLOW)))
        self._sub = self._subscribe(types)
        try:
            await self._send()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        self._done = True
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.aclose()

    def __aiter__(self) -> TurnStream:
        return self

    async def __anext__(self) -> Envelope:
        sub = self._sub
        if sub is None:
            if self._done:
                raise StopAsyncIteration
            raise UsageError("iterate a TurnStream inside `async with session.stream(...)`")
        while True:
            try:
                envelope = await sub.get()
            except ClosedError:
                await self._close()
                raise ClosedError(f"the session ended before the turn of input {self.input_id} finished") from None
            if not self._ours(envelope):
                continue
            event = envelope.event
            if isinstance(event, InputRejected):
                await self._close()
                raise InputRejectedError(f"input {self.input_id} was rejected: {event.reason}")
            if isinstance(event, TurnStarted):
                self.turn = event.turn
            elif isinstance(event, TurnFinished):
                self.finished = event
                await self._close()
            if self._types is None or isinstance(event, self._types):
                return envelope
            if self.finished is not None:
                raise StopAsyncIteration

    def _ours(self, envelope: Envelope) -> bool:
        input_id = getattr(envelope.event, "input_id", None)
        if input_id is not None:
            return bool(input_id == self.input_id)
        return self.turn is not None and envelope.turn == self.turn

    def __repr__(self) -> str:
        where = "finished" if self.finished is not None else ("closed" if self._done else "open")
        return f"<TurnStream input={self.input_id} turn={self.turn} {where}>"
