"""Subscriptions: a bounded buffer per subscriber with an explicit overflow policy."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import anyio

from oturn._exceptions import ClosedError, InvalidPolicyError, SubscriberDisconnected, WouldBlock
from oturn.core.envelope import Envelope
from oturn.core.messages import Event
from oturn.runtime._event import Waiter
from oturn.runtime.policy import Policy, parse_policy
from oturn.runtime.statistics import SubscriptionStatistics

__all__ = ["QueueSubscription", "Subscription"]


def _check_buffer(buffer: int) -> int:
    if not isinstance(buffer, int) or isinstance(buffer, bool) or buffer < 1:
        raise InvalidPolicyError(f"a subscription buffer holds at least 1 envelope; got {buffer!r}")
    return buffer


class _Base:
    """What the nucleus needs from any subscriber."""

    __slots__ = (
        "_closed",
        "_delivered",
        "_detach",
        "_disconnected",
        "_dropped",
        "_filtered",
        "_merged",
        "_min_seq",
        "_new_waiter",
        "_peak",
        "_policy",
        "_replayed",
        "_session",
        "_types",
    )

    def __init__(
        self,
        policy: Policy,
        types: Iterable[type[Event]] | None,
        session: str | None,
        detach: Callable[[_Base], None],
    ) -> None:
        self._policy = policy
        if types is not None:
            type_tuple = tuple(types)
            for t in type_tuple:
                if not (isinstance(t, type) and issubclass(t, Event)):
                    raise InvalidPolicyError(f"types= takes Event subclasses; got {t!r}")
            self._types: tuple[type[Event], ...] | None = type_tuple
        else:
            self._types = None
        self._session = session
        self._detach = detach
        self._closed = False
        self._disconnected = False
        self._delivered = 0
        self._dropped = 0
        self._merged = 0
        self._replayed = 0
        self._peak = 0
        self._min_seq = 0
        self._filtered = types is not None or session is not None
        self._new_waiter: Callable[[], Waiter] = anyio.Event

    def _accepts(self, env: Envelope) -> bool:
        if env.seq < self._min_seq:
            return False
        if self._types is not None and not isinstance(env.event, self._types):
            return False
        return self._session is None or env.session == self._session

    def _offer(self, env: Envelope) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _offer_blocking(self, env: Envelope) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def policy(self) -> Policy:
        return self._policy


class Subscription(_Base):
    """A subscriber's view of a nucleus: ``async with nucleus.subscribe() as sub: async for env in sub``.

    Envelopes arrive in ``seq`` order. Iteration ends when the nucleus reaches a
    terminal transition or closes; a ``disconnect``-policy subscription that fell
    behind raises :class:`~oturn.SubscriberDisconnected` after handing out what it
    had buffered. ``get()`` / ``get_nowait()`` take one envelope at a time.
    """

    __slots__ = ("_backfill", "_buf", "_fetch", "_maxlen", "_replay", "_resume_from", "_space", "_waiter")

    def __init__(
        self,
        *,
        policy: Policy | str,
        buffer: int,
        types: Iterable[type[Event]] | None,
        session: str | None,
        replay: list[Envelope],
        detach: Callable[[_Base], None],
    ) -> None:
        super().__init__(parse_policy(policy), types, session, detach)
        self._maxlen = 1 if self._policy is Policy.LATEST else _check_buffer(buffer)
        self._buf: deque[Envelope] = deque()
        self._replay: deque[Envelope] = deque(replay)
        self._waiter: Waiter | None = None
        self._space: Waiter | None = None
        self._resume_from: int | None = None
        self._replayed = len(replay)
        # Envelopes older than the history ring, read from the store on first use.
        self._backfill: tuple[int, int] | None = None
        self._fetch: Callable[[int, int], Awaitable[list[Envelope]]] | None = None

    # -- nucleus side -------------------------------------------------------------------

    def _offer(self, env: Envelope) -> bool:
        """Take ``env`` by the policy; ``False`` only for a full ``block`` subscriber."""
        buf = self._buf
        if len(buf) < self._maxlen:
            if buf and self._policy is Policy.COALESCE:
                merged = buf[-1].event.merge(env.event)
                if merged is not None:
                    buf[-1] = _with_event(env, merged)
                    self._merged += 1
                    return True
            buf.append(env)
            if len(buf) > self._peak:
                self._peak = len(buf)
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                waiter.set()
            return True
        return self._overflow(env)

    def _overflow(self, env: Envelope) -> bool:
        policy = self._policy
        buf = self._buf
        if policy is Policy.BLOCK:
            return False
        if policy is Policy.DROP_NEWEST:
            self._dropped += 1
            return True
        if policy is Policy.COALESCE:
            merged = buf[-1].event.merge(env.event)
            if merged is not None:
                buf[-1] = _with_event(env, merged)
                self._merged += 1
                return True
        if policy is Policy.DISCONNECT:
            self._resume_from = env.seq
            self._disconnected = True
            self._close()
            return True
        # drop_oldest, latest, coalesce-without-merge
        buf.popleft()
        self._dropped += 1
        buf.append(env)
        return True

    async def _offer_blocking(self, env: Envelope) -> None:
        while not self._closed and len(self._buf) >= self._maxlen:
            space = self._space = self._new_waiter()
            await space.wait()
        if not self._closed:
            self._offer(env)

    def _end(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._detach(self)
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None
        if self._space is not None:
            self._space.set()
            self._space = None

    # -- consumer side ------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Envelope:
        if self._backfill is not None:
            await self._load_backfill()
        while True:
            if self._replay:
                self._delivered += 1
                return self._replay.popleft()
            buf = self._buf
            if buf:
                env = buf.popleft()
                self._delivered += 1
                space = self._space
                if space is not None:
                    self._space = None
                    space.set()
                return env
            if self._closed:
                if self._resume_from is not None:
                    raise SubscriberDisconnected(self._resume_from)
                raise StopAsyncIteration
            waiter = self._waiter = self._new_waiter()
            await waiter.wait()

    async def _load_backfill(self) -> None:
        backfill, fetch = self._backfill, self._fetch
        self._backfill = None
        if backfill is None or fetch is None:
            return
        envelopes = [env for env in await fetch(*backfill) if self._accepts_replay(env)]
        self._replay.extendleft(reversed(envelopes))
        self._replayed += len(envelopes)

    def _accepts_replay(self, env: Envelope) -> bool:
        if self._types is not None and not isinstance(env.event, self._types):
            return False
        return self._session is None or env.session == self._session

    async def get(self) -> Envelope:
        """The next envelope; raises :class:`~oturn.ClosedError` at end of stream."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise ClosedError("the subscription has ended") from None

    def get_nowait(self) -> Envelope:
        """The next envelope if one is buffered; :class:`~oturn.WouldBlock` if none is."""
        if self._backfill is not None:
            raise WouldBlock("older envelopes must first be read from the store: use get() or async for")
        if self._replay or self._buf:
            if self._replay:
                self._delivered += 1
                return self._replay.popleft()
            env = self._buf.popleft()
            self._delivered += 1
            if self._space is not None:
                self._space.set()
                self._space = None
            return env
        if self._closed:
            if self._resume_from is not None:
                raise SubscriberDisconnected(self._resume_from)
            raise ClosedError("the subscription has ended")
        raise WouldBlock("no envelope is buffered")

    async def aclose(self) -> None:
        """Stop receiving; buffered envelopes are discarded."""
        self._close()
        self._buf.clear()
        self._replay.clear()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True once the stream has ended (buffered envelopes may still be readable)."""
        return self._closed

    @property
    def resume_from(self) -> int | None:
        """For a disconnected subscriber: the first ``seq`` it did not get."""
        return self._resume_from

    def statistics(self) -> SubscriptionStatistics:
        """Counters of this subscription."""
        return SubscriptionStatistics(
            policy=self._policy.value,
            buffer=self._maxlen,
            depth=len(self._buf) + len(self._replay),
            peak=self._peak,
            delivered=self._delivered,
            dropped=self._dropped,
            merged=self._merged,
            replayed=self._replayed,
            closed=self._closed,
            disconnected=self._disconnected,
        )

    def __repr__(self) -> str:
        state = "disconnected" if self._disconnected else "closed" if self._closed else "open"
        return (
            f"<Subscription {self._policy.value} {state} depth={len(self._buf)}/{self._maxlen}"
            f" delivered={self._delivered} dropped={self._dropped} merged={self._merged}>"
        )


class QueueSubscription(_Base):
    """OTURN-style subscriber: envelopes are put on a plain ``asyncio.Queue``.

    A full bounded queue drops the newest envelope (counted), or with
    ``policy="block"`` makes the nucleus wait. ``None`` is put at end of stream when the
    queue has room for it.
    """

    __slots__ = ("_queue",)

    def __init__(
        self,
        queue: asyncio.Queue[Any],
        *,
        policy: Policy | str,
        types: Iterable[type[Event]] | None,
        session: str | None,
        detach: Callable[[_Base], None],
    ) -> None:
        parsed = parse_policy(policy)
        if parsed not in (Policy.BLOCK, Policy.DROP_NEWEST, Policy.DROP_OLDEST):
            raise InvalidPolicyError(f"a queue subscriber supports block, drop_newest or drop_oldest; got {policy!r}")
        super().__init__(parsed, types, session, detach)
        self._queue = queue

    def _offer(self, env: Envelope) -> bool:
        queue = self._queue
        try:
            queue.put_nowait(env)
        except asyncio.QueueFull:
            if self._policy is Policy.BLOCK:
                return False
            if self._policy is Policy.DROP_OLDEST:
                queue.get_nowait()
                queue.put_nowait(env)
            self._dropped += 1
            return True
        self._delivered += 1
        size = queue.qsize()
        if size > self._peak:
            self._peak = size
        return True

    async def _offer_blocking(self, env: Envelope) -> None:
        await self._queue.put(env)
        self._delivered += 1

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._detach(self)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def statistics(self) -> SubscriptionStatistics:
        """Counters of this subscriber (``delivered`` counts puts on the queue)."""
        return SubscriptionStatistics(
            policy=self._policy.value,
            buffer=self._queue.maxsize,
            depth=self._queue.qsize(),
            peak=self._peak,
            delivered=self._delivered,
            dropped=self._dropped,
            merged=0,
            replayed=0,
            closed=self._closed,
            disconnected=False,
        )

    def __repr__(self) -> str:
        return f"<QueueSubscription {self._policy.value} delivered={self._delivered} dropped={self._dropped}>"


def _with_event(env: Envelope, event: Event) -> Envelope:
    return Envelope(seq=env.seq, at=env.at, session=env.session, turn=env.turn, cause=env.cause, event=event)
