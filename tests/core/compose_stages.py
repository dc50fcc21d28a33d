"""Small pure stages for the compose tests: an application part, a caching/coalescing
middleware, a rejecting gate, a pass-through counter and a tracer.

Imported as ``compose_stages`` (``tests/core`` is on ``sys.path``: no ``__init__.py``).

- :class:`App` (top): turns ``Want(resource, request)`` into a ``Fetch`` effect and every
  answer (``Fetched``, ``Rejected``, ``EffectFailed`` of a ``Fetch``) into one event.
- :class:`Cache` (middleware): answers a ``Fetch`` for a cached resource itself (``source
  ="cache"``), holds a ``Fetch`` for a resource already in flight, passes the rest on;
  when the outcome of the leading ``Fetch`` rises back it caches a value and answers
  every held waiter with the same outcome. It counts everything in its slice.
- :class:`Gate` (middleware): ``Close``/``Open`` (swallowed) switch it; while closed it
  answers every ``Fetch`` with ``Rejected``.
- :func:`passthrough`: a middleware function part that passes everything, counting.
- :func:`tracer`: a function part that publishes a ``Trace`` event for every call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from oturn import (
    Effect,
    EffectCompleted,
    EffectFailed,
    ErrorInfo,
    Event,
    FunctionPart,
    Signal,
    Transition,
    part,
)

__all__ = [
    "App",
    "AppSlice",
    "Asked",
    "Cache",
    "CacheSlice",
    "Close",
    "Done",
    "Failed",
    "Fetch",
    "Fetched",
    "Gate",
    "GateSlice",
    "Got",
    "Open",
    "Ping",
    "Refused",
    "Rejected",
    "Trace",
    "Want",
    "failed",
    "passthrough",
    "tag_of",
    "tracer",
    "value_of",
]

# -- messages ----------------------------------------------------------------------------


class Want(Signal, frozen=True, kw_only=True, tag="cs_want"):
    """The application wants ``resource``; ``request`` identifies this request."""

    resource: str
    request: int


class Close(Signal, frozen=True, kw_only=True, tag="cs_close"):
    """Close the gate (swallowed by it)."""


class Open(Signal, frozen=True, kw_only=True, tag="cs_open"):
    """Open the gate (swallowed by it)."""


class Fetch(Effect, frozen=True, kw_only=True, tag="cs_fetch"):
    resource: str
    request: int


class Ping(Effect, frozen=True, kw_only=True, tag="cs_ping"):
    """An effect the cache does not know: it passes it on."""


class Fetched(Signal, frozen=True, kw_only=True, tag="cs_fetched"):
    """The answer to ``request``: from the origin (a handler), the cache, or a coalesced call."""

    resource: str
    request: int
    value: str
    source: str = "origin"


class Rejected(Signal, frozen=True, kw_only=True, tag="cs_rejected"):
    resource: str
    request: int
    reason: str


class Asked(Event, frozen=True, kw_only=True, tag="cs_asked"):
    request: int
    resource: str


class Got(Event, frozen=True, kw_only=True, tag="cs_got"):
    request: int
    resource: str
    value: str
    source: str


class Refused(Event, frozen=True, kw_only=True, tag="cs_refused"):
    request: int
    reason: str


class Failed(Event, frozen=True, kw_only=True, tag="cs_failed"):
    request: int
    message: str


class Done(Event, frozen=True, kw_only=True, tag="cs_done"):
    """The application saw an ``EffectCompleted`` of something that is not a ``Fetch``."""

    effect: Effect


class Trace(Event, frozen=True, kw_only=True, tag="cs_trace"):
    """``part`` was called: ``hook`` is ``reduce`` or ``on_effect``, ``what`` the message tag."""

    part: str
    hook: str
    what: str


def tag_of(message: Signal | Effect) -> str:
    tag = type(message).__struct_config__.tag
    return str(tag) if tag is not None else type(message).__name__


def value_of(resource: str) -> str:
    """What the fake origin answers for ``resource``."""
    return f"value-of-{resource}"


# -- the application part (top) ----------------------------------------------------------


class AppSlice(msgspec.Struct, frozen=True, kw_only=True):
    asked: int = 0
    answered: int = 0


class App:
    """The part that asks: ``Want`` -> ``Fetch`` effect; each answer -> one event."""

    def initial(self) -> AppSlice:
        return AppSlice()

    def reduce(self, state: AppSlice, signal: Signal, /) -> Transition[AppSlice]:
        answered = msgspec.structs.replace(state, answered=state.answered + 1)
        if isinstance(signal, Want):
            return Transition(
                msgspec.structs.replace(state, asked=state.asked + 1),
                (Asked(request=signal.request, resource=signal.resource),),
                effects=(Fetch(resource=signal.resource, request=signal.request),),
            )
        if isinstance(signal, Fetched):
            got = Got(request=signal.request, resource=signal.resource, value=signal.value, source=signal.source)
            return Transition(answered, (got,))
        if isinstance(signal, Rejected):
            return Transition(answered, (Refused(request=signal.request, reason=signal.reason),))
        if isinstance(signal, EffectFailed) and isinstance(signal.effect, Fetch):
            return Transition(answered, (Failed(request=signal.effect.request, message=signal.error.message),))
        if isinstance(signal, EffectCompleted):
            return Transition(state, (Done(effect=signal.effect),))
        return Transition(state)


# -- the caching / coalescing middleware ---------------------------------------------------

Pairs = tuple[tuple[str, str], ...]
Waiting = tuple[tuple[str, tuple[int, ...]], ...]


class CacheSlice(msgspec.Struct, frozen=True, kw_only=True):
    """``cached``: resource -> value; ``waiting``: resource in flight -> (leader, *held)."""

    cached: Pairs = ()
    waiting: Waiting = ()
    effects_seen: int = 0
    hits: int = 0
    held: int = 0
    passed: int = 0
    others_passed: int = 0
    signals_seen: int = 0
    outcomes: int = 0
    answered_held: int = 0

    def value(self, resource: str) -> str | None:
        return next((v for r, v in self.cached if r == resource), None)

    def waiters(self, resource: str) -> tuple[int, ...]:
        return next((w for r, w in self.waiting if r == resource), ())


def _without(waiting: Waiting, resource: str) -> Waiting:
    return tuple((r, w) for r, w in waiting if r != resource)


class Cache:
    """A caching, coalescing middleware part (pure; its slice is a :class:`CacheSlice`)."""

    def initial(self) -> CacheSlice:
        return CacheSlice()

    def on_effect(self, state: CacheSlice, effect: Effect, /) -> Transition[CacheSlice]:
        state = msgspec.structs.replace(state, effects_seen=state.effects_seen + 1)
        if not isinstance(effect, Fetch):
            return Transition(msgspec.structs.replace(state, others_passed=state.others_passed + 1), effects=(effect,))
        value = state.value(effect.resource)
        if value is not None:
            answer = Fetched(resource=effect.resource, request=effect.request, value=value, source="cache")
            return Transition(msgspec.structs.replace(state, hits=state.hits + 1), effects=(), forward=(answer,))
        waiters = state.waiters(effect.resource)
        if waiters:
            waiting = (*_without(state.waiting, effect.resource), (effect.resource, (*waiters, effect.request)))
            return Transition(msgspec.structs.replace(state, waiting=waiting, held=state.held + 1), effects=())
        waiting = (*state.waiting, (effect.resource, (effect.request,)))
        return Transition(msgspec.structs.replace(state, waiting=waiting, passed=state.passed + 1), effects=(effect,))

    def reduce(self, state: CacheSlice, signal: Signal, /) -> Transition[CacheSlice]:
        state = msgspec.structs.replace(state, signals_seen=state.signals_seen + 1)
        answers: Sequence[Signal]
        if (isinstance(signal, Fetched) and signal.source == "origin") or isinstance(signal, Rejected):
            resource, request = signal.resource, signal.request
        elif isinstance(signal, EffectFailed) and isinstance(signal.effect, Fetch):
            resource, request = signal.effect.resource, signal.effect.request
        else:
            return Transition(state)
        waiters = state.waiters(resource)
        if not waiters or waiters[0] != request:
            return Transition(state)  # not an outcome this stage is waiting for
        held = waiters[1:]
        if isinstance(signal, Fetched):
            answers = [signal, *(msgspec.structs.replace(signal, request=w, source="coalesced") for w in held)]
            cached = (*state.cached, (resource, signal.value))
        elif isinstance(signal, Rejected):
            answers = [signal, *(msgspec.structs.replace(signal, request=w) for w in held)]
            cached = state.cached
        else:
            assert isinstance(signal, EffectFailed)
            answers = [
                signal,
                *(EffectFailed(effect=Fetch(resource=resource, request=w), error=signal.error) for w in held),
            ]
            cached = state.cached
        new = msgspec.structs.replace(
            state,
            cached=cached,
            waiting=_without(state.waiting, resource),
            outcomes=state.outcomes + 1,
            answered_held=state.answered_held + len(held),
        )
        return Transition(new, forward=answers)


# -- the rejecting gate ---------------------------------------------------------------------


class GateSlice(msgspec.Struct, frozen=True, kw_only=True):
    open: bool = True
    passed: int = 0
    rejected: int = 0


class Gate:
    """Answers every ``Fetch`` with ``Rejected`` while its slice says it is closed."""

    def initial(self) -> GateSlice:
        return GateSlice()

    def reduce(self, state: GateSlice, signal: Signal, /) -> Transition[GateSlice]:
        if isinstance(signal, Close):
            return Transition(msgspec.structs.replace(state, open=False), forward=())
        if isinstance(signal, Open):
            return Transition(msgspec.structs.replace(state, open=True), forward=())
        return Transition(state)

    def on_effect(self, state: GateSlice, effect: Effect, /) -> Transition[GateSlice]:
        if isinstance(effect, Fetch) and not state.open:
            answer = Rejected(resource=effect.resource, request=effect.request, reason="closed")
            return Transition(msgspec.structs.replace(state, rejected=state.rejected + 1), forward=(answer,))
        return Transition(msgspec.structs.replace(state, passed=state.passed + 1), effects=(effect,))


# -- generic function parts ------------------------------------------------------------------


def passthrough() -> FunctionPart[tuple[int, int]]:
    """A middleware part that changes nothing; its slice counts (signals, effects) seen."""

    def reduce(state: tuple[int, int], signal: Signal) -> Transition[tuple[int, int]]:
        return Transition((state[0] + 1, state[1]))

    def on_effect(state: tuple[int, int], effect: Effect) -> Transition[tuple[int, int]]:
        return Transition((state[0], state[1] + 1), effects=(effect,))

    return part(reduce, (0, 0), on_effect=on_effect)


def tracer(
    name: str,
    *,
    middleware: bool = False,
    emit: Callable[[Signal], Sequence[Effect]] = lambda signal: (),
) -> FunctionPart[int]:
    """A part publishing ``Trace(part=name, ...)`` for every call; its slice counts the calls.

    ``emit`` gives the effects its ``reduce`` returns for a signal; a ``middleware``
    tracer passes every effect on.
    """

    def reduce(state: int, signal: Signal) -> Transition[int]:
        return Transition(state + 1, (Trace(part=name, hook="reduce", what=tag_of(signal)),), effects=emit(signal))

    def on_effect(state: int, effect: Effect) -> Transition[int]:
        return Transition(state + 1, (Trace(part=name, hook="on_effect", what=tag_of(effect)),), effects=(effect,))

    return part(reduce, 0, on_effect=on_effect if middleware else None)


def failed(fetch: Fetch, message: str = "origin down") -> EffectFailed[Fetch]:
    """The outcome a nucleus feeds back when the ``Fetch`` handler raised."""
    return EffectFailed(effect=fetch, error=ErrorInfo(type="builtins.RuntimeError", message=message))
