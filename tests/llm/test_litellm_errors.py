"""translate_error on constructed LiteLLM / openai / httpx / aiohttp / OS exceptions.

The classifier must decide from status codes and the cause chain, never from LiteLLM's
class names, which lie (a refused connection is a 500 ``InternalServerError``, a 401 can
be a ``BadRequestError``, a 504 is a ``Timeout``, anything mid-stream is a
``MidStreamFallbackError``).
"""

from __future__ import annotations

import email.utils
import socket
from types import ModuleType
from typing import Any, TypeVar

import httpx
import pytest

from oturn import (
    AuthenticationError,
    BadRequest,
    ErrorInfo,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamDecodeError,
    StreamInterrupted,
    StreamStalled,
)
from oturn.llm.errors import classify_status, exception_chain, parse_retry_after, redact, translate_error
from oturn.llm.litellm import _import_litellm

E = TypeVar("E", bound=BaseException)

MODEL = "gpt-4o"
PROVIDER = "openai"
REQUEST: Any = httpx.Request("POST", "https://api.example.invalid/v1/chat/completions")
"""``Any``: the openai SDK types its errors' requests and responses as httpx's (openai 1.x/2.x)
or as httpx2's (openai 3.x); httpx objects work with both at run time."""


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    """LiteLLM, imported once (with oturn's offline settings) for the whole module."""
    return _import_litellm()


def response(status: int, headers: dict[str, str] | None = None) -> Any:
    """A response as a server sends it (a server always sends some headers)."""
    return httpx.Response(status, headers={"content-type": "application/json", **(headers or {})}, request=REQUEST)


def caused(exc: E, cause: BaseException) -> E:
    exc.__cause__ = cause
    return exc


def sdk_status_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    """What the openai SDK raises for an HTTP error, chained to httpx's HTTPStatusError."""
    import openai

    resp = response(status, headers)
    cls = {429: openai.RateLimitError, 401: openai.AuthenticationError, 500: openai.InternalServerError}.get(
        status, openai.APIStatusError
    )
    err = cls(f"Error code: {status}", response=resp, body=None)
    err.__cause__ = httpx.HTTPStatusError(f"{status}", request=REQUEST, response=resp)
    return err


# -- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (400, BadRequest, False),
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (404, BadRequest, False),
        (408, ProviderTimeout, True),
        (413, BadRequest, False),
        (422, BadRequest, False),
        (429, RateLimited, True),
        (500, ProviderUnavailable, True),
        (502, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (504, ProviderUnavailable, True),
        (529, ProviderUnavailable, True),
    ],
)
def test_classify_status(status: int, expected: type[ProviderError], retryable: bool) -> None:
    assert classify_status(status) is expected
    assert expected("x", status=status).retryable is retryable


def test_litellm_classes_with_their_own_status(litellm: ModuleType) -> None:
    cases: list[tuple[Exception, type[ProviderError], int]] = [
        (litellm.AuthenticationError("bad key", PROVIDER, MODEL), AuthenticationError, 401),
        (litellm.PermissionDeniedError("no", PROVIDER, MODEL, response=response(403)), AuthenticationError, 403),
        (litellm.NotFoundError("no model", MODEL, PROVIDER), BadRequest, 404),
        (litellm.BadRequestError("bad", MODEL, PROVIDER), BadRequest, 400),
        (litellm.ContextWindowExceededError("too long", MODEL, PROVIDER), BadRequest, 400),
        (litellm.ContentPolicyViolationError("nope", MODEL, PROVIDER), BadRequest, 400),
        (litellm.UnprocessableEntityError("bad", MODEL, PROVIDER, response=response(422)), BadRequest, 422),
        (litellm.RateLimitError("slow down", PROVIDER, MODEL), RateLimited, 429),
        (litellm.InternalServerError("oops", PROVIDER, MODEL), ProviderUnavailable, 500),
        (litellm.ServiceUnavailableError("down", PROVIDER, MODEL), ProviderUnavailable, 503),
        (litellm.BadGatewayError("gateway", PROVIDER, MODEL), ProviderUnavailable, 502),
        (litellm.Timeout("slow", MODEL, PROVIDER), ProviderTimeout, 408),
        (litellm.APIError(529, "overloaded", PROVIDER, MODEL), ProviderUnavailable, 529),
    ]
    for exc, expected, status in cases:
        error = translate_error(exc)
        assert type(error) is expected, exc
        assert error.status == status, exc


def test_a_refused_connection_is_not_a_500(litellm: ModuleType) -> None:
    """LiteLLM reports a refused connection as a 500 InternalServerError; the chain says otherwise."""
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")
    exc = caused(
        litellm.InternalServerError("Connection error.", PROVIDER, MODEL), caused(httpx.ConnectError("x"), refused)
    )
    error = translate_error(exc)
    assert type(error) is ProviderConnectionError
    assert error.status is None
    assert error.retryable
    assert "ConnectionRefusedError" in str(error)


