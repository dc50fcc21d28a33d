"""The pure core: messages, envelopes, transitions, reducers and composition (no I/O)."""

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
    TimerFired,
)
from oturn.core.codec import Codec
from oturn.core.compose import ComposedReducer, ComposedState, FunctionPart, Part, compose, part
from oturn.core.envelope import Envelope
from oturn.core.messages import Effect, Event, Message, Signal, wire_types
from oturn.core.reducer import Reducer
from oturn.core.transition import Transition

__all__ = [
    "CancelEffect",
    "CancelTimer",
    "Codec",
    "ComposedReducer",
    "ComposedState",
    "Effect",
    "EffectCancelled",
    "EffectCompleted",
    "EffectFailed",
    "Envelope",
    "ErrorEvent",
    "ErrorInfo",
    "Event",
    "Feed",
    "FunctionPart",
    "Message",
    "Part",
    "Reducer",
    "Signal",
    "StartTimer",
    "TimerFired",
    "Transition",
    "compose",
    "part",
    "wire_types",
]
