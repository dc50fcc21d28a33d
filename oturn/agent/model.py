"""The model protocol: anything that can stream a :class:`CallModel` as normalised deltas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from oturn.agent.deltas import StreamDelta
from oturn.agent.effects import CallModel

__all__ = ["Model"]


@runtime_checkable
class Model(Protocol):
    """A model backend: LiteLLM, the scripted fake, a replayed log, your own.

    ``stream(call)`` yields batches of deltas in stream order; it raises
    :class:`~oturn.ProviderError` (with ``status`` and ``retry_after`` when known) when
    the call fails. Batches are whatever was ready together: one chunk's deltas for a
    network stream, many for a scripted one.
    """

    def stream(self, call: CallModel, /) -> AsyncIterator[Sequence[StreamDelta]]: ...
