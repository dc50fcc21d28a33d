"""Virtual time for tests: :class:`FakeClock` and :func:`settle`.

A :class:`FakeClock` implements the :class:`~oturn.Clock` protocol without ever
sleeping for real. Time moves only when the test says so (``advance``) or, inside
``async with FakeClock() as clock:``, when every task is blocked and some task sleeps
on the clock (autojump: time jumps to the earliest deadline, like trio's
``MockClock(autojump_threshold=0)``). It works on asyncio (and uvloop) and on trio.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from types import TracebackType

import anyio
import anyio.lowlevel
import sniffio
from anyio.abc import TaskGroup

__all__ = ["FakeClock", "settle"]


# Tasks currently polling in settle() on asyncio: they are runnable while they poll, so
# they must not count as "busy" for each other (or two pollers would wait forever).
_asyncio_pollers: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()


def _asyncio_all_blocked(this: asyncio.Task[object]) -> bool:
    for task in asyncio.all_tasks():
        if task is this or task in _asyncio_pollers:
            continue
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is None or waiter.done():
            return False
    return True


async def settle() -> None:
    """Wait until every other task is blocked (waiting on something that is not ready).

    On trio this is ``trio.testing.wait_all_tasks_blocked()``. On asyncio it polls with
    zero-length yields instead of anyio's 0.1 s real sleeps, so a test that settles often
    stays fast. A task blocked on I/O, a thread or a real timer counts as blocked.
    """
    if sniffio.current_async_library() != "asyncio":
        await anyio.wait_all_tasks_blocked()
        return
    this = asyncio.current_task()
    assert this is not None
    _asyncio_pollers.add(this)
    try:
        quiet = 0
        # Two consecutive quiet passes: a callback queued with call_soon (not yet a
        # task wake-up) gets one loop iteration to show itself.
        while quiet < 2:
            await asyncio.sleep(0)
            quiet = quiet + 1 if _asyncio_all_blocked(this) else 0
    finally:
        _asyncio_pollers.discard(this)


async def _exit_task_group(
    tg: TaskGroup, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
) -> bool | None:
    """``tg.__aexit__``, re-raising the body's exception bare when it is the group's only one."""
    try:
        return await tg.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        if exc is None or len(group.exceptions) != 1 or group.exceptions[0] is not exc:
            raise
        context = exc.__context__
        try:
            raise exc from exc.__cause__
        finally:
            exc.__context__ = context


class _Sleeper:
    __slots__ = ("active", "deadline", "event", "order")

    def __init__(self, deadline: float, order: int) -> None:
        self.deadline = deadline
        self.order = order
        self.event = anyio.Event()
        self.active = True

    def __lt__(self, other: _Sleeper) -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)


class FakeClock:
    """A :class:`~oturn.Clock` whose time moves only when told to.

    ``now()`` starts at ``start`` (default 0.0). ``await sleep(delay)`` waits until the
    clock reaches ``now() + delay``. ``advance(dt)`` / ``advance_to(t)`` move time and
    wake every sleeper that is due.

    ``async with FakeClock() as clock:`` also runs an autojump driver (unless
    ``autojump=False``) in a task group of its own: whenever every other task is
    blocked and something sleeps on the clock, time jumps to the earliest deadline.
    Outside ``async with`` (or with ``autojump=False``) time is manual::

        async with FakeClock() as clock, Nucleus(reducer, state, clock=clock) as nucleus:
            ...  # a StartTimer(delay=30) fires as soon as everything else waits

    A clock is not thread-safe and belongs to one event loop at a time.
    """

    __slots__ = ("_autojump", "_changed", "_entered", "_heap", "_jumps", "_now", "_order", "_tg")

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        if not (isinstance(start, int | float) and math.isfinite(start)):
            raise ValueError(f"start must be a finite number; got {start!r}")
        self._now = float(start)
        self._autojump = autojump
        self._heap: list[_Sleeper] = []
        self._order = 0
        self._changed: anyio.Event | None = None
        self._tg: TaskGroup | None = None
        self._entered = False
        self._jumps = 0

    # -- the Clock protocol -----------------------------------------------------------

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    async def sleep(self, delay: float) -> None:
        """Wait until the clock has moved ``delay`` forward (a checkpoint when ``delay <= 0``)."""
        if math.isnan(delay):
            raise ValueError("cannot sleep for NaN seconds")
        if delay <= 0:
            await anyio.lowlevel.checkpoint()
            return
        if math.isinf(delay):
            await anyio.sleep_forever()
        self._order += 1
        sleeper = _Sleeper(self._now + delay, self._order)
        heapq.heappush(self._heap, sleeper)
        self._notify()
        try:
            await sleeper.event.wait()
        finally:
            if sleeper.active:
                # Cancelled before it was due: forget it (removed lazily from the heap).
                sleeper.active = False
                self._notify()

    # -- moving time ------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        """Move time forward by ``dt`` seconds and wake every sleeper that is due."""
        if not (isinstance(dt, int | float) and math.isfinite(dt)) or dt < 0:
            raise ValueError(f"advance() takes a finite number of seconds >= 0; got {dt!r}")
        self._now += dt
        self._wake_due()

    def advance_to(self, when: float) -> None:
        """Move time forward to ``when`` (never backwards) and wake the sleepers that are due."""
        if not (isinstance(when, int | float) and math.isfinite(when)):
            raise ValueError(f"advance_to() takes a finite time; got {when!r}")
        if when < self._now:
            raise ValueError(f"time cannot go backwards: now is {self._now}, asked for {when}")
        self._now = float(when)
        self._wake_due()

    def _wake_due(self) -> None:
        heap = self._heap
        while heap and (not heap[0].active or heap[0].deadline <= self._now):
            sleeper = heapq.heappop(heap)
            if sleeper.active:
                sleeper.active = False
                sleeper.event.set()

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    # -- introspection ----------------------------------------------------------------

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return sum(1 for s in self._heap if s.active)

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a sleeping task, or ``None``."""
        return self._earliest()

    def _earliest(self) -> float | None:
        heap = self._heap
        while heap and not heap[0].active:
            heapq.heappop(heap)
        return heap[0].deadline if heap else None

    @property
    def jumps(self) -> int:
        """How many times autojump moved time."""
        return self._jumps

    @property
    def autojump(self) -> bool:
        """Whether ``async with`` runs the autojump driver."""
        return self._autojump

    # -- autojump ---------------------------------------------------------------------

    async def __aenter__(self) -> FakeClock:
        if self._entered:
            raise RuntimeError("a FakeClock can be entered only once at a time")
        self._entered = True
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        if self._autojump:
            tg.start_soon(self._drive, name="oturn-fake-clock-autojump")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        self._tg = None
        self._entered = False
        tg.cancel_scope.cancel()
        return await _exit_task_group(tg, exc_type, exc, tb)

    async def _drive(self) -> None:
        while True:
            if self._earliest() is None:
                changed = self._changed = anyio.Event()
                await changed.wait()
                continue
            await settle()
            deadline = self._earliest()
            if deadline is None:
                continue
            if deadline > self._now:
                self._now = deadline
                self._jumps += 1
            self._wake_due()

    def __repr__(self) -> str:
        mode = "autojump" if self._autojump else "manual"
        return f"<FakeClock now={self._now!r} sleepers={self.sleepers} {mode}>"
