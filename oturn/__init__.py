"""oturn — the Orchestrated Task Unified Reactive Nucleus.

An embeddable runtime for turn-based systems: a pure reducer turns signals into
transitions, a nucleus fans the resulting events out to subscribers, and effect
handlers do the I/O at the edges. ``import oturn`` loads only the core and the
runtime; LiteLLM, redis, aiosqlite and textual are imported lazily where used.
The agent layer (``Agent``, ``tool``, ...) loads on first use of one of its names, so
that ``import oturn`` stays fast for applications that only use the nucleus.
"""

from typing import TYPE_CHECKING, Any

from oturn._exceptions import (
    AuthenticationError,
    BadRequest,
    ClosedError,
    CorruptRecordError,
    EffectError,
    HistoryUnavailableError,
    InboxFullError,
    InputRejectedError,
    InvalidPolicyError,
    InvalidSignalError,
    NoHandlerError,
    OturnError,
    PeerError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ReducerContractError,
    ReducerError,
    SchemaVersionError,
    SessionLockedError,
    StoreError,
    StreamDecodeError,
    StreamInterrupted,
    StreamStalled,
    SubscriberDisconnected,
    SubscriptionError,
    ToolArgumentsError,
    ToolError,
    ToolTimeoutError,
    UnknownToolError,
    UsageError,
    WouldBlock,
)
from oturn._version import __version__
from oturn.core import (
    CancelEffect,
    CancelTimer,
    Codec,
    ComposedReducer,
    ComposedState,
    Effect,
    EffectCancelled,
    EffectCompleted,
    EffectFailed,
    Envelope,
    ErrorEvent,
    ErrorInfo,
    Event,
    Feed,
    FunctionPart,
    Part,
    Reducer,
    Signal,
    StartTimer,
    TimerFired,
    Transition,
    compose,
    part,
)
from oturn.runtime import (
    Clock,
    EffectContext,
    Handler,
    Nucleus,
    NucleusStatistics,
    OnReducerError,
    Policy,
    QueueSubscription,
    Subscription,
    SubscriptionStatistics,
    SystemClock,
    run,
)

# Re-exported lazily: importing these pulls in pydantic (tools) and the agent layer.
_LAZY = {
    "Agent": "oturn.agent",
    "AgentState": "oturn.agent",
    "Model": "oturn.agent",
    "Session": "oturn.agent",
    "Tool": "oturn.tools",
    "ToolContext": "oturn.tools",
    "ToolRegistry": "oturn.tools",
    "Usage": "oturn.agent",
    "tool": "oturn.tools",
}

if TYPE_CHECKING:
    from oturn.agent import Agent, AgentState, Model, Session, Usage
    from oturn.tools import Tool, ToolContext, ToolRegistry, tool


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oturn' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Agent",
    "AgentState",
    "AuthenticationError",
    "BadRequest",
    "CancelEffect",
    "CancelTimer",
    "Clock",
    "ClosedError",
    "Codec",
    "ComposedReducer",
    "ComposedState",
    "CorruptRecordError",
    "Effect",
    "EffectCancelled",
    "EffectCompleted",
    "EffectContext",
    "EffectError",
    "EffectFailed",
    "Envelope",
    "ErrorEvent",
    "ErrorInfo",
    "Event",
    "Feed",
    "FunctionPart",
    "Handler",
    "HistoryUnavailableError",
    "InboxFullError",
    "InputRejectedError",
    "InvalidPolicyError",
    "InvalidSignalError",
    "Model",
    "NoHandlerError",
    "Nucleus",
    "NucleusStatistics",
    "OnReducerError",
    "OturnError",
    "Part",
    "PeerError",
    "Policy",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QueueSubscription",
    "RateLimited",
    "Reducer",
    "ReducerContractError",
    "ReducerError",
    "SchemaVersionError",
    "Session",
    "SessionLockedError",
    "Signal",
    "StartTimer",
    "StoreError",
    "StreamDecodeError",
    "StreamInterrupted",
    "StreamStalled",
    "SubscriberDisconnected",
    "Subscription",
    "SubscriptionError",
    "SubscriptionStatistics",
    "SystemClock",
    "TimerFired",
    "Tool",
    "ToolArgumentsError",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolTimeoutError",
    "Transition",
    "UnknownToolError",
    "Usage",
    "UsageError",
    "WouldBlock",
    "__version__",
    "compose",
    "part",
    "run",
    "tool",
]
