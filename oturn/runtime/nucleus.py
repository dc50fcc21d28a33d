"""The nucleus: serial reduction, envelopes, fan-out, effect handlers and timers."""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import anyio
from anyio.abc import TaskGroup

from oturn._exceptions import (
    ClosedError,
    HistoryUnavailableError,
    InvalidPolicyError,
    InvalidSignalError,
    NoHandlerError,
    ReducerContractError,
    ReducerError,
    UsageError,
)
from oturn.core.builtins import (
    CancelEffect,
    CancelTimer,
    EffectCancelled,
    EffectCompleted,
    EffectFailed,
    ErrorEvent,
    ErrorInfo,
    Feed,
    StartTimer,
)
from oturn.core.envelope import Envelope
from oturn.core.messages import Effect, Event, Signal
from oturn.core.reducer import Reducer
from oturn.core.transition import Transition
from oturn.runtime._event import READY, Waiter, ready_factory, waiter_factory
from oturn.runtime.clock import Clock, SystemClock
from oturn.runtime.effects import EffectContext, Handler
from oturn.runtime.inbox import Inbox
from oturn.runtime.journal import Journal, Restored
from oturn.runtime.policy import Policy
from oturn.runtime.statistics import NucleusStatistics
from oturn.runtime.subscription import QueueSubscription, Subscription, _Base

__all__ = ["Nucleus", "OnReducerError"]

S = TypeVar("S")

_BUILTIN_EFFECTS = (StartTimer, CancelTimer, CancelEffect, Feed)
_YIELD_EVERY = 256

# The types already checked to be Signal subclasses: ``type(x) in`` a set is cheaper
# than ``isinstance`` against a class with a metaclass (msgspec's StructMeta).
_SIGNAL_TYPES: set[type] = set()

# One history-ring record per transition that published events:
# (seq of its first event, at, turn, cause, events). Envelopes are built from it on
# demand, so a nucleus nobody subscribes to builds none.
_Record = tuple[int, float, "str | None", int, Sequence[Event]]


def _check_signal(signal: object, verb: str) -> None:
    if not isinstance(signal, Signal):
        raise InvalidSignalError(f"{verb}() takes a Signal; got {type(signal).__name__}: {signal!r}")
    _SIGNAL_TYPES.add(type(signal))


class OnReducerError(enum.StrEnum):
    """What the nucleus does after a reducer raised (the state is untouched either way)."""

    CONTINUE = "continue"
    STOP = "stop"


