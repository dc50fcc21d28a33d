"""The LLM agent: the turn reducer (pure), its signals, events and effects, and the session runtime."""

from oturn.agent.agent import Agent
from oturn.agent.model import Model
from oturn.agent.session import InputRejectedError, Session
from oturn.agent.state import AgentState, PendingCall, PendingChoice
from oturn.agent.turn import TurnConfig, TurnReducer
from oturn.agent.turn_stream import TurnStream
from oturn.agent.usage import Usage

__all__ = [
    "Agent",
    "AgentState",
    "InputRejectedError",
    "Model",
    "PendingCall",
    "PendingChoice",
    "Session",
    "TurnConfig",
    "TurnReducer",
    "TurnStream",
    "Usage",
]
