"""A one-shot wake-up primitive, as cheap as the running event loop allows.

On asyncio (and uvloop) it is a bare loop future, several times cheaper to create
and set than ``anyio.Event``; on other backends it is ``anyio.Event``. Waiting on
it is cancellable the usual way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import anyio
import sniffio

__all__ = ["Waiter", "waiter_factory"]


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