@pytest.mark.parametrize(
    "cause",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        socket.gaierror(-2, "Name or service not known"),
        OSError(101, "Network is unreachable"),
        httpx.ConnectError("All connection attempts failed"),
    ],
    ids=["reset", "dns", "unreachable", "httpx"],
)
def test_connection_failures(litellm: ModuleType, cause: BaseException) -> None:
    exc = caused(litellm.APIConnectionError("Connection error.", PROVIDER, MODEL), cause)
    assert type(translate_error(exc)) is ProviderConnectionError
    assert type(translate_error(cause)) is ProviderConnectionError


def test_aiohttp_connector_error(litellm: ModuleType) -> None:
    import aiohttp
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    inner = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    exc = caused(litellm.InternalServerError("Connection error.", PROVIDER, MODEL), inner)
    assert type(translate_error(exc)) is ProviderConnectionError


def test_a_401_reported_as_a_bad_request(litellm: ModuleType) -> None:
    """LiteLLM may call a 401 a BadRequestError (status_code 400); the real response says 401."""
    exc = caused(litellm.BadRequestError("Incorrect API key", MODEL, PROVIDER), sdk_status_error(401))
    assert exc.status_code == 400
    error = translate_error(exc)
    assert type(error) is AuthenticationError
    assert error.status == 401
    # and a real response handed to LiteLLM's exception is believed over its own status
    exc2 = litellm.BadRequestError("Incorrect API key", MODEL, PROVIDER, response=response(401))
    assert type(translate_error(exc2)) is AuthenticationError


def test_a_gateway_timeout_is_unavailable_not_a_timeout(litellm: ModuleType) -> None:
    """LiteLLM raises its Timeout (an openai.APITimeoutError) for an HTTP 504."""
    exc = caused(litellm.Timeout("Gateway Timeout", MODEL, PROVIDER, exception_status_code=504), sdk_status_error(504))
    error = translate_error(exc)
    assert type(error) is ProviderUnavailable
    assert error.status == 504


def test_transport_timeouts(litellm: ModuleType) -> None:
    exc = caused(litellm.Timeout("Request timed out.", MODEL, PROVIDER), httpx.ReadTimeout("timed out"))
    assert type(translate_error(exc)) is ProviderTimeout
    assert type(translate_error(TimeoutError())) is ProviderTimeout
    assert type(translate_error(httpx.ConnectTimeout("x"))) is ProviderTimeout
    # a timeout that happened while connecting is a timeout, not a connection failure
    exc2 = caused(litellm.APIConnectionError("x", PROVIDER, MODEL), caused(httpx.ConnectTimeout("x"), TimeoutError()))
    assert type(translate_error(exc2)) is ProviderTimeout


# -- retry-after ----------------------------------------------------------------------------


def test_retry_after_from_litellm_headers(litellm: ModuleType) -> None:
    exc = litellm.RateLimitError("slow down", PROVIDER, MODEL)
    exc.litellm_response_headers = httpx.Headers({"retry-after": "7"})
    error = translate_error(exc)
    assert type(error) is RateLimited
    assert error.retry_after == 7.0


def test_retry_after_from_the_sdk_response(litellm: ModuleType) -> None:
    exc = caused(
        litellm.RateLimitError("slow down", PROVIDER, MODEL), sdk_status_error(429, {"retry-after-ms": "1500"})
    )
    error = translate_error(exc)
    assert (type(error), error.status, error.retry_after) == (RateLimited, 429, 1.5)
    info = ErrorInfo.from_exception(error)
    assert (info.status, info.retry_after) == (429, 1.5)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "later"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers)) == expected
    assert parse_retry_after({k.lower(): v for k, v in headers.items()}) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 30, usegmt=True)
    earlier = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": later}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": earlier}, now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after(object()) is None


# -- mid-stream ------------------------------------------------------------------------------


def mid_stream(litellm: ModuleType, original: Exception, text: str = "partial answer") -> Exception:
    from litellm.exceptions import MidStreamFallbackError

    return MidStreamFallbackError(
        message=str(original),
        model=MODEL,
        llm_provider=PROVIDER,
        original_exception=original,
        generated_content=text,
        is_pre_first_chunk=not text,
    )


def test_dropped_mid_stream(litellm: ModuleType) -> None:
    import aiohttp

    inner = caused(
        litellm.APIConnectionError("Response payload is not completed", PROVIDER, MODEL),
        aiohttp.ClientPayloadError("x"),
    )
    exc = mid_stream(litellm, inner)
    assert exc.status_code == 500  # type: ignore[attr-defined]  # made up by LiteLLM
    error = translate_error(exc)
    assert type(error) is StreamInterrupted
    assert error.partial_text == "partial answer"
    assert error.status is None
    assert error.retryable
    assert "MidStreamFallbackError" not in str(error)  # LiteLLM's class-name prefixes are dropped


