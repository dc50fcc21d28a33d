"""Collect what a nucleus publishes, in the background, for assertions.

::

    async with Nucleus(reducer, state) as nucleus, capture(nucleus) as cap:
        await nucleus.send(Ping())
        await cap.wait_for(Pong)
        assert cap.types() == ["pong"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from oturn._exceptions import ClosedError, SubscriberDisconnected, WouldBlock
from oturn.core.envelope import Envelope
from oturn.core.messages import Event
from oturn.runtime.nucleus import Nucleus
from oturn.runtime.subscription import Subscription
from oturn.testing.clock import _exit_task_group

__all__ = ["Capture", "capture", "event_tag"]

Match = type[Event] | tuple[type[Event], ...] | Callable[[Envelope], bool]


def event_tag(event: Event) -> str:
    """The wire tag of ``event`` (``"error"`` for :class:`~oturn.ErrorEvent`, else the class name)."""
    tag = type(event).__struct_config__.tag
    return str(tag) if tag is not None else type(event).__name__


def _matcher(match: Match) -> Callable[[Envelope], bool]:
    if isinstance(match, type | tuple):
        types = match
        return lambda env: isinstance(env.event, types)
    if callable(match):
        return match
    raise TypeError(f"wait_for() takes an Event type, a tuple of them or a predicate on envelopes; got {match!r}")


class Capture:
    """Envelopes collected by :func:`capture`, filled by a background task.

    ``envelopes`` grows as envelopes arrive; ``closed`` is set at end of stream (and
    ``disconnected`` holds the :class:`~oturn.SubscriberDisconnected` of a
    ``disconnect``-policy subscription that fell behind).
    """

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.envelopes: list[Envelope] = []
        self.disconnected: SubscriberDisconnected | None = None
        self.closed = False
        self._changed = anyio.Event()
        self._tg: TaskGroup | None = None

    # -- views ------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """The events captured so far, in order."""
        return [env.event for env in self.envelopes]

    def types(self) -> list[str]:
        """The wire tags of the events captured so far (``["turn_started", "error", ...]``)."""
        return [event_tag(env.event) for env in self.envelopes]

    def seqs(self) -> list[int]:
        """The ``seq`` of every envelope captured so far."""
        return [env.seq for env in self.envelopes]

    def of_type(self, *types: type[Event]) -> list[Event]:
        """The captured events that are instances of ``types``."""
        return [env.event for env in self.envelopes if isinstance(env.event, types)]

    # -- waiting ----------------------------------------------------------------------

    async def wait_for(self, match: Match, *, count: int = 1, timeout: float | None = None) -> Envelope:  # noqa: ASYNC109
        """The ``count``-th captured envelope matching ``match`` (already there or still to come).

        ``match`` is an Event type, a tuple of types, or a predicate on the envelope.
        Raises :class:`LookupError` when the stream ends first and :class:`TimeoutError`
        after ``timeout`` seconds of the event loop's clock (``None``: wait for ever).
        """
        if count < 1:
            raise ValueError(f"count is at least 1; got {count!r}")
        matches = _matcher(match)
        with anyio.fail_after(timeout):
            seen = 0
            index = 0
            while True:
                while index < len(self.envelopes):
                    env = self.envelopes[index]
                    index += 1
                    if matches(env):
                        seen += 1
                        if seen == count:
                            return env
                if self.closed:
                    raise LookupError(
                        f"the stream ended after {len(self.envelopes)} envelopes with {seen} of {count} matching"
                    )
                await self._changed.wait()

    async def wait_count(self, n: int, *, timeout: float | None = None) -> list[Envelope]:  # noqa: ASYNC109
        """Wait until at least ``n`` envelopes are captured; return them all."""
        with anyio.fail_after(timeout):
            while len(self.envelopes) < n:
                if self.closed:
                    raise LookupError(f"the stream ended after {len(self.envelopes)} envelopes, fewer than {n}")
                await self._changed.wait()
        return self.envelopes

    async def until_closed(self, *, timeout: float | None = None) -> list[Envelope]:  # noqa: ASYNC109
        """Wait for the end of the stream; return every envelope captured."""
        with anyio.fail_after(timeout):
            while not self.closed:
                await self._changed.wait()
        return self.envelopes

    # -- the pump ---------------------------------------------------------------------

    def _wake(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _pump(self) -> None:
        sub = self.subscription
        try:
            async for env in sub:
                self.envelopes.append(env)
                self._wake()
        except SubscriberDisconnected as exc:
            self.disconnected = exc
        self.closed = True
        self._wake()

    def _drain_buffered(self) -> None:
        sub = self.subscription
        while not self.closed:
            try:
                self.envelopes.append(sub.get_nowait())
            except WouldBlock:
                return
            except SubscriberDisconnected as exc:
                self.disconnected = exc
                self.closed = True
            except ClosedError:  # end of stream
                self.closed = True

    async def __aenter__(self) -> Capture:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._pump, name="oturn-capture")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        self._tg = None
        tg.cancel_scope.cancel()
        try:
            return await _exit_task_group(tg, exc_type, exc, tb)
        finally:
            # Keep what was already buffered, then let go of the subscription.
            self._drain_buffered()
            await self.subscription.aclose()

    def __repr__(self) -> str:
        state = "disconnected" if self.disconnected else "closed" if self.closed else "open"
        return f"<Capture {state} envelopes={len(self.envelopes)}>"


def capture(
    nucleus: Nucleus[Any],
    *,
    policy: str = "block",
    buffer: int = 1024,
    types: Iterable[type[Event]] | None = None,
    session: str | None = None,
    from_seq: int | None = None,
) -> Capture:
    """Subscribe to ``nucleus`` and collect its envelopes in a background task.

    Use as ``async with capture(nucleus, **subscribe_kwargs) as cap:``; the keyword
    arguments are those of :meth:`Nucleus.subscribe` (``policy`` defaults to ``block``,
    so nothing is lost). Leaving the block stops the collecting task, keeps what was
    already buffered, and closes the subscription.
    """
    sub = nucleus.subscribe(policy=policy, buffer=buffer, types=types, session=session, from_seq=from_seq)
    return Capture(sub)
