"""``oturn.run``: start an event loop for an async main (uvloop when installed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

__all__ = ["run"]

T = TypeVar("T")


def run(main: Callable[..., Awaitable[T]], *args: Any, backend: str = "asyncio") -> T:
    """Run ``main(*args)`` to completion on a new event loop and return its result.

    On the ``asyncio`` backend uvloop is used when it is installed (the ``speed``
    extra); ``backend="trio"`` runs on trio.
    """
    options: dict[str, Any] = {}
    if backend == "asyncio" and importlib.util.find_spec("uvloop") is not None:
        options["use_uvloop"] = True
    return anyio.run(main, *args, backend=backend, backend_options=options)
