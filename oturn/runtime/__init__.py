"""The runtime: the nucleus, subscriptions, clocks and ``run`` (anyio: asyncio, uvloop, trio)."""

from oturn.runtime.clock import Clock, SystemClock
from oturn.runtime.effects import EffectContext, Handler
from oturn.runtime.inbox import Inbox
from oturn.runtime.nucleus import Nucleus, OnReducerError
from oturn.runtime.policy import Policy
from oturn.runtime.run import run
from oturn.runtime.statistics import NucleusStatistics, SubscriptionStatistics
from oturn.runtime.subscription import QueueSubscription, Subscription

__all__ = [
    "Clock",
    "EffectContext",
    "Handler",
    "Inbox",
    "Nucleus",
    "NucleusStatistics",
    "OnReducerError",
    "Policy",
    "QueueSubscription",
    "Subscription",
    "SubscriptionStatistics",
    "SystemClock",
    "run",
]
