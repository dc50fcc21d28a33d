"""The agent's wire format: every signal, event and effect type of a session, and its state."""

from __future__ import annotations

from functools import cache

from oturn.agent import events as _events
from oturn.agent import signals as _signals
from oturn.agent.effects import CallModel, DeliverChoice, RunTool
from oturn.agent.state import AgentState
from oturn.core.codec import Codec
from oturn.core.messages import Event, Signal

__all__ = ["agent_codec"]


@cache
def agent_codec() -> Codec[AgentState]:
    """The codec of agent sessions (what the stores and the bridge encode and decode)."""
    signal_types = [getattr(_signals, name) for name in _signals.__all__]
    event_types = [getattr(_events, name) for name in _events.__all__]
    return Codec(
        signals=[t for t in signal_types if isinstance(t, type) and issubclass(t, Signal)],
        events=[t for t in event_types if isinstance(t, type) and issubclass(t, Event)],
        effects=[CallModel, RunTool, DeliverChoice],
        state=AgentState,
    )
