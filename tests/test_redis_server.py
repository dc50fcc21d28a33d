"""The Redis fixtures give a working, private, killable server."""

from __future__ import annotations

import pytest
import redis.asyncio
import redis.exceptions

from redis_server import RedisServer, free_port, ping


async def test_redis_url_answers(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.ping() is True
        await client.set("oturn:test:key", b"value")
        assert await client.get("oturn:test:key") == b"value"
    finally:
        await client.delete("oturn:test:key")
        await client.aclose()


async def test_private_server_is_empty_and_isolated(redis_server: RedisServer) -> None:
    assert redis_server.url.startswith("redis://127.0.0.1:")
    assert redis_server.port != 6379
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        assert await client.dbsize() == 0
        config = await client.config_get("save")
        assert config["save"] == ""
        appendonly = await client.config_get("appendonly")
        assert appendonly["appendonly"] == "no"
    finally:
        await client.aclose()


async def test_kill_and_restart(redis_server: RedisServer) -> None:
    port = redis_server.port
    first_pid = redis_server.pid
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=2.0)
    try:
        await client.set("k", "v")

        redis_server.kill()
        killed = (redis_server.running, redis_server.pid)
        assert killed == (False, None)
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()

        redis_server.restart()
        assert redis_server.port == port
        assert (redis_server.running, redis_server.pid is not None) == (True, True)
        assert redis_server.pid != first_pid
        assert redis_server.starts == 2
        assert await client.ping() is True  # the pool reconnects to the same address
        assert await client.get("k") is None  # nothing persisted across the crash
    finally:
        await client.aclose()


def test_stop_and_start_again(redis_server: RedisServer) -> None:
    assert redis_server.port is not None
    redis_server.stop()
    assert not redis_server.running
    assert not ping(redis_server.host, redis_server.port, timeout=0.2)
    redis_server.start()
    assert ping(redis_server.host, redis_server.port)


def test_context_manager_and_fixed_port(redis_server: RedisServer) -> None:
    # redis_server (unused otherwise) applies the skip-or-fail rule when there is no binary
    port = free_port()
    with RedisServer(port=port) as server:
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert ping("127.0.0.1", port)
        workdir = server.workdir
        assert workdir.is_dir()
    assert not server.running
    assert not workdir.exists()
    assert not ping("127.0.0.1", port, timeout=0.2)
