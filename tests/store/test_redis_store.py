"""RedisStore: the store protocol on a private redis-server, plus what only Redis has
(atomic Lua writes, several stores on one server, a server that dies, raw corruption)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import cast

import pytest
import redis
import redis.asyncio

from oturn._exceptions import (
    ClosedError,
    CorruptRecordError,
    SchemaVersionError,
    SessionLockedError,
    StoreError,
    UsageError,
)
from oturn.store import Store
from oturn.store.records import EventRecord, SignalRecord, SnapshotRecord
from oturn.store.redis import RedisStore
from oturn.store.url import open_store
from oturn.testing.store_kit import StoreKit
from redis_server import RedisServer, find_redis_server

_prefixes = itertools.count()


def _prefix() -> str:
    """A prefix of its own for every store (isolation even on a shared OTURN_TEST_REDIS_URL server)."""
    return f"oturn-test-{os.getpid()}-{next(_prefixes)}"


def sig(seq: int, data: bytes | None = None) -> SignalRecord:
    return SignalRecord(seq, 1000.0 + seq, "user_message", data if data is not None else b'{"n":%d}' % seq)


def ev(seq: int, cause: int, turn: str | None = "t1") -> EventRecord:
    return EventRecord(seq, cause, 1000.0 + cause + 0.5, turn, "text_delta", b'{"e":%d}' % seq)


def sigs(first: int, last: int) -> list[SignalRecord]:
    return [sig(n) for n in range(first, last + 1)]


@pytest.fixture(scope="module")
def module_server() -> Iterator[RedisServer | None]:
    """One private server for the tests that need no server of their own (each store has its own
    prefix): starting and stopping one per test would cost ~0.15 s each. ``None`` without a
    redis-server binary: ``url`` then asks the ``redis_url`` fixture (OTURN_TEST_REDIS_URL, or skip,
    or fail under OTURN_REQUIRE_REDIS=1)."""
    if find_redis_server() is None:
        yield None
        shared = os.environ.get("OTURN_TEST_REDIS_URL")
        if shared:  # leave the scratch database as it was found
            _wipe(shared, f"oturn-test-{os.getpid()}-*")
        return
    with RedisServer() as server:
        yield server


def _wipe(url: str, pattern: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture
def url(module_server: RedisServer | None, request: pytest.FixtureRequest) -> str:
    """A Redis URL shared by the module's tests (isolated by key prefix)."""
    if module_server is None:
        found: str = request.getfixturevalue("redis_url")
        return found
    return module_server.url


@pytest.fixture
async def store(url: str) -> AsyncIterator[RedisStore]:
    async with RedisStore(url, prefix=_prefix()) as opened:
        yield opened


@pytest.fixture
async def raw(url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def _lset(raw: redis.asyncio.Redis, key: str, index: int, value: bytes) -> None:
    await raw.lset(key, index, value)  # type: ignore[arg-type]  # redis-py's hints say str; bytes are fine


# -- the protocol -------------------------------------------------------------------------


@pytest.mark.redis
class TestRedisStore(StoreKit):
    """The conformance kit, on the module's private server (each test with a prefix of its own)."""

    @pytest.fixture
    async def store(self, url: str) -> AsyncIterator[Store]:
        async with RedisStore(url, prefix=_prefix()) as opened:
            yield opened

    async def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)


# -- what only Redis has ------------------------------------------------------------------


