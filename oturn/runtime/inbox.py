"""The nucleus inbox: a bounded FIFO of signals with an awaiting and a failing put."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

from oturn._exceptions import ClosedError, InboxFullError
from oturn.runtime._event import Waiter

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """A bounded queue with one consumer (the reduction loop) and many producers.

    ``put`` waits for room (FIFO among waiters); ``put_nowait`` raises
    :class:`~oturn.InboxFullError`. After ``close()`` every put raises
    :class:`~oturn.ClosedError`.
    """

    __slots__ = ("_capacity", "_closed", "_items", "_new_waiter", "_peak", "_recv_waiter", "_send_waiters")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._recv_waiter: Waiter | None = None
        self._send_waiters: deque[Waiter] = deque()
        self._new_waiter: Callable[[], Waiter] = anyio.Event
        self._closed = False
        self._peak = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def peak(self) -> int:
        return self._peak

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: T) -> None:
        if self._closed:
            raise ClosedError("the nucleus is closed; it accepts no more signals")
        items = self._items
        if len(items) >= self._capacity or self._send_waiters:
            raise InboxFullError(f"the inbox is full ({self._capacity} signals); await send() to wait for room")
        items.append(item)
        if len(items) > self._peak:
            self._peak = len(items)
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            waiter.set()

    async def put(self, item: T) -> None:
        if self._closed:
            raise ClosedError("the nucleus is closed; it accepts no more signals")
        items = self._items
        if len(items) < self._capacity and not self._send_waiters:
            # Like asyncio.Queue.put: no scheduling point when there is room.
            items.append(item)
            if len(items) > self._peak:
                self._peak = len(items)
            waiter = self._recv_waiter
            if waiter is not None:
                self._recv_waiter = None
                waiter.set()
            return
        event = self._new_waiter()
        self._send_waiters.append(event)
        try:
            while True:
                await event.wait()
                if self._closed:
                    raise ClosedError("the nucleus closed while a send was waiting for room")
                if len(self._items) < self._capacity and self._send_waiters[0] is event:
                    break
                event = self._rearm(event)
        except BaseException:
            self._discard(event)
            raise
        self._send_waiters.popleft()
        self._items.append(item)
        if len(self._items) > self._peak:
            self._peak = len(self._items)
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            waiter.set()
        self._wake_sender()

    def _rearm(self, old: Waiter) -> Waiter:
        new = self._new_waiter()
        self._send_waiters[self._send_waiters.index(old)] = new
        return new

    def _discard(self, event: Waiter) -> None:
        try:
            first = self._send_waiters[0] is event
            self._send_waiters.remove(event)
        except (ValueError, IndexError):
            return
        if first:
            self._wake_sender()

    def _wake_sender(self) -> None:
        if self._send_waiters and len(self._items) < self._capacity:
            self._send_waiters[0].set()

    def get_nowait(self) -> T:
        item = self._items.popleft()
        if self._send_waiters:
            self._send_waiters[0].set()
        return item

    async def wait_nonempty(self) -> None:
        """Wait until an item is there or the inbox closes."""
        while not self._items and not self._closed:
            waiter = self._recv_waiter = self._new_waiter()
            await waiter.wait()

    def close(self) -> list[T]:
        """Refuse further puts, wake every waiter, and return what was still queued."""
        self._closed = True
        for event in self._send_waiters:
            event.set()
        self._send_waiters.clear()
        if self._recv_waiter is not None:
            self._recv_waiter.set()
            self._recv_waiter = None
        left = list(self._items)
        self._items.clear()
        return left

    def stop_intake(self) -> None:
        """Refuse further puts but keep what is queued (for a graceful drain)."""
        self._closed = True
        for event in self._send_waiters:
            event.set()
        self._send_waiters.clear()
        if self._recv_waiter is not None:
            self._recv_waiter.set()
            self._recv_waiter = None