class _Phase(enum.StrEnum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    TERMINATED = "terminated"
    FAILED = "failed"
    CLOSED = "closed"


class Nucleus(Generic[S]):
    """Reduces signals one at a time and fans the resulting events out to subscribers.

    ::

        async with Nucleus(reducer, initial_state, handlers={CallModel: call_model}) as nucleus:
            async with nucleus.subscribe(policy="drop_oldest", buffer=256) as sub:
                await nucleus.send(UserMessage(text="hi"))
                async for envelope in sub:
                    ...

    - The inbox is bounded (``inbox``): ``send`` waits for room, ``send_nowait`` raises
      :class:`~oturn.InboxFullError`.
    - Every event is published in an :class:`~oturn.Envelope` whose ``seq`` increases by
      one per event and whose ``at`` comes from ``clock``.
    - Effects are run by ``handlers`` (a mapping of effect type to
      ``async def handler(effect, ctx) -> Signal | None``) inside the nucleus's task
      group; each ends in exactly one outcome signal (the handler's, or
      :class:`~oturn.EffectCompleted`, :class:`~oturn.EffectFailed`,
      :class:`~oturn.EffectCancelled`). :class:`~oturn.StartTimer`,
      :class:`~oturn.CancelTimer` and :class:`~oturn.CancelEffect` are built in.
    - A reducer that raises or returns something other than a Transition leaves the
      state as it was and publishes an ``error`` event naming the signal's seq; then the
      nucleus goes on (``on_reducer_error="continue"``) or stops (``"stop"``).
    - A transition with ``terminal=True`` ends every subscription (end of stream) and
      the intake; the effects it returns are not started.
    - Leaving the ``async with`` block normally reduces what is already in the inbox
      (for at most ``shutdown_timeout`` seconds), then cancels running effects and
      timers; leaving it with an exception cancels at once. No task outlives the block.
    """

    def __init__(
        self,
        reducer: Reducer[S],
        initial_state: S,
        *,
        handlers: Mapping[type[Effect], Handler] | None = None,
        clock: Clock | None = None,
        session: str = "",
        inbox: int = 1024,
        history: int = 1024,
        on_reducer_error: OnReducerError | str = OnReducerError.CONTINUE,
        shutdown_timeout: float = 5.0,
        journal: Journal[S] | None = None,
    ) -> None:
        if not callable(reducer):
            raise UsageError(f"reducer must be callable (state, signal) -> Transition; got {reducer!r}")
        if not isinstance(inbox, int) or isinstance(inbox, bool) or inbox < 1:
            raise InvalidPolicyError(f"inbox holds at least 1 signal; got {inbox!r}")
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise InvalidPolicyError(f"history is a number of envelopes >= 0; got {history!r}")
        if not (
            isinstance(shutdown_timeout, int | float) and shutdown_timeout >= 0 and math.isfinite(shutdown_timeout)
        ):
            raise InvalidPolicyError(f"shutdown_timeout is a finite number of seconds >= 0; got {shutdown_timeout!r}")
        try:
            self._on_error = OnReducerError(on_reducer_error)
        except ValueError:
            raise InvalidPolicyError(f"on_reducer_error is 'continue' or 'stop'; got {on_reducer_error!r}") from None
        self._handlers: dict[type[Effect], Handler] = {}
        for effect_type, handler in (handlers or {}).items():
            if not (isinstance(effect_type, type) and issubclass(effect_type, Effect)):
                raise UsageError(f"handlers are keyed by Effect subclasses; got {effect_type!r}")
            if issubclass(effect_type, _BUILTIN_EFFECTS):
                raise UsageError(f"{effect_type.__name__} is executed by the nucleus itself")
            if not callable(handler):
                raise UsageError(f"the handler for {effect_type.__name__} is not callable: {handler!r}")
            self._handlers[effect_type] = handler
        self._reducer = reducer
        self._state = initial_state
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._session = session
        self._inbox: Inbox[Signal] = Inbox(inbox)
        # At most ``history`` records; they hold at least ``history`` envelopes, of which
        # the newest ``history`` are served (see _ring).
        self._history: deque[_Record] = deque(maxlen=history)
        self._history_limit = history
        self._shutdown_timeout = float(shutdown_timeout)
        self._subs: tuple[_Base, ...] = ()
        self._queue_subs: dict[int, QueueSubscription] = {}
        self._tg: TaskGroup | None = None
        self._phase = _Phase.NEW
        self._seq = 0
        self._signal_seq = 0
        self._seq_base = 0  # events published before this nucleus started (restored from a journal)
        self._reducer_errors = 0
        self._effects_started = 0
        self._effects_failed = 0
        self._outcomes_discarded = 0
        self._signals_discarded = 0
        self._running: dict[int, tuple[Effect, anyio.CancelScope]] = {}
        self._running_ids = 0
        self._timers: dict[str, anyio.CancelScope] = {}
        self._failure: ReducerError | None = None
        self._journal = journal
        self.restored: Restored[S] | None = None
        self._drained = anyio.Event()
        self._ended = anyio.Event()
        self._new_waiter: Callable[[], Waiter] = anyio.Event
        self._ready: Awaitable[None] = READY

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Nucleus[S]:
        if self._phase is not _Phase.NEW:
            raise UsageError("a Nucleus can be entered only once")
        self._drained = anyio.Event()
        self._ended = anyio.Event()
        journal = self._journal
        if journal is not None:
            if journal.session != self._session:
                raise UsageError(f"the journal writes session {journal.session!r}, the nucleus is {self._session!r}")
            restored = await journal.restore(self._reducer, self._state, now=self._clock.now())
            self.restored = restored
            self._state = restored.state
            self._signal_seq = restored.signal_seq
            self._seq = self._seq_base = restored.event_seq
        self._new_waiter = waiter_factory()
        self._ready = ready_factory()
        self._inbox._new_waiter = self._new_waiter
        for sub in self._subs:
            sub._new_waiter = self._new_waiter
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._phase = _Phase.RUNNING
        tg.start_soon(self._loop, name=f"oturn-nucleus-{self._session or format(id(self), 'x')}")
        if journal is not None:
            tg.start_soon(journal.run, self._clock.now, name=f"oturn-journal-{self._session}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        try:
            if exc_type is None and self._phase is _Phase.RUNNING:
                self._phase = _Phase.CLOSING
                self._inbox.stop_intake()
                with anyio.move_on_after(self._shutdown_timeout, shield=True):
                    await self._drained.wait()
            if self._journal is not None and self._journal_ok():
                # Write what is buffered and give the lease up, even when failing or cancelled.
                with anyio.move_on_after(self._shutdown_timeout, shield=True):
                    await self._journal.close(self._clock.now())
        finally:
            self._shutdown()
        try:
            return await tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The nucleus's own tasks never raise: a group holding just the body's
            # exception is unwrapped, so `except KeyError:` around the block works.
            if exc is None or len(group.exceptions) != 1 or group.exceptions[0] is not exc:
                raise
            context = exc.__context__
            try:
                raise exc from exc.__cause__
            finally:
                exc.__context__ = context

    def _journal_ok(self) -> bool:
        return self._journal is not None and self._journal._failure is None and self.restored is not None

    async def aclose(self) -> None:
        """Stop now: refuse new signals, discard queued ones, cancel effects and timers."""
        self._shutdown()

    def _shutdown(self) -> None:
        left = self._inbox.close()
        self._signals_discarded += len(left)
        if self._phase in (_Phase.RUNNING, _Phase.CLOSING):
            self._phase = _Phase.CLOSED
        self._end_subscriptions()
        self._drained.set()
        self._ended.set()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def wait_closed(self) -> None:
        """Wait until the nucleus has ended (terminal transition, stop on error, or close).

        Raises the :class:`~oturn.ReducerError` that stopped it, if one did.
        """
        await self._ended.wait()
        if self._failure is not None:
            raise self._failure

    # -- input --------------------------------------------------------------------------

    def send(self, signal: Signal) -> Awaitable[None]:
        """Put ``signal`` in the inbox, waiting while it is full: ``await nucleus.send(signal)``.

        When the inbox has room the signal is queued at once and the returned awaitable
        is already complete (no scheduling point, like ``asyncio.Queue.put``); otherwise
        awaiting it waits for room. Always await the result: an un-awaited send of a
        full inbox sends nothing. A non-signal (:class:`~oturn.InvalidSignalError`) and a
        closed nucleus (:class:`~oturn.ClosedError`) raise at the call.
        """
        if type(signal) not in _SIGNAL_TYPES:
            _check_signal(signal, "send")
        inbox = self._inbox
        items = inbox._items
        if len(items) < inbox._capacity and not inbox._closed and not inbox._send_waiters:
            # Fast path, inlined: no coroutine is created when there is room.
            items.append(signal)
            if len(items) > inbox._peak:
                inbox._peak = len(items)
            waiter = inbox._recv_waiter
            if waiter is not None:
                inbox._recv_waiter = None
                waiter.set()
            return self._ready
        if inbox._closed:
            raise ClosedError("the nucleus is closed; it accepts no more signals")
        return inbox.put(signal)

    def send_nowait(self, signal: Signal) -> None:
        """Put ``signal`` in the inbox or raise :class:`~oturn.InboxFullError` when it is full."""
        if type(signal) not in _SIGNAL_TYPES:
            _check_signal(signal, "send_nowait")
        self._inbox.put_nowait(signal)

    # -- subscriptions ------------------------------------------------------------------

    @overload
    def subscribe(
        self,
        queue: None = None,
        *,
        policy: Policy | str = Policy.BLOCK,
        buffer: int = 1024,
        types: Iterable[type[Event]] | None = None,
        session: str | None = None,
        from_seq: int | None = None,
    ) -> Subscription: ...

    @overload
    def subscribe(
        self,
        queue: asyncio.Queue[Any],
        *,
        policy: Policy | str = Policy.DROP_NEWEST,
        buffer: int = 1024,
        types: Iterable[type[Event]] | None = None,
        session: str | None = None,
        from_seq: int | None = None,
    ) -> QueueSubscription: ...

    def subscribe(
        self,
        queue: asyncio.Queue[Any] | None = None,
        *,
        policy: Policy | str | None = None,
        buffer: int = 1024,
        types: Iterable[type[Event]] | None = None,
        session: str | None = None,
        from_seq: int | None = None,
    ) -> Subscription | QueueSubscription:
        """Subscribe to the envelopes published from now on (or from ``from_seq``).

        ``policy`` (default ``block``) says what happens when ``buffer`` is full, see
        :class:`~oturn.Policy`. ``types`` keeps only those event types; ``session`` only
        that session's envelopes. ``from_seq=N`` first replays envelopes ``N..`` from the
        history ring, then continues live with no gap and no duplicate; it raises
        :class:`~oturn.HistoryUnavailableError` naming the oldest available seq when the
        ring no longer holds ``N``.

        OTURN style: ``subscribe(queue)`` puts envelopes on a plain ``asyncio.Queue``
        (a full bounded queue drops the newest unless ``policy="block"``);
        ``unsubscribe(queue)`` stops it.
        """
        replay: list[Envelope] = []
        backfill: tuple[int, int] | None = None
        min_seq = 0
        if from_seq is not None:
            if not isinstance(from_seq, int) or isinstance(from_seq, bool) or from_seq < 1:
                raise InvalidPolicyError(f"from_seq is a seq >= 1; got {from_seq!r}")
            if from_seq <= self._seq:
                oldest = self._oldest()
                if oldest is None or from_seq < oldest:
                    if self._journal is None or queue is not None:
                        raise HistoryUnavailableError(from_seq, oldest)
                    # Older than the ring: the subscription reads them from the store first.
                    backfill = (from_seq - 1, (oldest - 1) if oldest is not None else self._seq)
                replay = self._ring(from_seq)
            else:
                min_seq = from_seq
        ended = self._phase not in (_Phase.NEW, _Phase.RUNNING, _Phase.CLOSING)
        if ended and from_seq is None:
            raise ClosedError("the nucleus has ended; subscribe(from_seq=...) to read its history")
        sub: Subscription | QueueSubscription
        if queue is not None:
            if not isinstance(queue, asyncio.Queue):
                raise UsageError(f"subscribe(queue) takes an asyncio.Queue; got {type(queue).__name__}")
            if id(queue) in self._queue_subs:
                raise UsageError("this queue is already subscribed")
            sub = QueueSubscription(
                queue,
                policy=policy if policy is not None else Policy.DROP_NEWEST,
                types=types,
                session=session,
                detach=self._detach,
            )
            accepted = [env for env in replay if sub._accepts(env)]
            room = queue.maxsize - queue.qsize() if queue.maxsize > 0 else len(accepted)
            if sub.policy is Policy.BLOCK and len(accepted) > room:
                # subscribe() cannot wait, and a block subscriber must not lose envelopes.
                raise InvalidPolicyError(
                    f"the replay from seq {from_seq} holds {len(accepted)} envelopes but the queue has room"
                    f" for {room}; use a larger queue, or subscribe(from_seq=...) without a queue"
                )
            for env in accepted:
                sub._offer(env)
            self._queue_subs[id(queue)] = sub
        else:
            sub = Subscription(
                policy=policy if policy is not None else Policy.BLOCK,
                buffer=buffer,
                types=types,
                session=session,
                replay=replay,
                detach=self._detach,
            )
            if types is not None or session is not None:
                sub._replay = deque(env for env in replay if sub._accepts(env))
                sub._replayed = len(sub._replay)
            if backfill is not None and self._journal is not None:
                sub._backfill = backfill
                sub._fetch = self._journal.read_events
        sub._min_seq = min_seq
        sub._filtered = types is not None or session is not None or min_seq > 0
        sub._new_waiter = self._new_waiter
        if ended:
            sub._end()
        else:
            self._subs = (*self._subs, sub)
        return sub

    def unsubscribe(self, queue: asyncio.Queue[Any]) -> None:
        """Stop putting envelopes on ``queue`` (OTURN compatibility)."""
        sub = self._queue_subs.pop(id(queue), None)
        if sub is None:
            raise UsageError("this queue is not subscribed")
        sub._closed = True
        self._detach(sub)

    def _detach(self, sub: _Base) -> None:
        if sub in self._subs:
            self._subs = tuple(s for s in self._subs if s is not sub)
        if isinstance(sub, QueueSubscription):
            for key, value in list(self._queue_subs.items()):
                if value is sub:
                    del self._queue_subs[key]

    def _end_subscriptions(self) -> None:
        subs, self._subs = self._subs, ()
        for sub in subs:
            sub._end()
        self._queue_subs.clear()

    # -- the loop -----------------------------------------------------------------------

    async def _loop(self) -> None:
        # The hot path: everything for one signal happens inline, without creating a
        # coroutine, unless something must be waited for (a full ``block`` subscriber, the
        # journal, a reducer error). The counters and the state live in locals; they are
        # written back to ``self`` before anything that may look at them runs: every
        # await (other tasks only run then), every subscriber offer, effect dispatch and
        # the end of the loop. Envelopes are built only when someone takes them (a
        # subscriber or the journal); the history ring keeps one record per transition.
        inbox = self._inbox
        items = inbox._items
        pop = items.popleft
        send_waiters = inbox._send_waiters
        reducer = self._reducer
        record = self._history.append if self._history_limit else None
        session = self._session
        # SystemClock.now is time.time: call the C function directly (one Python call less).
        now = time.time if type(self._clock) is SystemClock else self._clock.now
        journal = self._journal
        state = self._state
        cause = self._signal_seq
        seq = self._seq
        budget = _YIELD_EVERY
        try:
            while True:
                if not items:
                    self._state, self._signal_seq, self._seq = state, cause, seq
                    if inbox._closed:
                        break
                    budget = _YIELD_EVERY
                    await inbox.wait_nonempty()
                    continue
                signal = pop()
                if send_waiters:
                    send_waiters[0].set()
                cause += 1
                at = now()
                if journal is not None:
                    journal.record_signal(cause, at, signal)
                try:
                    t: object = reducer(state, signal)
                    if type(t) is not Transition and not isinstance(t, Transition):
                        raise ReducerContractError(f"the reducer returned {type(t).__name__}, not a Transition")
                except Exception as exc:
                    self._state, self._signal_seq, self._seq = state, cause, seq
                    kind = "contract" if isinstance(exc, ReducerContractError) else "reducer"
                    contract = (
                        kind == "contract" and exc.__traceback__ is not None and exc.__traceback__.tb_next is None
                    )
                    message = str(exc) if contract else f"{type(exc).__name__}: {exc}"
                    await self._reducer_failed(signal, kind, message, None if contract else exc, at)
                    seq = self._seq
                    if self._phase is _Phase.FAILED:
                        break
                    continue
                state = t.state
                events = t.events
                if events:
                    if type(events) is not tuple:
                        # A copy: the ring keeps the events, and a list the reducer still
                        # holds (or an iterable) must not change what was published.
                        events = tuple(events)
                    count = len(events)
                    if record is not None:
                        record((seq + 1, at, t.turn, cause, events))
                    subs = self._subs
                    if subs or journal is not None:
                        self._state, self._signal_seq = state, cause
                        turn = t.turn
                        for event in events:
                            seq += 1
                            env = Envelope(seq, at, session, turn, cause, event)
                            if journal is not None:
                                journal.record_event(env)
                            self._seq = seq
                            for sub in subs:
                                if sub._filtered and not sub._accepts(env):
                                    continue
                                if not sub._offer(env):
                                    await sub._offer_blocking(env)
                            subs = self._subs
                    else:
                        seq += count
                effects = t.effects
                if effects or t.terminal or journal is not None:
                    self._state, self._signal_seq, self._seq = state, cause, seq
                    if journal is not None:
                        if journal.due_snapshot():
                            journal.record_snapshot(cause, seq, at, state)
                        if journal.must_wait(bool(effects) and not t.terminal):
                            await journal.flush()  # write-ahead: the effects' cause is durable first
                    if t.terminal:
                        self._phase = _Phase.TERMINATED
                        self._outcomes_discarded += len(effects)
                        self._terminate()
                        break
                    for effect in effects:
                        self._dispatch(effect)
                budget -= 1
                if not budget:
                    budget = _YIELD_EVERY
                    self._state, self._signal_seq, self._seq = state, cause, seq
                    await anyio.lowlevel.checkpoint()
        finally:
            self._state, self._signal_seq, self._seq = state, cause, seq
            self._drained.set()
        self._end_subscriptions()
        self._ended.set()

    async def _publish(self, events: Iterable[Event], turn: str | None, at: float) -> None:
        session = self._session
        cause = self._signal_seq
        for event in events:
            self._seq = seq = self._seq + 1
            if self._history_limit:
                self._history.append((seq, at, turn, cause, (event,)))
            env = Envelope(seq, at, session, turn, cause, event)
            if self._journal is not None:
                self._journal.record_event(env)
            for sub in self._subs:
                if sub._filtered and not sub._accepts(env):
                    continue
                if not sub._offer(env):
                    await sub._offer_blocking(env)

    async def _reducer_failed(
        self, signal: Signal, kind: str, message: str, exc: BaseException | None, at: float
    ) -> None:
        self._reducer_errors += 1
        fatal = self._on_error is OnReducerError.STOP
        error: ReducerError
        if kind == "contract":
            error = ReducerContractError(message, signal_seq=self._signal_seq)
        else:
            error = ReducerError(message, signal_seq=self._signal_seq)
        if exc is not None:
            error.__cause__ = exc
        event = ErrorEvent(
            kind=kind,
            message=message,
            signal_seq=self._signal_seq,
            signal_type=type(signal).__name__,
            fatal=fatal,
        )
        await self._publish((event,), None, at)
        if fatal:
            self._failure = error
            self._phase = _Phase.FAILED
            self._terminate()

    def _terminate(self) -> None:
        self._signals_discarded += len(self._inbox.close())
        for _, scope in self._running.values():
            scope.cancel()
        for scope in self._timers.values():
            scope.cancel()
        self._timers.clear()

    # -- effects ------------------------------------------------------------------------

    def _dispatch(self, effect: Effect) -> None:
        tg = self._tg
        assert tg is not None
        if isinstance(effect, StartTimer):
            old = self._timers.pop(effect.key, None)
            if old is not None:
                old.cancel()
            scope = anyio.CancelScope()
            self._timers[effect.key] = scope
            tg.start_soon(self._run_timer, effect, scope)
            return
        if isinstance(effect, CancelTimer):
            old = self._timers.pop(effect.key, None)
            if old is not None:
                old.cancel()
            return
        if isinstance(effect, Feed):
            tg.start_soon(self._deliver_outcome, effect.signal)
            return
        if isinstance(effect, CancelEffect):
            for running, scope in self._running.values():
                if running.key == effect.target:
                    scope.cancel()
            return
        handler = self._handler_for(type(effect))
        self._effects_started += 1
        self._running_ids += 1
        scope = anyio.CancelScope()
        ident = self._running_ids
        self._running[ident] = (effect, scope)
        tg.start_soon(self._run_effect, ident, effect, handler, scope)

    def _handler_for(self, effect_type: type[Effect]) -> Handler | None:
        handler = self._handlers.get(effect_type)
        if handler is None:
            for base in effect_type.__mro__[1:]:
                handler = self._handlers.get(base)
                if handler is not None:
                    self._handlers[effect_type] = handler
                    break
        return handler

    async def _run_timer(self, effect: StartTimer, scope: anyio.CancelScope) -> None:
        from oturn.core.builtins import TimerFired

        with scope:
            await self._clock.sleep(effect.delay)
            if self._timers.get(effect.key) is scope:
                del self._timers[effect.key]
            await self._deliver_outcome(TimerFired(key=effect.key))

    async def _run_effect(self, ident: int, effect: Effect, handler: Handler | None, scope: anyio.CancelScope) -> None:
        outcome: Signal
        try:
            with scope:
                if handler is None:
                    raise NoHandlerError(f"no handler is registered for {type(effect).__name__}")
                result = await handler(effect, EffectContext(self, effect))
                if result is None:
                    outcome = EffectCompleted(effect=effect)
                elif isinstance(result, Signal):
                    outcome = result
                else:
                    raise UsageError(
                        f"the handler for {type(effect).__name__} returned {type(result).__name__};"
                        " it must return a Signal or None"
                    )
            if scope.cancelled_caught:
                outcome = EffectCancelled(effect=effect)
        except Exception as exc:
            self._effects_failed += 1
            kind = "no_handler" if isinstance(exc, NoHandlerError) else "error"
            outcome = EffectFailed(effect=effect, error=ErrorInfo.from_exception(exc, kind=kind))
        finally:
            self._running.pop(ident, None)
        await self._deliver_outcome(outcome)

    async def _deliver_outcome(self, outcome: Signal) -> None:
        try:
            await self._inbox.put(outcome)
        except ClosedError:
            self._outcomes_discarded += 1

    # -- introspection ------------------------------------------------------------------

    @property
    def state(self) -> S:
        """The current state (the result of the last successful reduction)."""
        return self._state

    @property
    def session(self) -> str:
        """The session id stamped on every envelope."""
        return self._session

    @property
    def clock(self) -> Clock:
        """The clock this nucleus reads time from."""
        return self._clock

    @property
    def last_seq(self) -> int:
        """The seq of the last published envelope (0 before the first)."""
        return self._seq

    @property
    def failure(self) -> ReducerError | None:
        """The error that stopped the nucleus under ``on_reducer_error="stop"``."""
        return self._failure

    @property
    def closed(self) -> bool:
        """True once the nucleus accepts no more signals."""
        return self._inbox.closed

    def history(self) -> list[Envelope]:
        """The envelopes still held by the history ring, oldest first."""
        return self._ring(1)

    def _oldest(self) -> int | None:
        """The oldest seq the history ring serves, or None when it holds nothing."""
        if not self._history:
            return None
        return max(self._history[0][0], self._seq - self._history_limit + 1)

    def _ring(self, from_seq: int) -> list[Envelope]:
        """The envelopes the history ring serves from ``from_seq`` on, oldest first."""
        low = max(from_seq, self._seq - self._history_limit + 1)
        session = self._session
        out: list[Envelope] = []
        for first, at, turn, cause, events in self._history:
            if first + len(events) <= low:
                continue
            for offset, event in enumerate(events):
                if first + offset >= low:
                    out.append(Envelope(first + offset, at, session, turn, cause, event))
        return out

    def statistics(self) -> NucleusStatistics:
        """Counters of this nucleus."""
        return NucleusStatistics(
            state=self._phase.value,
            signals_reduced=self._signal_seq,
            last_signal_seq=self._signal_seq,
            last_seq=self._seq,
            events_published=self._seq - self._seq_base,
            reducer_errors=self._reducer_errors,
            inbox_depth=len(self._inbox),
            inbox_capacity=self._inbox.capacity,
            inbox_peak=self._inbox.peak,
            subscribers=len(self._subs),
            effects_started=self._effects_started,
            effects_running=len(self._running),
            effects_failed=self._effects_failed,
            timers_pending=len(self._timers),
            outcomes_discarded=self._outcomes_discarded,
            signals_discarded=self._signals_discarded,
            history_size=0 if not self._history else self._seq - (self._oldest() or 0) + 1,
        )

    def __repr__(self) -> str:
        return (
            f"<Nucleus {self._session or hex(id(self))} {self._phase.value} seq={self._seq}"
            f" signals={self._signal_seq} inbox={len(self._inbox)}/{self._inbox.capacity}"
            f" subscribers={len(self._subs)} effects={len(self._running)}>"
        )
