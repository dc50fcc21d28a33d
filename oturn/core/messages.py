"""The three kinds of message: signals in, events out, effects to the edges.

All three are frozen, keyword-only, tagged msgspec Structs. The tag (the ``type``
field on the wire) is the class name unless a subclass names one
(``class AssistantDelta(Event, tag="assistant_delta")``); msgspec passes a named tag
on to subclasses that name none, so give every class that goes on the wire its own
tag (two classes sharing one cannot be told apart by a decoder). The same types are the wire
format of stores and the cluster bridge; :func:`wire_types` lists the concrete
subclasses known so far, from which one typed decoder is built at each boundary.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

__all__ = ["Effect", "Event", "Message", "Signal", "wire_types"]


class Message(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    """Base of :class:`Signal`, :class:`Event` and :class:`Effect` (not used directly)."""

    _registry: ClassVar[dict[type[Message], list[type[Message]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in (Signal, Event, Effect) if "Effect" in globals() else ():
            if issubclass(cls, base) and cls is not base:
                Message._registry.setdefault(base, []).append(cls)


class Signal(Message, frozen=True, kw_only=True):
    """Anything that enters a nucleus: user input, a stream chunk, a tool result, a timer firing, ...

    Subclass it to declare your own; fields are keyword-only and instances are immutable.
    """


class Event(Message, frozen=True, kw_only=True):
    """What subscribers see, delivered inside an :class:`~oturn.Envelope`."""

    def merge(self, later: Event) -> Event | None:
        """Return one event equivalent to ``self`` followed by ``later``, or ``None``.

        The ``coalesce`` subscription policy calls this to fold consecutive deltas into
        one. The default never merges; delta events override it.
        """
        return None


class Effect(Message, frozen=True, kw_only=True):
    """A request for I/O, as data, executed by a handler registered on the nucleus.

    ``key`` names a running effect so that it can be cancelled with
    :class:`~oturn.CancelEffect`; reducers derive it from their state (never from a
    random source), which keeps replays identical.
    """

    key: str | None = None


def wire_types(base: type[Message]) -> tuple[type[Message], ...]:
    """The concrete subclasses of ``base`` (``Signal``, ``Event`` or ``Effect``) defined so far."""
    return tuple(Message._registry.get(base, ()))
