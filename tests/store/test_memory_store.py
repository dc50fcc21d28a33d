"""MemoryStore: the conformance kit, and what only the in-memory store promises."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from oturn.store.memory import MemoryStore
from oturn.store.protocol import Store
from oturn.testing.store_kit import T0, StoreKit, events, signals


class TestMemoryStore(StoreKit):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        async with MemoryStore() as store:
            yield store


def test_a_memory_store_is_a_store() -> None:
    assert isinstance(MemoryStore(), Store)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_it_works_on_asyncio_and_trio(backend: str) -> None:
    async def main() -> list[int]:
        store = MemoryStore()
        await store.create("s1", now=T0)
        await store.append("s1", signals(1, 3), events(1, [1, 2]))
        return [r.seq for r in await store.signals("s1", after=1)]

    assert anyio.run(main, backend=backend) == [2, 3]


async def test_it_needs_no_opening_and_outlives_async_with_blocks() -> None:
    store = MemoryStore()
    await store.create("s1", now=T0)
    async with store, store:
        await store.append("s1", signals(1, 1), [])
    async with store:
        assert await store.signals("s1") == signals(1, 1)
    assert repr(store) == "<MemoryStore sessions=1>"
