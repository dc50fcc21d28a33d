"""A one-shot wake-up primitive, as cheap as the running event loop allows.

On asyncio (and uvloop) it is a bare loop future, several times cheaper to create
and set than ``anyio.Event``; on other backends it is ``anyio.Event``. Waiting on
it is cancellable the usual way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import sniffio

__all__ = ["READY", "Waiter", "ready_factory", "waiter_factory"]


class Waiter(Protocol):
    def set(self) -> None: ...

    async def wait(self) -> object: ...


class _FutureWaiter:
    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> object:
        await self._future
        return None


def waiter_factory() -> Callable[[], Waiter]:
    """The cheapest waiter constructor for the running backend (``anyio.Event`` outside one)."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return anyio.Event
    if library == "asyncio":
        loop = asyncio.get_running_loop()
        return lambda: _FutureWaiter(loop)
    return anyio.Event


class _Ready(tuple[()]):
    """An awaitable that is already complete: ``await READY`` returns ``None`` at once.

    A tuple subclass whose ``__await__`` is the empty tuple's iterator, so awaiting it
    runs no Python code and never yields to the event loop (on any backend).
    """

    __slots__ = ()
    __await__ = tuple.__iter__


READY: Awaitable[None] = _Ready()  # type: ignore[assignment]


def ready_factory() -> Awaitable[None]:
    """The cheapest already-complete awaitable for the running backend.

    On asyncio (and uvloop) a finished loop future, whose ``__await__`` is C code that
    returns at once; elsewhere :data:`READY`.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return READY
    if library == "asyncio":
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future
    return READY
