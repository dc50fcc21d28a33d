"""Shared pytest configuration and fixtures.

- pytest-asyncio runs ``async def`` tests (``asyncio_mode = "auto"`` in pyproject).
  Set ``OTURN_TEST_LOOPS=asyncio,uvloop`` to run every asyncio test once per event
  loop (through pytest-asyncio's ``pytest_asyncio_loop_factories`` hook); unset, tests
  run on the default asyncio loop only.
- Tests marked ``pytest.mark.anyio`` run under anyio's plugin on asyncio and trio
  (the ``anyio_backend`` fixture below); a collection hook stops pytest-asyncio's auto
  mode from taking them over (it would run the ``trio`` variant on asyncio). Async
  fixtures such a test uses run on its backend too.
- ``redis_url`` / ``redis_server``: a private ``redis-server`` per test (see
  ``tests/redis_server.py``); ``redis_url`` falls back to ``OTURN_TEST_REDIS_URL`` when
  there is no redis-server binary. Without either the test is skipped, unless
  ``OTURN_REQUIRE_REDIS=1`` (CI), which makes it fail. Tests using them get the
  ``redis`` marker, so ``-m "not redis"`` leaves them out.
- Hypothesis: under ``CI`` the ``ci`` profile (no per-example deadline, since shared
  CI machines are slow and noisy) is loaded; ``HYPOTHESIS_PROFILE`` picks another.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import NoReturn

import pytest
from hypothesis import HealthCheck, settings
from pytest_asyncio import is_async_test

from oturn.testing.network import network_guard_fixture
from redis_server import RedisServer, RedisServerError, find_redis_server

# The store conformance kit lives in the package: let pytest rewrite its asserts.
pytest.register_assert_rewrite("oturn.testing.store_kit")

# -- hypothesis -------------------------------------------------------------------------

settings.register_profile("ci", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))

# -- event loops ------------------------------------------------------------------------


def _loop_factories(spec: str) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {}
    for raw in spec.split(","):
        name = raw.strip()
        if not name:
            continue
        if name == "asyncio":
            factories[name] = asyncio.new_event_loop
        elif name == "uvloop":
            try:
                import uvloop
            except ImportError:
                raise pytest.UsageError(
                    "OTURN_TEST_LOOPS names uvloop, which is not installed (pip install -e '.[speed]')"
                ) from None
            factories[name] = uvloop.new_event_loop
        else:
            raise pytest.UsageError(f"OTURN_TEST_LOOPS: unknown event loop {name!r} (use asyncio and/or uvloop)")
    if not factories:
        raise pytest.UsageError("OTURN_TEST_LOOPS is set but names no event loop")
    return factories


if os.environ.get("OTURN_TEST_LOOPS"):
    # Defined only on request: once this hook exists, pytest-asyncio parametrises every
    # asyncio test over the mapping it returns (one entry: no visible parameter).
    _FACTORIES = _loop_factories(os.environ["OTURN_TEST_LOOPS"])
    _DEFAULT_LOOP = {"asyncio": asyncio.new_event_loop}

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        if item.get_closest_marker("anyio") is not None:
            return _DEFAULT_LOOP  # anyio runs these (below); one entry adds no parameter
        return _FACTORIES


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, object, object]:
    """Hand ``pytest.mark.anyio`` tests back to anyio's plugin.

    In auto mode pytest-asyncio claims every ``async def`` test, including those marked
    ``anyio``, and runs them on asyncio even for the ``trio`` parameter. This wrapper
    (outside pytest-asyncio's) turns such items back into plain pytest Functions, which
    anyio's ``pytest_pyfunc_call`` then runs on the backend of ``anyio_backend``.
    """
    result = yield
    if isinstance(result, list):
        return [_release_to_anyio(node) for node in result]
    if isinstance(result, pytest.Function):
        return _release_to_anyio(result)
    return result


def _release_to_anyio(node: object) -> object:
    if not (isinstance(node, pytest.Function) and is_async_test(node) and node.get_closest_marker("anyio")):
        return node
    assert node.parent is not None
    plain = pytest.Function.from_parent(
        node.parent,
        name=node.name,
        callspec=getattr(node, "callspec", None),
        callobj=node.obj,
        fixtureinfo=node._fixtureinfo,
        keywords=node.keywords,
        originalname=node.originalname,
    )
    plain.own_markers = [mark for mark in node.own_markers if mark.name != "asyncio"]
    return plain


@pytest.fixture(
    scope="module",
    params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")],
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The backends ``pytest.mark.anyio`` tests run on: asyncio and trio."""
    backend: str = request.param
    return backend


# -- redis ------------------------------------------------------------------------------

_BINARY_HELP = (
    "install a Redis server binary (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)"
    " or name one in OTURN_TEST_REDIS_SERVER"
)
_URL_HELP = f"{_BINARY_HELP}, or point OTURN_TEST_REDIS_URL at a scratch Redis database (redis://127.0.0.1:6379/15)"


def _redis_required() -> bool:
    return os.environ.get("OTURN_REQUIRE_REDIS", "").strip().lower() in {"1", "true", "yes", "on"}


def _no_redis(reason: str, help: str = _URL_HELP) -> NoReturn:
    if _redis_required():
        pytest.fail(f"{reason}, and OTURN_REQUIRE_REDIS=1 makes that a failure; {help}", pytrace=False)
    pytest.skip(f"{reason}: {help}")


def _start_private_server() -> RedisServer:
    try:
        return RedisServer().start()
    except RedisServerError as exc:
        # a binary that is there but does not start is broken: always a failure
        pytest.fail(f"a private redis-server could not be started: {exc}", pytrace=False)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private, started redis-server that the test may ``kill()`` and ``restart()``."""
    if find_redis_server() is None:
        _no_redis("no redis-server binary found (this test needs a private server it can kill)", _BINARY_HELP)
    server = _start_private_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """``redis://…`` of an empty private server, or ``$OTURN_TEST_REDIS_URL`` without a binary."""
    if find_redis_server() is not None:
        server = _start_private_server()
        try:
            yield server.url
        finally:
            server.close()
        return
    url = os.environ.get("OTURN_TEST_REDIS_URL")
    if url:
        yield url
        return
    _no_redis("no redis-server binary found and OTURN_TEST_REDIS_URL is not set")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "redis_url" in fixtures or "redis_server" in fixtures:
            item.add_marker(pytest.mark.redis)


# No test may reach a real provider: connections to anything but loopback fail at once.
network_guard = network_guard_fixture()