def test_only_a_clean_end_without_finish_reason_counts_as_the_end_of_the_stream(litellm: ModuleType) -> None:
    """LiteLLM 1.110's "no finish_reason" error, raised while it handles the provider stream's
    StopAsyncIteration, means the stream ended cleanly; the same words without that clean end,
    or a connection that broke, stay failures."""
    from oturn.llm.litellm import _ended_without_finish

    said = "OpenAIException - Stream ended before a finish_reason was received"
    inner = litellm.APIConnectionError(said, PROVIDER, MODEL)
    inner.__context__ = StopAsyncIteration()
    assert _ended_without_finish(mid_stream(litellm, inner))
    assert _ended_without_finish(inner)
    assert not _ended_without_finish(mid_stream(litellm, litellm.APIConnectionError(said, PROVIDER, MODEL)))
    broken = caused(litellm.APIConnectionError("peer closed connection", PROVIDER, MODEL), ConnectionResetError())
    assert not _ended_without_finish(mid_stream(litellm, broken))
    looping = RuntimeError(said)
    looping.__context__ = looping  # a cycle ends the walk
    assert not _ended_without_finish(looping)


def test_stalled_mid_stream(litellm: ModuleType) -> None:
    inner = caused(
        litellm.APIConnectionError("Timeout on reading data from socket", PROVIDER, MODEL), httpx.ReadTimeout("x")
    )
    error = translate_error(mid_stream(litellm, inner, "abc"))
    assert type(error) is StreamStalled
    assert isinstance(error, ProviderTimeout)
    assert error.partial_text == "abc"


def test_error_payload_mid_stream_keeps_its_status(litellm: ModuleType) -> None:
    """Groq's ``event: error`` frame: the openai SDK raises APIError with the payload as ``body``;
    LiteLLM wraps it in an APIConnectionError (500) in a MidStreamFallbackError (500)."""
    import openai

    payload = {"message": "Tool choice is required", "code": "tool_use_failed", "status_code": 400}
    sdk = openai.APIError("Tool choice is required", request=REQUEST, body=payload)
    inner = caused(litellm.APIConnectionError("Tool choice is required", PROVIDER, MODEL), sdk)
    error = translate_error(mid_stream(litellm, inner, "maybe"))
    assert type(error) is StreamInterrupted
    assert (error.status, error.retryable, error.partial_text) == (400, False, "maybe")
    assert str(error).endswith("Tool choice is required")


def test_started_flag_and_partial_text_from_the_caller(litellm: ModuleType) -> None:
    error = translate_error(ConnectionResetError(104, "reset"), started=True, partial_text="so far")
    assert type(error) is StreamInterrupted
    assert error.partial_text == "so far"
    error2 = translate_error(RuntimeError("boom"), started=True, stalled=True)
    assert type(error2) is StreamStalled
    # the caller's text wins over LiteLLM's (which only counts choice 0's content)
    ours = translate_error(mid_stream(litellm, RuntimeError("x"), "litellm"), partial_text="ours")
    assert isinstance(ours, StreamInterrupted)
    assert ours.partial_text == "ours"
    # started=False overrides the inference from a MidStreamFallbackError
    assert not isinstance(translate_error(mid_stream(litellm, RuntimeError("x")), started=False), StreamInterrupted)


# -- the rest --------------------------------------------------------------------------------


def test_unknown_failures_and_passthrough() -> None:
    error = translate_error(ValueError("something odd"))
    assert type(error) is ProviderError
    assert (error.status, error.retryable) == (None, False)
    assert "something odd" in str(error)
    already = StreamDecodeError("bad json")
    assert translate_error(already) is already
    assert type(translate_error(ValueError(""))) is ProviderError  # empty message: the class name is used


def test_exception_groups_are_searched() -> None:
    group = ExceptionGroup("several", [ValueError("x"), ConnectionResetError(104, "reset")])
    assert type(translate_error(group)) is ProviderConnectionError


def test_chain_walk_handles_cycles_and_original_exception() -> None:
    a, b = ValueError("a"), KeyError("b")
    a.__context__ = b
    b.__context__ = a
    c: Any = RuntimeError("c")
    c.original_exception = a
    assert exception_chain(c) == [c, a, b]


def test_secrets_are_redacted(litellm: ModuleType) -> None:
    key = "sk-live-abcdef123456"
    exc = litellm.AuthenticationError(f"Incorrect API key provided: {key}", PROVIDER, MODEL)
    error = translate_error(exc, secrets=[key, None, "ab"])
    assert key not in str(error)
    assert "Incorrect API key provided: ***" in str(error)
    assert redact("ab ab", ["ab"]) == "ab ab"  # too short to be a secret: left alone


def test_long_messages_are_cut() -> None:
    error = translate_error(RuntimeError("x" * 5000))
    assert len(str(error)) < 700


def test_retryable_per_class() -> None:
    assert ProviderConnectionError("x").retryable
    assert ProviderTimeout("x").retryable
    assert RateLimited("x").retryable
    assert ProviderUnavailable("x").retryable
    assert not AuthenticationError("x", status=401).retryable
    assert not BadRequest("x", status=400).retryable
    assert StreamInterrupted("x").retryable
    assert not StreamInterrupted("x", status=400).retryable
    assert StreamInterrupted("x", status=429).retryable
    assert StreamStalled("x").retryable
    assert not ProviderError("x").retryable
    assert ProviderError("x", status=503).retryable
    assert not StreamDecodeError("x").retryable
    assert StreamInterrupted("x").partial_text == ""