@pytest.mark.redis
class TestRedis:
    async def test_a_rejected_batch_writes_nothing(self, store: RedisStore, raw: redis.asyncio.Redis) -> None:
        await store.create("s", now=0.0)
        await store.append("s", sigs(1, 2), [ev(1, 1)])
        before = await raw.hgetall(f"{store.prefix}:session:s")
        # the events would fit, the signals leave a gap: neither is written
        with pytest.raises(StoreError):
            await store.append("s", [sig(4)], [ev(2, 4)])
        # the signals would fit, the events leave a gap: neither is written
        with pytest.raises(StoreError):
            await store.append("s", [sig(3)], [ev(3, 3)])
        assert await raw.hgetall(f"{store.prefix}:session:s") == before
        assert await raw.llen(f"{store.prefix}:signals:s") == 2
        assert await raw.llen(f"{store.prefix}:events:s") == 1

    async def test_racing_writers_never_interleave(self, url: str) -> None:
        prefix = _prefix()
        writers = [RedisStore(url, prefix=prefix) for _ in range(8)]
        for writer in writers:
            await writer.open()
        try:
            await writers[0].create("s", now=0.0)
            for n, first in enumerate((1, 4, 7), start=1):
                batch = sigs(first, first + 2)
                outcomes = await asyncio.gather(
                    *(w.append("s", batch, [ev(n, first)]) for w in writers), return_exceptions=True
                )
                assert outcomes.count(None) == 1  # one batch lands, every other is refused as a whole
                assert all(isinstance(o, StoreError) for o in outcomes if o is not None)
            assert await writers[1].signals("s") == sigs(1, 9)
            assert [e.cause for e in await writers[2].events("s")] == [1, 4, 7]
        finally:
            for writer in writers:
                await writer.close()

    async def test_big_batches_and_big_forks(self, store: RedisStore) -> None:
        await store.create("s", now=0.0)
        signals = sigs(1, 2500)
        events = [ev(n, n) for n in range(1, 2501)]
        await store.append("s", signals, events)
        assert await store.signals("s") == signals
        await store.fork("s", "f", at_seq=2345, now=1.0)
        assert await store.signals("f") == signals[:2345]
        assert await store.events("f") == events[:2345]

    async def test_two_stores_on_one_server(self, url: str) -> None:
        prefix = _prefix()
        async with RedisStore(url, prefix=prefix) as one, RedisStore(url, prefix=prefix) as two:
            await one.create("s", now=0.0)
            await one.acquire("s", "node-1", ttl=30.0, now=0.0)
            with pytest.raises(SessionLockedError):
                await two.acquire("s", "node-2", ttl=30.0, now=1.0)
            await one.append("s", sigs(1, 3), [], owner="node-1")
            with pytest.raises(SessionLockedError):
                await two.append("s", [sig(4)], [], owner="node-2")
            assert await two.signals("s") == sigs(1, 3)
            await one.release("s", "node-1")
            await two.acquire("s", "node-2", ttl=30.0, now=2.0)
            await two.append("s", [sig(4)], [], owner="node-2")
            assert [s.seq for s in await one.signals("s")] == [1, 2, 3, 4]
            with pytest.raises(UsageError):
                await two.create("s", now=3.0)

    async def test_prefixes_isolate(self, url: str, raw: redis.asyncio.Redis) -> None:
        p1, p2 = _prefix(), _prefix()
        before = set(await raw.keys("*"))
        async with RedisStore(url, prefix=p1) as one, RedisStore(url, prefix=p2) as two:
            await one.create("s", now=0.0)
            await one.append("s", sigs(1, 2), [])
            await one.snapshot("s", SnapshotRecord(1, 0, 1.0, b"x"))
            await two.create("s", now=5.0)
            assert await two.signals("s") == []
            assert await two.latest_snapshot("s") is None
            assert [s.id for s in await two.sessions()] == ["s"]
            assert await two.delete("s") is True
            assert await two.sessions() == []
            assert await one.signals("s") == sigs(1, 2)
            assert await two.prune(keep=0, now=10.0) == []
            assert [s.id for s in await one.sessions()] == ["s"]
        written = cast("set[bytes]", set(await raw.keys("*")) - before)
        assert {key.split(b":")[-1] for key in written if key.startswith(p1.encode() + b":")} >= {b"s", b"sessions"}
        assert all(key.startswith((p1.encode() + b":", p2.encode() + b":")) for key in written)

    async def test_a_dead_server_is_a_store_error(self, redis_server: RedisServer) -> None:
        async with RedisStore(redis_server.url, prefix=_prefix(), timeout=2.0) as store:
            await store.create("s", now=0.0)
            redis_server.kill()
            for attempt in (
                store.append("s", [sig(1)], []),
                store.signals("s"),
                store.info("s"),
                store.sessions(),
                store.acquire("s", "w", ttl=1.0, now=0.0),
            ):
                with pytest.raises(StoreError) as caught:
                    await attempt
                assert type(caught.value) is StoreError
                assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
            redis_server.restart()  # empty again, and the scripts are no longer cached
            assert await store.info("s") is None
            await store.create("s", now=1.0)
            await store.append("s", [sig(1)], [])
            assert await store.signals("s") == [sig(1)]

    async def test_opening_without_a_server_is_a_store_error(self, redis_server: RedisServer) -> None:
        redis_server.kill()
        with pytest.raises(StoreError):
            async with RedisStore(redis_server.url, timeout=1.0):
                pass

    async def test_corrupt_elements_name_the_seq(self, store: RedisStore, raw: redis.asyncio.Redis) -> None:
        await store.create("s", now=0.0)
        await store.append("s", sigs(1, 5), [ev(n, n) for n in range(1, 6)])
        await _lset(raw, f"{store.prefix}:signals:s", 3, b"\xc1not msgpack")
        with pytest.raises(CorruptRecordError) as caught:
            await store.signals("s")
        assert (caught.value.session, caught.value.seq) == ("s", 4)
        assert await store.signals("s", limit=3) == sigs(1, 3)  # the readable prefix stays readable
        # a well-formed record in the wrong place is corrupt too
        await _lset(raw, f"{store.prefix}:events:s", 1, cast("bytes", await raw.lindex(f"{store.prefix}:events:s", 0)))
        with pytest.raises(CorruptRecordError) as caught:
            await store.events("s")
        assert caught.value.seq == 2
        with pytest.raises(CorruptRecordError) as caught:
            await store.fork("s", "f", at_seq=1, now=1.0)
        assert caught.value.seq in (2, 3)
        assert await store.info("f") is None
        await raw.hset(f"{store.prefix}:snapshots:s", "7", b"junk")
        with pytest.raises(CorruptRecordError) as caught:
            await store.latest_snapshot("s")
        assert caught.value.seq == 7
        await raw.hset(f"{store.prefix}:session:s", "meta", b"[1]")
        with pytest.raises(CorruptRecordError):
            await store.info("s")

    async def test_unknown_layout_version(self, url: str, raw: redis.asyncio.Redis) -> None:
        prefix = _prefix()
        await raw.set(f"{prefix}:schema", b"99")
        with pytest.raises(SchemaVersionError) as caught:
            async with RedisStore(url, prefix=prefix):
                pass
        assert (caught.value.found, caught.value.supported) == (99, 1)

    async def test_a_given_client_is_used_and_left_open(self, url: str) -> None:
        client = redis.asyncio.Redis.from_url(url)
        try:
            async with RedisStore(client=client, prefix=_prefix()) as store:
                await store.create("s", now=0.0)
            assert await client.ping() is True
        finally:
            await client.aclose()
        text_client = redis.asyncio.Redis.from_url(url, decode_responses=True)
        try:
            with pytest.raises(UsageError, match="decode_responses"):
                RedisStore(client=text_client)
        finally:
            await text_client.aclose()

    async def test_opened_from_a_store_url(self, url: str) -> None:
        prefix = _prefix()
        store = open_store(f"{url}?prefix={prefix}")
        assert isinstance(store, RedisStore)
        async with store:
            await store.create("s", now=0.0)
        async with RedisStore(url, prefix=prefix) as same:
            assert [info.id for info in await same.sessions()] == ["s"]

    async def test_nested_opens_share_one_client(self, url: str) -> None:
        store = RedisStore(url, prefix=_prefix())
        async with store:
            async with store:
                await store.create("s", now=0.0)
            assert await store.info("s") is not None  # the inner block did not close it
        with pytest.raises(ClosedError):
            await store.info("s")
        await store.open()
        try:
            assert await store.info("s") is not None
        finally:
            await store.close()

    async def test_ids_that_are_not_utf8_are_usage_errors(self, store: RedisStore) -> None:
        with pytest.raises(UsageError):
            await store.create("bad \udc80", now=0.0)
        await store.create("s", now=0.0)
        with pytest.raises(UsageError):
            await store.acquire("s", "owner \udc80", ttl=1.0, now=0.0)

    async def test_a_closed_store_says_so(self, url: str) -> None:
        store = RedisStore(url, prefix=_prefix())
        with pytest.raises(ClosedError):
            await store.info("s")
        async with store:
            await store.create("s", now=0.0)
        with pytest.raises(ClosedError):
            await store.info("s")


def test_import_oturn_does_not_import_redis() -> None:
    code = "import sys, oturn, oturn.store; assert 'redis' not in sys.modules, 'redis imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
