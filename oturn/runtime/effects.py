"""What an effect handler gets to talk back to its nucleus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from oturn.core.messages import Effect, Signal
from oturn.runtime.clock import Clock

if TYPE_CHECKING:
    from oturn.runtime.nucleus import Nucleus

__all__ = ["EffectContext", "Handler"]

E = TypeVar("E", bound=Effect)


class EffectContext(Generic[E]):
    """Passed to every handler with the effect it runs.

    ``send`` feeds intermediate signals (stream chunks, progress) into the nucleus,
    waiting for room in its inbox; the handler's return value (a signal or ``None``) is
    the effect's outcome.
    """

    __slots__ = ("_nucleus", "effect")

    def __init__(self, nucleus: Nucleus[Any], effect: E) -> None:
        self._nucleus = nucleus
        self.effect = effect

    @property
    def clock(self) -> Clock:
        """The nucleus clock (use it, not ``time``, so fake clocks work)."""
        return self._nucleus.clock

    @property
    def session(self) -> str:
        """The session id of the nucleus."""
        return self._nucleus.session

    async def send(self, signal: Signal) -> None:
        """Feed ``signal`` into the nucleus, waiting for room."""
        await self._nucleus.send(signal)

    def send_nowait(self, signal: Signal) -> None:
        """Feed ``signal`` into the nucleus or raise :class:`~oturn.InboxFullError`."""
        self._nucleus.send_nowait(signal)

    def __repr__(self) -> str:
        return f"<EffectContext {type(self.effect).__name__} key={self.effect.key!r}>"


Handler = Callable[[Any, EffectContext[Any]], Awaitable[Signal | None]]
"""An effect handler: ``async def handler(effect, ctx) -> Signal | None``."""
