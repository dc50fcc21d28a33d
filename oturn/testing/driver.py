"""A synchronous driver: run a reducer over signals with no event loop.

:func:`drive` reduces signals exactly the way a :class:`~oturn.Nucleus` does — one at
a time, in order, stopping at a terminal transition, and (optionally) recording a
reducer that raises as an ``error`` event while leaving the state untouched — so that a
test can compare what a nucleus published with the pure reduction::

    result = drive(reducer, initial, signals)
    assert result.envelopes(session="s1", at=0.0) == captured_envelopes
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from oturn._exceptions import ReducerContractError, ReducerError
from oturn.core.builtins import ErrorEvent
from oturn.core.envelope import Envelope
from oturn.core.messages import Effect, Event, Signal
from oturn.core.reducer import Reducer
from oturn.core.transition import Transition

__all__ = ["Drive", "OnError", "Step", "drive"]

S = TypeVar("S")


class OnError(enum.StrEnum):
    """What :func:`drive` does when the reducer raises (or returns a non-Transition).

    - ``raise`` (the default): let the exception propagate (a contract violation raises
      :class:`~oturn.ReducerContractError`).
    - ``continue``: record it like a nucleus with ``on_reducer_error="continue"`` does
      (state untouched, an :class:`~oturn.ErrorEvent`), then go on.
    - ``stop``: record it like ``on_reducer_error="stop"`` (a fatal ``ErrorEvent``), then stop.
    """

    RAISE = "raise"
    CONTINUE = "continue"
    STOP = "stop"


class Step(Generic[S]):
    """The reduction of one signal.

    ``seq`` is the signal's sequence number (from 1, as the nucleus counts them);
    ``transition`` is ``None`` when the reducer failed, in which case ``error`` holds the
    :class:`~oturn.ReducerError` the nucleus would have recorded and ``events`` the
    ``error`` event it would have published.
    """

    __slots__ = ("error", "events", "seq", "signal", "transition", "turn")

    def __init__(
        self,
        seq: int,
        signal: Signal,
        transition: Transition[S] | None,
        events: tuple[Event, ...],
        turn: str | None,
        error: ReducerError | None,
    ) -> None:
        self.seq = seq
        self.signal = signal
        self.transition = transition
        self.events = events
        self.turn = turn
        self.error = error

    def __repr__(self) -> str:
        what = f"error={self.error!r}" if self.error is not None else f"transition={self.transition!r}"
        return f"Step(seq={self.seq}, signal={self.signal!r}, {what})"


class Drive(Generic[S]):
    """What :func:`drive` returns: every step, the final state, and helpers to compare.

    - ``steps``: one :class:`Step` per reduced signal.
    - ``state``: the state after the last successful reduction.
    - ``transitions``: the successful transitions, in order.
    - ``events``: every event a nucleus would have published, in order (``error`` events
      included).
    - ``effects``: the effects a nucleus would have started (those of a terminal
      transition are not started, so they are left out).
    - ``terminated``: a transition was terminal; ``failure``: the error that stopped it
      under ``on_error="stop"``; ``unreduced``: signals left over after either.
    """

    __slots__ = ("failure", "state", "steps", "terminated", "unreduced")

    def __init__(
        self,
        steps: list[Step[S]],
        state: S,
        *,
        terminated: bool,
        failure: ReducerError | None,
        unreduced: list[Signal],
    ) -> None:
        self.steps = steps
        self.state = state
        self.terminated = terminated
        self.failure = failure
        self.unreduced = unreduced

    @property
    def transitions(self) -> list[Transition[S]]:
        return [step.transition for step in self.steps if step.transition is not None]

    @property
    def events(self) -> list[Event]:
        return [event for step in self.steps for event in step.events]

    @property
    def effects(self) -> list[Effect]:
        return [
            effect
            for step in self.steps
            if step.transition is not None and not step.transition.terminal
            for effect in step.transition.effects
        ]

    @property
    def errors(self) -> list[ReducerError]:
        return [step.error for step in self.steps if step.error is not None]

    def envelopes(
        self,
        session: str = "",
        at: float | Callable[[int], float] = 0.0,
        *,
        first_seq: int = 1,
        first_cause: int = 1,
    ) -> list[Envelope]:
        """The envelopes a nucleus would have published for these signals.

        ``seq`` counts from ``first_seq``; ``cause`` is the signal's number (counted from
        ``first_cause``); ``turn`` comes from the transition (``None`` for ``error``
        events). ``at`` is a fixed time (a :class:`~oturn.testing.FakeClock` that did not
        move) or a function of the signal number giving the time it was reduced at.
        """
        out: list[Envelope] = []
        seq = first_seq
        offset = first_cause - 1
        for step in self.steps:
            if not step.events:
                continue
            cause = step.seq + offset
            stamp = at(cause) if callable(at) else float(at)
            for event in step.events:
                out.append(Envelope(seq=seq, at=stamp, session=session, turn=step.turn, cause=cause, event=event))
                seq += 1
        return out

    def __repr__(self) -> str:
        flags = " terminated" if self.terminated else ""
        flags += " failed" if self.failure is not None else ""
        return (
            f"<Drive steps={len(self.steps)} events={sum(len(s.events) for s in self.steps)}"
            f" errors={len(self.errors)}{flags} state={self.state!r}>"
        )


def drive(
    reducer: Reducer[S],
    initial_state: S,
    signals: Iterable[Signal],
    *,
    on_error: OnError | str = OnError.RAISE,
) -> Drive[S]:
    """Reduce ``signals`` in order, with no event loop, as a nucleus would.

    Reduction stops after a terminal transition (the remaining signals end up in
    ``Drive.unreduced``, as a nucleus refuses them). By default an exception raised by
    the reducer propagates; ``on_error="continue"`` or ``"stop"`` records it the way
    ``Nucleus(on_reducer_error=...)`` does, with the same ``error`` event.
    """
    mode = OnError(on_error)
    state = initial_state
    steps: list[Step[S]] = []
    terminated = False
    failure: ReducerError | None = None
    pending = list(signals)
    index = 0
    while index < len(pending):
        signal = pending[index]
        index += 1
        seq = index
        try:
            t: object = reducer(state, signal)
        except Exception as exc:
            if mode is OnError.RAISE:
                raise
            error = ReducerError(f"{type(exc).__name__}: {exc}", signal_seq=seq)
            error.__cause__ = exc
            steps.append(_failed(seq, signal, "reducer", error, fatal=mode is OnError.STOP))
        else:
            if not isinstance(t, Transition):
                message = f"the reducer returned {type(t).__name__}, not a Transition"
                contract = ReducerContractError(message, signal_seq=seq)
                if mode is OnError.RAISE:
                    raise contract
                steps.append(_failed(seq, signal, "contract", contract, fatal=mode is OnError.STOP))
            else:
                state = t.state
                steps.append(Step(seq, signal, t, tuple(t.events), t.turn, None))
                if t.terminal:
                    terminated = True
                    break
                continue
        if mode is OnError.STOP:
            failure = steps[-1].error
            break
    return Drive(steps, state, terminated=terminated, failure=failure, unreduced=pending[index:])


def _failed(seq: int, signal: Signal, kind: str, error: ReducerError, *, fatal: bool) -> Step[S]:
    event = ErrorEvent(kind=kind, message=str(error), signal_seq=seq, signal_type=type(signal).__name__, fatal=fatal)
    return Step(seq, signal, None, (event,), None, error)
