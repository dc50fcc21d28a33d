"""The envelope every event is delivered in."""

from __future__ import annotations

import msgspec

from oturn.core.messages import Event

__all__ = ["Envelope"]


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """One published event with its place in the stream.

    - ``seq``: strictly increasing per nucleus, starting at 1; gaps seen by a lossy
      subscriber are exactly its drops.
    - ``at``: the nucleus clock's time when the event was published.
    - ``session``: the session (workstream) id of the nucleus.
    - ``turn``: the turn id the reducer reported for this transition, if any.
    - ``cause``: the sequence number of the signal whose reduction produced the event.
    - ``event``: the event itself.
    """

    seq: int
    at: float
    session: str
    turn: str | None
    cause: int
    event: Event
