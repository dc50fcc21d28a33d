"""Test-only Hypothesis strategies and helpers shared by the test suite.

Imported as ``strategies`` (``tests/`` is on ``sys.path`` through the root conftest),
like ``redis_server``.

``on_backends`` runs an ``async def`` test on asyncio and on trio. It exists because
pytest-asyncio in ``asyncio_mode = "auto"`` claims every ``async def`` test, including
those marked ``pytest.mark.anyio``: it swaps the test function for a synchronous wrapper
that runs it on asyncio, so anyio's plugin never sees a coroutine function and the
``[trio]`` case silently runs on asyncio too. A plain synchronous test that calls
``anyio.run`` itself is left alone by both plugins.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import strategies as st

from oturn.runtime.policy import Policy
from oturn.testing.strategies import buffer_sizes, policies

__all__ = ["BACKENDS", "SubscriberSpec", "on_backends", "subscriber_specs"]

BACKENDS: tuple[str, ...] = ("asyncio", "trio")


def on_backends(
    *backends: str,
) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., None]]:
    """Run an ``async def`` test once per backend (default: asyncio and trio).

    The test may take the ``anyio_backend`` argument and any synchronous fixtures::

        @on_backends()
        async def test_something(anyio_backend: str) -> None: ...
    """
    chosen = backends or BACKENDS

    def decorate(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
        signature = inspect.signature(test)
        wants_backend = "anyio_backend" in signature.parameters
        others = [p for name, p in signature.parameters.items() if name != "anyio_backend"]

        def wrapper(anyio_backend: str, **kwargs: Any) -> None:
            if wants_backend:
                kwargs["anyio_backend"] = anyio_backend
            anyio.run(functools.partial(test, **kwargs), backend=anyio_backend)

        wrapper.__name__ = test.__name__
        wrapper.__qualname__ = test.__qualname__
        wrapper.__doc__ = test.__doc__
        wrapper.__module__ = test.__module__
        backend_param = inspect.Parameter("anyio_backend", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[backend_param, *others], return_annotation=None
        )
        for mark in getattr(test, "pytestmark", ()):
            wrapper = mark(wrapper)
        parametrized: Callable[..., None] = pytest.mark.parametrize("anyio_backend", chosen)(wrapper)
        return parametrized

    return decorate


@dataclass(frozen=True)
class SubscriberSpec:
    """A subscriber in a property test: its policy and buffer, and how fast it reads.

    The consumer takes ``take`` envelopes, then yields ``pause`` times to the scheduler
    (``anyio.lowlevel.checkpoint()``), and so on.
    """

    policy: Policy
    buffer: int
    take: int
    pause: int

    @property
    def lossless(self) -> bool:
        return self.policy is Policy.BLOCK


def subscriber_specs(*, max_buffer: int = 8) -> st.SearchStrategy[SubscriberSpec]:
    """A random subscriber: any policy, a small buffer, a random reading speed."""
    return st.builds(
        SubscriberSpec,
        policy=policies(),
        buffer=buffer_sizes(1, max_buffer),
        take=st.integers(min_value=1, max_value=6),
        pause=st.integers(min_value=0, max_value=3),
    )
