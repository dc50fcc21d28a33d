"""Signals, effects and events the nucleus itself understands.

- Effects the runtime executes without a registered handler: :class:`StartTimer`,
  :class:`CancelTimer`, :class:`CancelEffect`, :class:`Feed`.
- Outcome signals the runtime feeds back: :class:`TimerFired`, :class:`EffectCompleted`,
  :class:`EffectFailed`, :class:`EffectCancelled`. Every effect handed to a handler ends
  in exactly one outcome (a handler may instead return its own signal as the outcome).
- :class:`ErrorEvent` (``error``): published when a reducer raises or breaks its contract.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from oturn.core.messages import Effect, Event, Signal

E = TypeVar("E", bound=Effect)

__all__ = [
    "CancelEffect",
    "CancelTimer",
    "EffectCancelled",
    "EffectCompleted",
    "EffectFailed",
    "ErrorEvent",
    "ErrorInfo",
    "Feed",
    "StartTimer",
    "TimerFired",
]


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A failure, as data: what kind, what it said, and the provider status if any.

    ``type`` is the exception's qualified class name, kept for people reading logs;
    code should branch on ``kind``, ``status`` and ``retry_after``, not on the name.
    """

    type: str
    message: str
    kind: str = "error"
    status: int | None = None
    retry_after: float | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, *, kind: str = "error") -> ErrorInfo:
        """Describe ``exc`` (its status and retry-after are kept when it has them)."""
        status = getattr(exc, "status", None)
        if not isinstance(status, int):
            status = getattr(exc, "status_code", None)
        retry_after = getattr(exc, "retry_after", None)
        try:
            message = str(exc)
        except Exception:  # a broken __str__ must not lose the failure
            message = f"<{type(exc).__name__} with an unprintable message>"
        return cls(
            type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=message,
            kind=kind,
            status=status if isinstance(status, int) else None,
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        )


class StartTimer(Effect, frozen=True, kw_only=True, tag="start_timer"):
    """Fire :class:`TimerFired` with this ``key`` after ``delay`` seconds of the nucleus clock.

    Starting a timer whose key is already running restarts it.
    """

    key: str
    delay: float


class CancelTimer(Effect, frozen=True, kw_only=True, tag="cancel_timer"):
    """Cancel the timer ``key`` if it is still pending (a no-op otherwise)."""

    key: str


class CancelEffect(Effect, frozen=True, kw_only=True, tag="cancel_effect"):
    """Cancel the running effect whose ``key`` is ``target``; it ends in :class:`EffectCancelled`."""

    target: str


class Feed(Effect, frozen=True, kw_only=True, tag="feed"):
    """Put ``signal`` back into the nucleus inbox, behind what is already queued.

    For a reducer that wants to continue in a later reduction (e.g. to start a queued
    turn after the current one has finished, so each turn's events carry its own turn
    id). The fed signal is an ordinary signal: it is logged and replayed like any other.
    """

    signal: Signal


class TimerFired(Signal, frozen=True, kw_only=True, tag="timer_fired"):
    """The timer ``key`` expired."""

    key: str


class EffectCompleted(Signal, Generic[E], frozen=True, kw_only=True, tag="effect_completed"):
    """A handler finished ``effect`` without returning a signal of its own.

    Generic in the effect type so that a decoder can be built for the effect types a
    reducer uses (``EffectCompleted[CallModel | RunTool]``); see :class:`~oturn.Codec`.
    """

    effect: E


class EffectFailed(Signal, Generic[E], frozen=True, kw_only=True, tag="effect_failed"):
    """A handler raised while executing ``effect`` (or none was registered)."""

    effect: E
    error: ErrorInfo


class EffectCancelled(Signal, Generic[E], frozen=True, kw_only=True, tag="effect_cancelled"):
    """``effect`` was cancelled by :class:`CancelEffect` before it finished."""

    effect: E


class ErrorEvent(Event, frozen=True, kw_only=True, tag="error"):
    """A reducer failed on the signal numbered ``signal_seq``; the state was left untouched.

    ``kind`` is ``"reducer"`` (it raised) or ``"contract"`` (it returned something that
    is not a Transition). ``fatal`` tells whether the nucleus stops because of it.
    """

    kind: str
    message: str
    signal_seq: int
    signal_type: str
    fatal: bool = False
