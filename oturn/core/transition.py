"""What a reducer returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import msgspec

from oturn.core.messages import Effect, Event, Signal

__all__ = ["Transition"]

S = TypeVar("S")


class _Outcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    # Keyword-only fields live on a base so that ``state`` and ``events`` stay positional.
    effects: Sequence[Effect] = ()
    terminal: bool = False
    turn: str | None = None
    forward: Sequence[Signal] | None = None


class Transition(_Outcome, Generic[S], frozen=True, gc=False):
    """The result of reducing one signal: the new state and what it caused.

    - ``state``: the new state (the old one, unchanged, if nothing happened).
    - ``events``: published to subscribers, in order.
    - ``effects`` (keyword): handed to the effect handlers (or, inside
      :func:`~oturn.compose`, to the middleware parts below).
    - ``terminal`` (keyword): the nucleus ends after publishing these events.
    - ``turn`` (keyword): the turn id stamped on this transition's envelopes.
    - ``forward`` (keyword): inside :func:`~oturn.compose` only — the signals a part
      passes on to the parts above it. ``None`` (the default) passes the signal it got
      unchanged; ``()`` swallows it.

    ``Transition(state, events)`` and OTURN's ``Transition(state=..., events=[...],
    terminal=...)`` both work. Instances are immutable (a msgspec Struct: creating
    one costs about as much as a tuple).
    """

    state: S
    events: Sequence[Event] = ()
