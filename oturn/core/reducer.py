"""The reducer protocol."""

from __future__ import annotations

from typing import Protocol, TypeVar

from oturn.core.messages import Signal
from oturn.core.transition import Transition

__all__ = ["Reducer"]

S = TypeVar("S")


class Reducer(Protocol[S]):
    """``(state, signal) -> Transition``: pure, deterministic, no I/O, no clock.

    The same state and signal must always give the same transition; time, ids and
    randomness enter as data inside signals. A reducer must not mutate ``state``:
    return a new one (the nucleus keeps the old state if the reducer raises).
    """

    def __call__(self, state: S, signal: Signal, /) -> Transition[S]: ...
