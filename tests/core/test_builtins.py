"""The nucleus's own messages: wire tags, ErrorInfo from exceptions, outcome signals."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from oturn import (
    CancelEffect,
    CancelTimer,
    Effect,
    EffectCancelled,
    EffectCompleted,
    EffectFailed,
    ErrorEvent,
    ErrorInfo,
    Feed,
    ProviderError,
    RateLimited,
    StartTimer,
    TimerFired,
)
from oturn.core import Message


class Upload(Effect, frozen=True, kw_only=True, tag="tb_upload"):
    name: str


@pytest.mark.parametrize(
    ("message", "tag"),
    [
        (StartTimer(key="k", delay=1.0), "start_timer"),
        (CancelTimer(key="k"), "cancel_timer"),
        (CancelEffect(target="k"), "cancel_effect"),
        (Feed(signal=TimerFired(key="k")), "feed"),
        (TimerFired(key="k"), "timer_fired"),
        (EffectCompleted(effect=Upload(name="a")), "effect_completed"),
        (EffectFailed(effect=Upload(name="a"), error=ErrorInfo(type="E", message="m")), "effect_failed"),
        (EffectCancelled(effect=Upload(name="a")), "effect_cancelled"),
        (ErrorEvent(kind="reducer", message="m", signal_seq=1, signal_type="X"), "error"),
    ],
)
def test_builtin_messages_have_snake_case_tags_on_the_wire(message: Message, tag: str) -> None:
    assert msgspec.json.decode(msgspec.json.encode(message))["type"] == tag


@pytest.mark.parametrize(
    "message",
    [
        StartTimer(key="k", delay=1.0),
        CancelTimer(key="k"),
        CancelEffect(target="k", key="c"),
        TimerFired(key="k"),
        ErrorEvent(kind="reducer", message="m", signal_seq=1, signal_type="X", fatal=True),
    ],
)
def test_flat_builtin_messages_round_trip_with_their_own_type(message: Message) -> None:
    assert msgspec.json.decode(msgspec.json.encode(message), type=type(message)) == message


def test_outcome_signals_carry_the_effect_they_answer_tagged() -> None:
    data = msgspec.json.decode(msgspec.json.encode(EffectCompleted(effect=Upload(name="a", key="up-1"))))
    assert data == {"type": "effect_completed", "effect": {"type": "tb_upload", "key": "up-1", "name": "a"}}
    fed = msgspec.json.decode(msgspec.json.encode(Feed(signal=TimerFired(key="t"))))
    assert fed["signal"] == {"type": "timer_fired", "key": "t"}


def test_outcome_signals_decode_when_parametrised_with_the_concrete_effect_types() -> None:
    completed = EffectCompleted(effect=Upload(name="a", key="up-1"))
    data = msgspec.json.encode(completed)
    assert msgspec.json.decode(data, type=EffectCompleted[Upload]) == completed
    failed = EffectFailed(effect=StartTimer(key="t", delay=2.0), error=ErrorInfo(type="E", message="m", status=500))
    either: Any = EffectFailed[Upload | StartTimer]
    assert msgspec.json.decode(msgspec.json.encode(failed), type=either) == failed
    cancelled = EffectCancelled(effect=Upload(name="b"))
    assert msgspec.json.decode(msgspec.json.encode(cancelled), type=EffectCancelled[Upload]) == cancelled


def test_timer_effects_require_a_key() -> None:
    with pytest.raises(TypeError, match="key"):
        StartTimer(delay=1.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="key"):
        CancelTimer()  # type: ignore[call-arg]


def test_an_error_event_is_not_fatal_by_default() -> None:
    event = ErrorEvent(kind="contract", message="m", signal_seq=4, signal_type="Go")
    assert event.fatal is False


# -- ErrorInfo -------------------------------------------------------------------------------


class WithStatusCode(Exception):
    """Like an httpx/openai error: the status lives in ``status_code``."""

    def __init__(self, message: str, status_code: object, retry_after: object = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot print me")


def test_error_info_keeps_status_and_retry_after_of_a_provider_error() -> None:
    info = ErrorInfo.from_exception(RateLimited("slow down", status=429, retry_after=2), kind="rate_limited")
    assert info.status == 429
    assert info.retry_after == 2.0
    assert isinstance(info.retry_after, float)
    assert info.kind == "rate_limited"
    assert info.type == "oturn._exceptions.RateLimited"
    assert "slow down" in info.message


def test_error_info_reads_status_code_when_there_is_no_status() -> None:
    info = ErrorInfo.from_exception(WithStatusCode("unavailable", 503, retry_after=1.5))
    assert (info.status, info.retry_after, info.kind, info.message) == (503, 1.5, "error", "unavailable")
    assert info.type.endswith("test_builtins.WithStatusCode")


def test_error_info_ignores_a_status_or_retry_after_that_is_not_a_number() -> None:
    info = ErrorInfo.from_exception(WithStatusCode("odd", "503", retry_after="soon"))
    assert info.status is None
    assert info.retry_after is None


def test_error_info_without_status_leaves_them_empty() -> None:
    info = ErrorInfo.from_exception(ValueError("bad value"))
    assert info == ErrorInfo(type="builtins.ValueError", message="bad value")
    assert (info.kind, info.status, info.retry_after) == ("error", None, None)


def test_error_info_survives_a_broken_str() -> None:
    info = ErrorInfo.from_exception(BrokenStr())
    assert info.message == "<BrokenStr with an unprintable message>"
    assert info.type.endswith("BrokenStr")


def test_error_info_of_a_provider_error_without_status() -> None:
    info = ErrorInfo.from_exception(ProviderError("gone"))
    assert info.status is None
    assert info.retry_after is None


def test_error_info_round_trips_on_the_wire_inside_effect_failed() -> None:
    info = ErrorInfo.from_exception(RateLimited("slow down", status=429, retry_after=2))
    assert msgspec.json.decode(msgspec.json.encode(info), type=ErrorInfo) == info
    with pytest.raises(AttributeError):
        info.status = 500  # type: ignore[misc]
    failed = msgspec.json.decode(msgspec.json.encode(EffectFailed(effect=Upload(name="a"), error=info)))
    assert failed["error"]["status"] == 429
    assert failed["error"]["retry_after"] == 2.0
