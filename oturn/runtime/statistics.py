"""Statistics snapshots (immutable, cheap to take)."""

from __future__ import annotations

import msgspec

__all__ = ["NucleusStatistics", "SubscriptionStatistics"]


class SubscriptionStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription's counters at one moment.

    ``delivered`` envelopes were handed to the consumer; ``dropped`` were discarded by
    the policy; ``merged`` were folded into a later envelope by ``coalesce``.
    """

    policy: str
    buffer: int
    depth: int
    peak: int
    delivered: int
    dropped: int
    merged: int
    replayed: int
    closed: bool
    disconnected: bool


class NucleusStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A nucleus's counters at one moment."""

    state: str
    signals_reduced: int
    last_signal_seq: int
    last_seq: int
    events_published: int
    reducer_errors: int
    inbox_depth: int
    inbox_capacity: int
    inbox_peak: int
    subscribers: int
    effects_started: int
    effects_running: int
    effects_failed: int
    timers_pending: int
    outcomes_discarded: int
    signals_discarded: int
    history_size: int
