"""oturn's exception tree.

Every exception oturn raises on purpose derives from :class:`OturnError`. Caller
mistakes (``UsageError``) are kept apart from failures of the things oturn talks to
(providers, tools, peers, stores), so that ``except UsageError`` never hides an
outage and ``except ProviderError`` never hides a bug::

    OturnError
    ├── UsageError                    the caller did something the API forbids
    │   ├── InvalidSignalError        (also TypeError) send() got a non-Signal
    │   ├── InvalidPolicyError        (also ValueError) unknown overflow policy, buffer < 1, ...
    │   ├── HistoryUnavailableError   subscribe(from_seq=N) older than the history kept
    │   └── ClosedError               send/subscribe on a closed nucleus or subscription
    ├── WouldBlock                    an ``X_nowait`` call found no room / nothing ready
    │   └── InboxFullError            send_nowait() on a full inbox
    ├── ReducerError                  a reducer raised; the state was left untouched
    │   └── ReducerContractError      (also TypeError) a reducer returned a non-Transition, ...
    ├── SubscriptionError
    │   └── SubscriberDisconnected    a ``disconnect``-policy subscriber fell behind; resume_from
    ├── EffectError                   an effect handler failed (carried back as a signal)
    │   └── NoHandlerError            no handler is registered for an effect type
    ├── ProviderError                 a model provider failed (status, retry_after kept)
    ├── ToolError                     a tool failed, timed out or got bad arguments
    ├── PeerError                     another node of a cluster failed or misbehaved
    └── StoreError                    persistence failed
        └── CorruptRecordError        a stored record is unreadable (session + seq named)

Foreign exceptions (LiteLLM, redis, sqlite, ...) are translated at the adapter edge
with ``raise ... from`` so the original stays on ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "CorruptRecordError",
    "EffectError",
    "HistoryUnavailableError",
    "InboxFullError",
    "InvalidPolicyError",
    "InvalidSignalError",
    "NoHandlerError",
    "OturnError",
    "PeerError",
    "ProviderError",
    "ReducerContractError",
    "ReducerError",
    "StoreError",
    "SubscriberDisconnected",
    "SubscriptionError",
    "ToolError",
    "UsageError",
    "WouldBlock",
]


class OturnError(Exception):
    """Root of every exception oturn raises on purpose."""


class UsageError(OturnError):
    """The caller used the API in a way it forbids (a bug in the calling code)."""


class InvalidSignalError(UsageError, TypeError):
    """Something that is not a :class:`~oturn.Signal` was sent to a nucleus."""


class InvalidPolicyError(UsageError, ValueError):
    """A subscription or stage was configured with an unknown or out-of-range option."""


class HistoryUnavailableError(UsageError, LookupError):
    """``subscribe(from_seq=N)`` asked for envelopes the history no longer holds.

    ``oldest`` is the oldest ``seq`` still available (``None`` when nothing is).
    """

    def __init__(self, requested: int, oldest: int | None) -> None:
        self.requested = requested
        self.oldest = oldest
        where = f"the oldest available seq is {oldest}" if oldest is not None else "no history is kept"
        super().__init__(f"cannot replay from seq {requested}: {where}")


class ClosedError(UsageError):
    """The nucleus or subscription is closed (or was never opened)."""


class WouldBlock(OturnError):
    """An ``X_nowait`` call could not complete without waiting."""


class InboxFullError(WouldBlock):
    """``send_nowait`` found the nucleus inbox full; use ``await send(...)`` to wait for room."""


class ReducerError(OturnError):
    """A reducer raised while reducing a signal; the state was left as it was.

    ``signal_seq`` is the sequence number of the signal being reduced.
    """

    def __init__(self, message: str, *, signal_seq: int | None = None) -> None:
        self.signal_seq = signal_seq
        super().__init__(message)


class ReducerContractError(ReducerError, TypeError):
    """A reducer broke its contract (returned something that is not a Transition, ...)."""


class SubscriptionError(OturnError):
    """A subscription ended abnormally."""


class SubscriberDisconnected(SubscriptionError):
    """A ``disconnect``-policy subscriber fell behind and was closed.

    Everything before ``resume_from`` was delivered; ``subscribe(from_seq=resume_from)``
    picks up exactly where it stopped (while the history still holds it).
    """

    def __init__(self, resume_from: int) -> None:
        self.resume_from = resume_from
        super().__init__(f"subscriber fell behind and was disconnected; resume from seq {resume_from}")


class EffectError(OturnError):
    """An effect handler failed; the failure reaches the reducer as a signal."""


class NoHandlerError(EffectError):
    """No handler is registered for an effect's type."""


class ProviderError(OturnError):
    """A model provider failed. ``status`` and ``retry_after`` are kept when known."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class ToolError(OturnError):
    """A tool failed, timed out, or was called with bad arguments."""


class PeerError(OturnError):
    """Another node of a cluster failed or misbehaved."""


class StoreError(OturnError):
    """Persistence failed."""


class CorruptRecordError(StoreError):
    """A stored record could not be read. ``session`` and ``seq`` name where."""

    def __init__(self, message: str, *, session: str, seq: int | None) -> None:
        self.session = session
        self.seq = seq
        super().__init__(f"{message} (session {session!r}, seq {seq})")
