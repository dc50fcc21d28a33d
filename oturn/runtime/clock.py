"""Clocks: where the nucleus gets time from (and the only place it does)."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of time for envelopes and timers.

    ``now()`` stamps envelopes (seconds, a float); ``sleep(delay)`` is how timers and
    handlers wait. Tests inject :class:`oturn.testing.FakeClock`.
    """

    def now(self) -> float: ...

    async def sleep(self, delay: float) -> None: ...


class SystemClock:
    """Wall-clock time (``time.time()``) for stamps; anyio's sleep for waiting."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    async def sleep(self, delay: float) -> None:
        await anyio.sleep(max(0.0, delay))

    def __repr__(self) -> str:
        return "SystemClock()"
