"""Translate provider failures (LiteLLM, openai, httpx, aiohttp, OS) into oturn's exceptions.

LiteLLM picks its exception *class* from the text of the provider's message: a refused
connection comes out as a 500 ``InternalServerError``, a 401 can be a
``BadRequestError``, a 504 is a ``Timeout``, and everything that fails mid-stream is a
``MidStreamFallbackError`` with a made-up 500 and the partial text in
``generated_content``. So :func:`translate_error` never looks at class names. It walks
the whole ``__cause__`` / ``__context__`` / ``original_exception`` chain and decides
from evidence, most trustworthy first:

1. a real HTTP status: the one on a response the server sent (an
   ``httpx.HTTPStatusError``'s, the openai SDK's ``APIStatusError``'s) or an
   ``aiohttp.ClientResponseError``'s. LiteLLM's own exceptions carry a response it
   fabricates from the status it guessed; those have no headers and are ignored;
2. transport evidence: a timeout (``TimeoutError``, ``httpx.TimeoutException``) or a
   connection failure (``ConnectionError``, ``socket.gaierror``, ``httpx.ConnectError``
   / ``NetworkError`` / ``RemoteProtocolError``, ``aiohttp.ClientConnectionError`` /
   ``ClientPayloadError``, unreachable-network errnos). Not ``openai.APIConnectionError``
   nor ``APITimeoutError``: LiteLLM's catch-all ``APIConnectionError`` and its
   ``Timeout`` (used for HTTP 408 and 504) subclass them;
3. the status an in-stream error payload states (``{"error": {"status_code": 400}}``,
   as Groq sends), kept on ``openai.APIError.body``;
4. last, the ``status_code`` LiteLLM put on its exception.

A failure after the stream had started becomes :class:`~oturn.StreamInterrupted`
(:class:`~oturn.StreamStalled` for a timeout) carrying the partial text, whatever its
cause. ``retry_after`` comes from ``retry-after-ms`` or ``retry-after`` (seconds or an
HTTP date) on any response in the chain. Messages are redacted of the secrets given
(the API key): a provider that echoes the key never gets it into oturn's messages.

Library modules are looked up in ``sys.modules`` only: if httpx was never imported, no
httpx exception can be in the chain, so this module imports nothing heavy.
"""

from __future__ import annotations

import email.utils
import errno
import math
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from oturn._exceptions import (
    AuthenticationError,
    BadRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
    StreamStalled,
)

__all__ = [
    "classify_status",
    "exception_chain",
    "parse_retry_after",
    "redact",
    "translate_error",
]

