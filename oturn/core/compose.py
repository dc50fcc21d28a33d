"""Build one reducer from parts, each owning a slice of the state.

Parts are listed from the top (closest to the application) to the bottom (closest to
the I/O). A signal from outside enters at the bottom and rises through every part's
``reduce``; each part may let it rise unchanged (``forward=None``, the default),
replace it with other signals, or swallow it (``forward=()``). The effects a part
emits descend through the parts below it: a part that defines ``on_effect`` is
middleware and may pass an effect on (``effects=(effect,)``), transform it, hold it
in its slice (``effects=()``), answer it itself (``forward=(answer_signal,)``, which
then rises from that part upwards) or just count it. Effects that reach the bottom
leave the composed reducer for the effect handlers; their outcome signals come back in
at the bottom, so every middleware part sees them before the part that asked.

The pipeline stages (coalesce, rate limit, breaker, retry) and the cluster bridge are
such middleware parts. Everything here is pure: given the same slices and signal, the
same transition comes out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from oturn._exceptions import ReducerContractError, UsageError
from oturn.core.messages import Effect, Event, Signal
from oturn.core.transition import Transition

__all__ = ["ComposedReducer", "ComposedState", "FunctionPart", "Part", "compose", "part"]

S = TypeVar("S")

_MAX_DEPTH = 64


@runtime_checkable
class Part(Protocol[S]):
    """One component of a composed reducer.

    ``initial()`` gives its slice; ``reduce(slice, signal)`` handles a signal rising
    through it. Middleware parts also define ``on_effect(slice, effect)``, called for
    each effect descending from the parts above; its transition's ``effects`` continue
    down and its ``forward`` signals rise back up as answers.
    """

    def initial(self) -> S: ...

    def reduce(self, state: S, signal: Signal, /) -> Transition[S]: ...


class FunctionPart(Generic[S]):
    """A :class:`Part` made of plain functions (see :func:`part`)."""

    __slots__ = ("_initial", "_on_effect", "_reduce")

    def __init__(
        self,
        reduce: Callable[[S, Signal], Transition[S]],
        initial: S,
        on_effect: Callable[[S, Effect], Transition[S]] | None = None,
    ) -> None:
        self._reduce = reduce
        self._initial = initial
        self._on_effect = on_effect

    def initial(self) -> S:
        return self._initial

    def reduce(self, state: S, signal: Signal, /) -> Transition[S]:
        return self._reduce(state, signal)

    def on_effect(self, state: S, effect: Effect, /) -> Transition[S]:
        if self._on_effect is None:
            return Transition(state, effects=(effect,))
        return self._on_effect(state, effect)

    @property
    def is_middleware(self) -> bool:
        return self._on_effect is not None

    def __repr__(self) -> str:
        return f"part({getattr(self._reduce, '__qualname__', self._reduce)!r})"


def part(
    reduce: Callable[[S, Signal], Transition[S]],
    initial: S,
    *,
    on_effect: Callable[[S, Effect], Transition[S]] | None = None,
) -> FunctionPart[S]:
    """Make a part from a reducer function, its initial slice and an optional ``on_effect``."""
    return FunctionPart(reduce, initial, on_effect)


class ComposedState(Mapping[str, Any]):
    """The state of a composed reducer: an immutable mapping of part name to slice."""

    __slots__ = ("_names", "_slices")

    def __init__(self, names: tuple[str, ...], slices: tuple[Any, ...]) -> None:
        self._names = names
        self._slices = slices

    def __getitem__(self, name: str) -> Any:
        try:
            return self._slices[self._names.index(name)]
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ComposedState):
            return self._names == other._names and self._slices == other._slices
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._names, self._slices))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={s!r}" for n, s in zip(self._names, self._slices, strict=True))
        return f"ComposedState({inner})"

    @property
    def slices(self) -> tuple[Any, ...]:
        """The slices in part order."""
        return self._slices


class _Run:
    """The mutable scratch space of one composed reduction (never escapes it)."""

    __slots__ = ("depth", "effects", "events", "slices", "terminal", "turn")

    def __init__(self, slices: list[Any]) -> None:
        self.slices = slices
        self.events: list[Event] = []
        self.effects: list[Effect] = []
        self.terminal = False
        self.turn: str | None = None
        self.depth = 0


class ComposedReducer:
    """A reducer built by :func:`compose`; call ``initial()`` for its starting state."""

    __slots__ = ("_middleware", "_names", "_parts")

    def __init__(self, parts: Mapping[str, Part[Any]]) -> None:
        if not parts:
            raise UsageError("compose() needs at least one part")
        for name, p in parts.items():
            if isinstance(p, type):
                raise UsageError(f"part {name!r} is a class ({p.__name__}); pass an instance: {p.__name__}()")
            if not callable(getattr(p, "reduce", None)) or not callable(getattr(p, "initial", None)):
                raise UsageError(f"part {name!r} is not a Part (it needs initial() and reduce()); got {p!r}")
        self._names = tuple(parts)
        self._parts = tuple(parts.values())
        self._middleware = tuple(
            getattr(p, "is_middleware", callable(getattr(p, "on_effect", None))) for p in self._parts
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The part names, top to bottom."""
        return self._names

    def reduce(self, state: ComposedState, signal: Signal, /) -> Transition[ComposedState]:
        """The :class:`Part` spelling of ``__call__``, so a composed reducer can be a part of another."""
        return self(state, signal)

    def initial(self) -> ComposedState:
        """The starting state: every part's ``initial()`` slice."""
        return ComposedState(self._names, tuple(p.initial() for p in self._parts))

    def __call__(self, state: ComposedState, signal: Signal, /) -> Transition[ComposedState]:
        if not isinstance(state, ComposedState) or state._names != self._names:
            raise ReducerContractError("a composed reducer needs the ComposedState its initial() made")
        run = _Run(list(state._slices))
        self._rise(run, len(self._parts) - 1, signal)
        return Transition(
            ComposedState(self._names, tuple(run.slices)),
            run.events,
            effects=run.effects,
            terminal=run.terminal,
            turn=run.turn,
        )

    def _absorb(self, run: _Run, index: int, t: object, what: str) -> Transition[Any]:
        if not isinstance(t, Transition):
            raise ReducerContractError(
                f"part {self._names[index]!r} {what} returned {type(t).__name__}, not a Transition"
            )
        run.slices[index] = t.state
        if t.events:
            run.events.extend(t.events)
        if t.terminal:
            run.terminal = True
        if t.turn is not None and run.turn is None:
            run.turn = t.turn
        return t

    def _enter(self, run: _Run) -> None:
        run.depth += 1
        if run.depth > _MAX_DEPTH:
            raise ReducerContractError(
                f"composed parts forwarded signals or effects more than {_MAX_DEPTH} levels deep (a loop?)"
            )

    def _rise(self, run: _Run, start: int, signal: Signal) -> None:
        self._enter(run)
        for i in range(start, -1, -1):
            t = self._absorb(run, i, self._parts[i].reduce(run.slices[i], signal), "reduce()")
            for effect in t.effects:
                self._descend(run, i + 1, effect)
            if t.forward is not None:
                for forwarded in t.forward:
                    if i > 0:
                        self._rise(run, i - 1, forwarded)
                break
        run.depth -= 1

    def _descend(self, run: _Run, start: int, effect: Effect) -> None:
        self._enter(run)
        for j in range(start, len(self._parts)):
            if not self._middleware[j]:
                continue
            t = self._absorb(run, j, self._parts[j].on_effect(run.slices[j], effect), "on_effect()")  # type: ignore[attr-defined]
            for answer in t.forward or ():
                if j > 0:
                    self._rise(run, j - 1, answer)
            for passed in t.effects:
                self._descend(run, j + 1, passed)
            break
        else:
            run.effects.append(effect)
        run.depth -= 1


def compose(*named: tuple[str, Part[Any]], **parts: Part[Any]) -> ComposedReducer:
    """Build one reducer from parts, top (application) to bottom (I/O).

    ``compose(turn=TurnPart(), retry=RetryStage())`` or, where names are not
    identifiers, ``compose(("turn", TurnPart()), ("retry", RetryStage()))``.
    """
    ordered: dict[str, Part[Any]] = {}
    for item in named:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise UsageError(f"compose() positional arguments are (name, part) pairs; got {item!r}")
        if item[0] in ordered:
            raise UsageError(f"part name {item[0]!r} given twice")
        ordered[item[0]] = item[1]
    for name, p in parts.items():
        if name in ordered:
            raise UsageError(f"part name {name!r} given twice")
        ordered[name] = p
    return ComposedReducer(ordered)
