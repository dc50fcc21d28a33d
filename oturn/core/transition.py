"""What a reducer returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from oturn.core.messages import Effect, Event, Signal

__all__ = ["Transition"]

S = TypeVar("S")


class Transition(Generic[S]):
    """The result of reducing one signal: the new state and what it caused.

    - ``state``: the new state (the old one, unchanged, if nothing happened).
    - ``events``: published to subscribers, in order.
    - ``effects``: handed to the effect handlers (or, inside :func:`~oturn.compose`, to
      the middleware parts below).
    - ``terminal``: the nucleus ends after publishing these events.
    - ``turn``: the turn id stamped on this transition's envelopes.
    - ``forward``: inside :func:`~oturn.compose` only — the signals a part passes on
      to the parts above it. ``None`` (the default) passes the signal it got unchanged;
      ``()`` swallows it.

    OTURN's ``Transition(state=..., events=[...], terminal=...)`` keeps working.
    """

    __slots__ = ("effects", "events", "forward", "state", "terminal", "turn")

    state: S
    events: Sequence[Event]
    effects: Sequence[Effect]
    terminal: bool
    turn: str | None
    forward: Sequence[Signal] | None

    def __init__(
        self,
        state: S,
        events: Sequence[Event] = (),
        *,
        effects: Sequence[Effect] = (),
        terminal: bool = False,
        turn: str | None = None,
        forward: Sequence[Signal] | None = None,
    ) -> None:
        self.state = state
        self.events = events
        self.effects = effects
        self.terminal = terminal
        self.turn = turn
        self.forward = forward

    def __repr__(self) -> str:
        parts = [f"state={self.state!r}", f"events={list(self.events)!r}"]
        if self.effects:
            parts.append(f"effects={list(self.effects)!r}")
        if self.terminal:
            parts.append("terminal=True")
        if self.turn is not None:
            parts.append(f"turn={self.turn!r}")
        if self.forward is not None:
            parts.append(f"forward={list(self.forward)!r}")
        return f"Transition({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transition):
            return NotImplemented
        return (
            self.state == other.state
            and list(self.events) == list(other.events)
            and list(self.effects) == list(other.effects)
            and self.terminal == other.terminal
            and self.turn == other.turn
            and (None if self.forward is None else list(self.forward))
            == (None if other.forward is None else list(other.forward))
        )

    __hash__ = None  # type: ignore[assignment]

    def _replace(self, **changes: Any) -> Transition[S]:
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        state = fields.pop("state")
        events = fields.pop("events")
        return Transition(state, events, **fields)