_MAX_CHAIN: Final = 64
_UNREACHABLE_ERRNOS: Final = frozenset(
    code
    for code in (
        getattr(errno, "ECONNREFUSED", None),
        getattr(errno, "ECONNRESET", None),
        getattr(errno, "ECONNABORTED", None),
        getattr(errno, "ENETUNREACH", None),
        getattr(errno, "EHOSTUNREACH", None),
        getattr(errno, "ENETDOWN", None),
        getattr(errno, "EHOSTDOWN", None),
        getattr(errno, "EADDRNOTAVAIL", None),
        getattr(errno, "EPIPE", None),
    )
    if code is not None
)


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it links to, breadth first, each once.

    Follows ``__cause__``, ``__context__``, LiteLLM's ``original_exception`` and the
    members of exception groups.
    """
    seen: set[int] = set()
    out: list[BaseException] = []
    queue: list[BaseException] = [exc]
    while queue and len(out) < _MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        linked: list[object] = [current.__cause__, current.__context__, getattr(current, "original_exception", None)]
        if isinstance(current, BaseExceptionGroup):
            linked.extend(current.exceptions)
        queue.extend(item for item in linked if isinstance(item, BaseException))
    return out


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (of 4+ characters) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``retry-after`` in ``headers``.

    ``retry-after`` may be a number of seconds or an HTTP date (then measured from
    ``now``, a Unix time, default the current time). Negative waits become ``0``;
    unparsable values give ``None``.
    """
    if headers is None:
        return None
    getter: Callable[[str], Any] | None = getattr(headers, "get", None)
    if getter is None:
        return None
    raw_ms = _header(getter, "retry-after-ms")
    if raw_ms is not None:
        seconds = _number(raw_ms)
        if seconds is not None:
            return max(0.0, seconds / 1000.0)
    raw = _header(getter, "retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # pragma: no cover - parsedate_to_datetime gives UTC for "GMT"
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _header(getter: Callable[[str], Any], name: str) -> str | None:
    try:
        value = getter(name)
        if value is None:
            value = getter(name.title())
    except Exception:
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def classify_status(status: int) -> type[ProviderError]:
    """The oturn exception class for an HTTP error status."""
    if status == 429:
        return RateLimited
    if status in (401, 403):
        return AuthenticationError
    if status == 408:
        return ProviderTimeout
    if status >= 500:
        return ProviderUnavailable
    if 400 <= status < 500:
        return BadRequest
    return ProviderError


# -- evidence in the chain ---------------------------------------------------------------


def _module(name: str) -> Any:
    return sys.modules.get(name)


def _types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    mod = _module(module)
    if mod is None:
        return ()
    found: list[type[BaseException]] = []
    for name in names:
        obj = mod
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            found.append(obj)
    return tuple(found)


def _status_of(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 100 <= value <= 599:
        return value
    if isinstance(value, str) and value.isdigit() and 100 <= int(value) <= 599:
        return int(value)
    return None


def _real_http_status(chain: list[BaseException]) -> int | None:
    """The status of a response the server actually sent (never one LiteLLM made up).

    LiteLLM's exceptions (subclasses of openai's) carry a response it fabricates from
    the status it guessed, with no headers; a response a server sent always has some
    (``httpx.HTTPStatusError``, ``openai.APIStatusError`` raised by the SDK, ...).
    The deepest one wins: LiteLLM may wrap a real response under a status it guessed.
    """
    aio = _types("aiohttp", "ClientResponseError")
    for exc in reversed(chain):  # deepest first: the exception closest to the wire
        if aio and isinstance(exc, aio):
            status = _status_of(getattr(exc, "status", None))
            if status is not None and status >= 400:
                return status
            continue
        response = getattr(exc, "response", None)
        status = _status_of(getattr(response, "status_code", None))
        if status is None or status < 400:
            continue
        headers = getattr(response, "headers", None)
        try:
            has_headers = headers is not None and len(headers) > 0
        except TypeError:
            has_headers = False
        if has_headers:
            return status
    return None


def _payload_status(chain: list[BaseException]) -> int | None:
    """The status an error payload (``openai.APIError.body``) states, e.g. Groq's in-stream errors."""
    for exc in chain:
        body = getattr(exc, "body", None)
        if isinstance(body, Mapping):
            inner = body.get("error")
            for source in (body, inner if isinstance(inner, Mapping) else {}):
                for key in ("status_code", "status", "code"):
                    status = _status_of(source.get(key))
                    if status is not None and status >= 400:
                        return status
    return None


def _litellm_status(chain: list[BaseException]) -> int | None:
    for exc in chain:
        status = _status_of(getattr(exc, "status_code", None))
        if status is not None and status >= 400:
            return status
    return None


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):  # also asyncio.TimeoutError, socket.timeout, aiohttp's timeouts
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT:
        return True
    timeouts = _types("httpx", "TimeoutException") + _types("trio", "TooSlowError")
    return bool(timeouts) and isinstance(exc, timeouts)


def _is_connection(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | socket.gaierror | socket.herror):
        return True
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return True
    network = _types("httpx", "ConnectError", "NetworkError", "RemoteProtocolError", "ProxyError") + _types(
        "aiohttp", "ClientConnectionError", "ClientPayloadError"
    )
    # Not openai.APIConnectionError: LiteLLM's catch-all APIConnectionError subclasses it
    # (an error payload mid-stream becomes one). When the SDK raises it for a real
    # transport failure, the httpx/OS error it wraps is further down the chain.
    return bool(network) and isinstance(exc, network)


def _generated_content(chain: list[BaseException]) -> tuple[bool, str]:
    """Whether LiteLLM reported a mid-stream failure, and the text it had streamed by then."""
    for exc in chain:
        if hasattr(exc, "generated_content") and hasattr(exc, "is_pre_first_chunk"):
            content = getattr(exc, "generated_content", None)
            return True, content if isinstance(content, str) else ""
    return False, ""


def _retry_after(chain: list[BaseException], now: float | None) -> float | None:
    for exc in chain:
        for headers in (
            getattr(exc, "litellm_response_headers", None),
            getattr(getattr(exc, "response", None), "headers", None),
            getattr(exc, "headers", None),
        ):
            if headers is None or isinstance(headers, str | bytes):
                continue
            try:
                value = parse_retry_after(headers, now=now)
            except Exception:  # pragma: no cover - defensive: odd header containers
                continue
            if value is not None:
                return value
    return None


_LITELLM_PREFIX: Final = re.compile(
    r"^(?:litellm\.\w+:\s*|\w*(?:Error|Exception|Timeout)(?: Error)?:\s*|\w+Exception - )+"
)
_MAX_DETAIL: Final = 500


def _describe(exc: BaseException, chain: list[BaseException]) -> str:
    """The top message without LiteLLM's repeated class-name prefixes, plus the transport root cause if any."""
    text = str(exc).strip().split(" Original exception: ", 1)[0]
    text = _LITELLM_PREFIX.sub("", text).strip() or type(exc).__name__
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    root = next((e for e in reversed(chain) if _is_timeout(e) or _is_connection(e)), None)
    if root is not None and root is not exc:
        cause = str(root).strip()
        if cause and cause not in text:
            text = f"{text} (cause: {type(root).__name__}: {cause[:_MAX_DETAIL]})"
    return text


def translate_error(
    exc: BaseException,
    *,
    started: bool | None = None,
    partial_text: str | None = None,
    secrets: Iterable[str | None] = (),
    now: float | None = None,
    stalled: bool = False,
) -> ProviderError:
    """The oturn :class:`~oturn.ProviderError` for ``exc`` (see the module docstring).

    ``started`` says whether the response stream had begun (``None``: infer it from a
    LiteLLM mid-stream error in the chain); ``partial_text`` is the text streamed before
    the failure (default: LiteLLM's ``generated_content``). ``stalled`` marks a failure
    the caller detected as an idle timeout. ``secrets`` are redacted from the message.
    Raise the result ``from exc``. A :class:`~oturn.ProviderError` is returned as is.
    """
    if isinstance(exc, ProviderError):
        return exc
    chain = exception_chain(exc)
    secrets = tuple(secrets)
    mid_stream, generated = _generated_content(chain)
    if started is None:
        started = mid_stream
    if partial_text is None:
        partial_text = generated
    retry_after = _retry_after(chain, now)

    http_status = _real_http_status(chain)
    timed_out = stalled or any(_is_timeout(e) for e in chain)
    unreachable = any(_is_connection(e) for e in chain)
    if http_status is not None:
        status: int | None = http_status
    elif timed_out or unreachable:
        status = _payload_status(chain)
    else:
        status = _payload_status(chain) or _litellm_status(chain)

    detail = redact(_describe(exc, chain), secrets)
    if started:
        if timed_out and http_status is None:
            return StreamStalled(
                f"the model stream stalled: {detail}",
                status=status,
                retry_after=retry_after,
                partial_text=partial_text,
            )
        return StreamInterrupted(
            f"the model stream was interrupted: {detail}",
            status=status,
            retry_after=retry_after,
            partial_text=partial_text,
        )
    if http_status is None and timed_out:
        return ProviderTimeout(f"the provider did not answer in time: {detail}", status=status, retry_after=retry_after)
    if http_status is None and unreachable:
        return ProviderConnectionError(f"could not reach the provider: {detail}", status=None, retry_after=retry_after)
    if status is None:
        return ProviderError(f"the provider call failed: {detail}", status=None, retry_after=retry_after)
    cls = classify_status(status)
    return cls(
        f"{_LABELS.get(cls, 'the provider call failed')} (HTTP {status}): {detail}",
        status=status,
        retry_after=retry_after,
    )


_LABELS: Final[dict[type[ProviderError], str]] = {
    RateLimited: "rate limited by the provider",
    AuthenticationError: "the provider rejected the credentials",
    ProviderTimeout: "the provider timed out",
    ProviderUnavailable: "the provider is unavailable",
    BadRequest: "the provider rejected the request",
}
