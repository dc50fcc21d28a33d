"""The wire format: one typed encoder/decoder for the signals, events and state of a reducer.

Stores and the cluster bridge keep messages as msgspec JSON (the ``type`` field is the
tag). Decoding is always into a closed, declared set of types — never by importing a
class named in the data, never by unpickling — so a record of a type the codec does
not know is reported, not guessed.

::

    codec = Codec(signals=[UserInput, ModelStream, ...], events=[...], effects=[CallModel, RunTool],
                  state=AgentState)
    data = codec.encode(signal)
    signal = codec.decode_signal(data)        # raises DecodeError (msgspec's) on bad data

The outcome signals the nucleus makes (:class:`~oturn.EffectCompleted`,
:class:`~oturn.EffectFailed`, :class:`~oturn.EffectCancelled`) and
:class:`~oturn.TimerFired` are always included, parametrised over ``effects``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import reduce
from operator import or_
from typing import Any, Generic, TypeVar

import msgspec

from oturn._exceptions import UsageError
from oturn.core.builtins import EffectCancelled, EffectCompleted, EffectFailed, ErrorEvent, TimerFired
from oturn.core.messages import Effect, Event, Signal

__all__ = ["Codec"]

S = TypeVar("S")


def _union(types: Iterable[Any]) -> Any:
    items = list(dict.fromkeys(types))
    if not items:
        raise UsageError("a codec needs at least one type for each kind it decodes")
    return reduce(or_, items[1:], items[0]) if len(items) > 1 else items[0]


def _check_tags(kind: str, types: Iterable[Any]) -> None:
    seen: dict[str, type[Any]] = {}
    for t in types:
        tag = getattr(t, "__struct_config__", None)
        name = tag.tag if tag is not None else None
        if not isinstance(name, str):
            raise UsageError(f"{t!r} is not a tagged msgspec Struct and cannot be a {kind}")
        other = seen.get(name)
        if other is not None and other is not t:
            raise UsageError(f"two {kind} types share the tag {name!r}: {other!r} and {t!r}")
        seen[name] = t


class Codec(Generic[S]):
    """Encode/decode a reducer's signals, events and state (msgspec JSON)."""

    def __init__(
        self,
        *,
        signals: Iterable[type[Signal]],
        events: Iterable[type[Event]],
        effects: Iterable[type[Effect]] = (),
        state: type[S] | Any = Any,
    ) -> None:
        signal_types = list(dict.fromkeys(signals))
        effect_types = list(dict.fromkeys(effects))
        event_types = list(dict.fromkeys([*events, ErrorEvent]))
        for t in signal_types:
            if not (isinstance(t, type) and issubclass(t, Signal)):
                raise UsageError(f"signals= takes Signal subclasses; got {t!r}")
        for e in effect_types:
            if not (isinstance(e, type) and issubclass(e, Effect)):
                raise UsageError(f"effects= takes Effect subclasses; got {e!r}")
        for v in event_types:
            if not (isinstance(v, type) and issubclass(v, Event)):
                raise UsageError(f"events= takes Event subclasses; got {v!r}")
        outcome: list[Any] = [TimerFired]
        if effect_types:
            any_effect = _union(effect_types)
            outcome += [EffectCompleted[any_effect], EffectFailed[any_effect], EffectCancelled[any_effect]]  # type: ignore[valid-type]
        all_signals: list[Any] = [t for t in signal_types if t not in (TimerFired,)] + outcome
        _check_tags("signal", [t.__origin__ if hasattr(t, "__origin__") else t for t in all_signals])
        _check_tags("event", event_types)
        self.signal_types = tuple(signal_types)
        self.event_types = tuple(event_types)
        self.effect_types = tuple(effect_types)
        self.state_type = state
        # Sets and dicts in sorted order: the same value gives the same bytes in every
        # process (a frozenset's iteration order depends on the hash seed), which replay
        # verification and snapshots rely on.
        self._encoder = msgspec.json.Encoder(order="deterministic")
        self._signals = msgspec.json.Decoder(_union(all_signals))
        self._events = msgspec.json.Decoder(_union(event_types))
        self._state: msgspec.json.Decoder[Any] = msgspec.json.Decoder(state)
        self._tags = {
            t.__struct_config__.tag: t  # type: ignore[attr-defined]
            for t in [*signal_types, *event_types, TimerFired, EffectCompleted, EffectFailed, EffectCancelled]
        }

    def encode(self, value: Any) -> bytes:
        """msgspec JSON of a signal, an event or a state; the same bytes for equal values in
        every process (sets and dict keys are written sorted)."""
        return self._encoder.encode(value)

    def decode_signal(self, data: bytes | memoryview) -> Signal:
        """A signal of one of the declared types (``msgspec.DecodeError`` / ``ValidationError`` otherwise)."""
        result: Signal = self._signals.decode(data)
        return result

    def decode_event(self, data: bytes | memoryview) -> Event:
        """An event of one of the declared types."""
        result: Event = self._events.decode(data)
        return result

    def decode_state(self, data: bytes | memoryview) -> S:
        """A state of the declared state type."""
        result: S = self._state.decode(data)
        return result

    def knows(self, tag: str) -> bool:
        """Whether ``tag`` names a signal or event type of this codec."""
        return tag in self._tags

    def __repr__(self) -> str:
        return (
            f"<Codec signals={len(self.signal_types)} events={len(self.event_types)}"
            f" effects={len(self.effect_types)} state={getattr(self.state_type, '__name__', self.state_type)!r}>"
        )
