"""``oturn.run``: start an event loop for an async main (uvloop when installed)."""

from __future__ import annotations

import importlib.util
import os
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
    _reopen_closed_std_fds()
    options: dict[str, Any] = {}
    if backend == "asyncio" and importlib.util.find_spec("uvloop") is not None:
        options["use_uvloop"] = True
    return anyio.run(main, *args, backend=backend, backend_options=options)


def _reopen_closed_std_fds() -> None:
    """Point closed descriptors 0-2 at /dev/null (libuv aborts when it finds one of them closed)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
