"""What a store keeps: encoded records with their place in a session's log."""

from __future__ import annotations

import msgspec

__all__ = ["EventRecord", "SessionInfo", "SignalRecord", "SnapshotRecord"]


class SignalRecord(msgspec.Struct, frozen=True, gc=False):
    """One signal of a session's log: its ``seq`` (1, 2, ...), the nucleus time ``at`` it was
    reduced, its ``type`` tag and the msgspec-JSON ``data`` (the tagged signal)."""

    seq: int
    at: float
    type: str
    data: bytes


class EventRecord(msgspec.Struct, frozen=True, gc=False):
    """One published envelope: ``seq``, the signal ``cause`` that produced it, ``at``, ``turn``,
    the event's ``type`` tag and its msgspec-JSON ``data``."""

    seq: int
    cause: int
    at: float
    turn: str | None
    type: str
    data: bytes


class SnapshotRecord(msgspec.Struct, frozen=True):
    """The reduced state after signal ``signal_seq`` (``event_seq`` events were published by then)."""

    signal_seq: int
    event_seq: int
    at: float
    data: bytes


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A session as listed by a store."""

    id: str
    created_at: float
    updated_at: float
    signals: int
    events: int
    parent: str | None = None
    fork_seq: int | None = None
    meta: dict[str, str] = msgspec.field(default_factory=dict)
