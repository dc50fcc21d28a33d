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
    │   ├── ClosedError               send/subscribe on a closed nucleus or subscription
    │   └── InputRejectedError        a session did not accept the input of run()/stream()
    ├── WouldBlock                    an ``X_nowait`` call found no room / nothing ready
    │   └── InboxFullError            send_nowait() on a full inbox
    ├── ReducerError                  a reducer raised; the state was left untouched
    │   └── ReducerContractError      (also TypeError) a reducer returned a non-Transition, ...
    ├── SubscriptionError
    │   └── SubscriberDisconnected    a ``disconnect``-policy subscriber fell behind; resume_from
    ├── EffectError                   an effect handler failed (carried back as a signal)
    │   └── NoHandlerError            no handler is registered for an effect type
    ├── ProviderError                 a model provider failed (status, retry_after, retryable kept)
    │   ├── StreamDecodeError         a streamed payload is not valid JSON / not an object
    │   ├── ProviderConnectionError   could not connect (refused, reset, DNS); retryable
    │   ├── ProviderTimeout           no answer within the deadline; retryable
    │   ├── RateLimited               HTTP 429 (retry_after from the provider's headers); retryable
    │   ├── ProviderUnavailable       HTTP 5xx; retryable
    │   ├── AuthenticationError       HTTP 401/403: bad or missing credentials; not retryable
    │   ├── BadRequest                HTTP 400/404/422/...: the request itself is wrong; not retryable
    │   └── StreamInterrupted         the stream failed after it had started (partial_text kept)
    │       └── StreamStalled         (also ProviderTimeout) no chunk within the idle timeout
    ├── ToolError                     a tool failed, timed out or got bad arguments
    │   ├── ToolArgumentsError        a tool call's arguments are not valid JSON / do not fit its schema
    │   ├── ToolTimeoutError          (also TimeoutError) a tool did not finish within its timeout
    │   └── UnknownToolError          (also LookupError) no tool has the name the model asked for
    ├── PeerError                     another node of a cluster failed or misbehaved
    └── StoreError                    persistence failed
        ├── CorruptRecordError        a stored record is unreadable (session + seq named)
        ├── SchemaVersionError        the store was written by an unknown (newer) schema version
        └── SessionLockedError        another writer holds the session's lease

Foreign exceptions (LiteLLM, redis, sqlite, ...) are translated at the adapter edge
with ``raise ... from`` so the original stays on ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "ClosedError",
    "CorruptRecordError",
    "EffectError",
    "HistoryUnavailableError",
    "InboxFullError",
    "InputRejectedError",
    "InvalidPolicyError",
    "InvalidSignalError",
    "NoHandlerError",
    "OturnError",
    "PeerError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "ReducerContractError",
    "ReducerError",
    "SchemaVersionError",
    "SessionLockedError",
    "StoreError",
    "StreamDecodeError",
    "StreamInterrupted",
    "StreamStalled",
    "SubscriberDisconnected",
    "SubscriptionError",
    "ToolArgumentsError",
    "ToolError",
    "ToolTimeoutError",
    "UnknownToolError",
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


class InputRejectedError(UsageError):
    """A session did not accept the input of ``Session.run`` / ``Session.stream`` (empty, or
    mid-turn with the input policy ``reject``)."""


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

    @property
    def retryable(self) -> bool:
        """Whether trying the same call again may succeed (408, 409, 425, 429 and 5xx are; unknown is not)."""
        return _status_retryable(self.status, default=False)


def _status_retryable(status: int | None, *, default: bool) -> bool:
    if status is None:
        return default
    return status in (408, 409, 425, 429) or status >= 500


class StreamDecodeError(ProviderError):
    """A payload of a model's event stream could not be decoded (invalid JSON, or not a JSON object).

    The message quotes the start of the offending data; the decoder's exception is on
    ``__cause__``.
    """


class ProviderConnectionError(ProviderError):
    """The provider could not be reached: connection refused or reset, DNS failure, no route."""

    @property
    def retryable(self) -> bool:
        return True


class ProviderTimeout(ProviderError):
    """The provider did not answer within the call's deadline (or sent HTTP 408)."""

    @property
    def retryable(self) -> bool:
        return True


class RateLimited(ProviderError):
    """The provider refused the call for now (HTTP 429); ``retry_after`` says how long to wait, when it said."""

    @property
    def retryable(self) -> bool:
        return True


class ProviderUnavailable(ProviderError):
    """The provider failed on its side (HTTP 5xx: internal error, bad gateway, overloaded, ...)."""

    @property
    def retryable(self) -> bool:
        return True


class AuthenticationError(ProviderError):
    """The provider rejected the credentials (HTTP 401) or the access (HTTP 403)."""

    @property
    def retryable(self) -> bool:
        return False


class BadRequest(ProviderError):
    """The provider rejected the request itself (HTTP 400, 404, 422, ...): sending it again will not help."""

    @property
    def retryable(self) -> bool:
        return False


class StreamInterrupted(ProviderError):
    """The stream failed after it had started: dropped, stalled, or an error payload mid-stream.

    ``partial_text`` is the answer text received before the failure (``""`` if none);
    ``status`` is the provider's, when the failure carried one (an in-stream error
    payload). Retryable unless that status says otherwise; whether a retry is still
    allowed once output reached subscribers is the caller's decision.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        partial_text: str = "",
    ) -> None:
        self.partial_text = partial_text
        super().__init__(message, status=status, retry_after=retry_after)

    @property
    def retryable(self) -> bool:
        return _status_retryable(self.status, default=True)


class StreamStalled(StreamInterrupted, ProviderTimeout):
    """The stream started, then no chunk arrived within the idle timeout (or the call's deadline passed)."""


class ToolError(OturnError):
    """A tool failed, timed out, or was called with bad arguments."""


class ToolArgumentsError(ToolError):
    """A tool call's arguments are not valid JSON or do not match the tool's parameters.

    The message is written for the model (which argument, what was wrong, what was
    expected), so it can be sent back as the tool result. ``tool`` names the tool.
    """

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        self.tool = tool
        super().__init__(message)


class ToolTimeoutError(ToolError, TimeoutError):
    """A tool did not finish within ``timeout`` seconds."""

    def __init__(self, tool: str, timeout: float) -> None:
        self.tool = tool
        self.timeout = timeout
        super().__init__(f"Tool {tool!r} timed out after {timeout:g} seconds.")


class UnknownToolError(ToolError, LookupError):
    """No tool is registered under ``name``; ``available`` lists the names that are."""

    def __init__(self, name: str, available: tuple[str, ...]) -> None:
        self.name = name
        self.available = available
        listed = ", ".join(available) if available else "none"
        super().__init__(f"Unknown tool {name!r}. Available tools: {listed}.")


class PeerError(OturnError):
    """Another node of a cluster failed or misbehaved."""


class StoreError(OturnError):
    """Persistence failed."""


class SchemaVersionError(StoreError):
    """The store's schema version is not one this oturn can read (``found``, ``supported``)."""

    def __init__(self, message: str, *, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(message)


class SessionLockedError(StoreError):
    """Another writer holds the session (``holder``) until ``expires`` (store time, seconds)."""

    def __init__(self, session: str, holder: str, expires: float | None) -> None:
        self.session = session
        self.holder = holder
        self.expires = expires
        if holder:
            message = f"session {session!r} is being written by {holder!r}; wait for its lease to end"
        else:
            message = f"session {session!r} has no writer lease held by this writer; acquire it first"
        super().__init__(message)


class CorruptRecordError(StoreError):
    """A stored record could not be read. ``session`` and ``seq`` name where."""

    def __init__(self, message: str, *, session: str, seq: int | None) -> None:
        self.session = session
        self.seq = seq
        super().__init__(f"{message} (session {session!r}, seq {seq})")
