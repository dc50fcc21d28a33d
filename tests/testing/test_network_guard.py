"""The network guard: non-loopback connections (and non-local DNS) fail at once; loopback works.

Safety net: every test here runs with a *tripwire* installed under the guard — the real
``connect``/``connect_ex``/``sendto``/``getaddrinfo`` (and uvloop's ``create_connection``)
are replaced by versions that raise ``Tripped`` instead of reaching a non-loopback
address. If the guard ever failed to block, the test fails on the tripwire and still no
packet leaves the machine. The addresses used are documentation ones (192.0.2.0/24,
TEST-NET-1; 2001:db8::/32) and ``.invalid`` names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oturn import ProviderConnectionError
from oturn.agent.effects import CallModel
from oturn.llm.errors import exception_chain
from oturn.testing.network import NetworkBlockedError, NetworkGuard, allow_network, guard, is_guarded, no_network

DOC_IP = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never routed
DOC_IP6 = "2001:db8::1"  # RFC 3849 documentation prefix
DOC_NAME = "api.example.invalid"  # RFC 2606: never resolves


class Tripped(AssertionError):
    """The guard let a non-loopback attempt through; the tripwire stopped it instead."""


def _loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX path
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def tripwire() -> Iterator[None]:
    # An autouse guard of the suite (tests/conftest.py) is lifted while the tripwire is in
    # place, so that every guard these tests enter is installed *over* the tripwire.
    with allow_network(), pytest.MonkeyPatch.context() as monkeypatch:
        yield from _tripwire(monkeypatch)
        assert not is_guarded()


def _tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_sendto = socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if not _loopback(address):
            raise Tripped(f"connect to {address!r} got past the guard")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _loopback(address):
            raise Tripped(f"connect_ex to {address!r} got past the guard")
        return real_connect_ex(self, address)

    def sendto(self: socket.socket, *args: Any) -> int:
        if not _loopback(args[-1]):
            raise Tripped(f"sendto {args[-1]!r} got past the guard")
        return real_sendto(self, *args)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host not in ("localhost",):
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise Tripped(f"resolving {host!r} got past the guard") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    uvloop: Any = sys.modules.get("uvloop")
    if uvloop is None:
        try:
            import uvloop
        except ImportError:  # pragma: no cover
            uvloop = None
    if uvloop is not None:
        real_create = uvloop.Loop.create_connection

        async def create_connection(self: Any, factory: Any, host: Any = None, port: Any = None, **kw: Any) -> Any:
            if host is not None and not _loopback((host, port)):
                raise Tripped(f"uvloop create_connection to {host}:{port} got past the guard")
            return await real_create(self, factory, host, port, **kw)

        monkeypatch.setattr(uvloop.Loop, "create_connection", create_connection)
    yield


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    """A TCP listener on 127.0.0.1 that accepts (and closes) connections in a thread."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.02)
    host, port = server.getsockname()[:2]
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield host, port
    finally:
        stop.set()
        thread.join(5)
        server.close()


# -- plain sockets ----------------------------------------------------------------------------


def test_connect_to_a_documentation_address_is_refused_before_sending() -> None:
    with no_network() as active, socket.socket() as sock:
        with pytest.raises(NetworkBlockedError) as caught:
            sock.connect((DOC_IP, 80))
        with pytest.raises(NetworkBlockedError):
            sock.connect_ex((DOC_IP, 443))
    assert isinstance(caught.value, ConnectionRefusedError)
    assert caught.value.target == f"{DOC_IP}:80"
    assert "loopback" in str(caught.value)
    assert active.blocked == [f"{DOC_IP}:80", f"{DOC_IP}:443"]


def test_udp_and_create_connection_are_refused() -> None:
    with no_network():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, pytest.raises(NetworkBlockedError):
            udp.sendto(b"x", (DOC_IP, 53))
        with pytest.raises(NetworkBlockedError):
            socket.create_connection((DOC_IP, 80), timeout=1)


def test_ipv6_documentation_address_is_refused() -> None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:  # pragma: no cover - no IPv6 here
        pytest.skip("IPv6 sockets are not available")
    with no_network() as active, sock, pytest.raises(NetworkBlockedError):
        sock.connect((DOC_IP6, 80, 0, 0))
    assert active.blocked == [f"[{DOC_IP6}]:80"]


def test_resolving_names_is_refused_but_local_names_and_numbers_resolve() -> None:
    with no_network() as active:
        with pytest.raises(NetworkBlockedError, match="resolving the name"):
            socket.getaddrinfo(DOC_NAME, 443)
        with pytest.raises(NetworkBlockedError):
            socket.gethostbyname(DOC_NAME)
        with pytest.raises(NetworkBlockedError):
            socket.create_connection((DOC_NAME, 443))
        assert socket.getaddrinfo("localhost", 80)
        assert socket.getaddrinfo(DOC_IP, 80)  # numeric: no DNS query; connecting is what is refused
    assert active.blocked == [f"dns:{DOC_NAME}"] * 3


def test_loopback_and_unix_sockets_work(listener: tuple[str, int], tmp_path: Path) -> None:
    with no_network() as active:
        with socket.create_connection(listener, timeout=5):
            pass
        with socket.create_connection(("localhost", listener[1]), timeout=5):
            pass
        path = str(tmp_path / "s.sock")
        with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
            server.bind(path)
            server.listen()
            client.connect(path)
    assert active.blocked == []


def test_allow_list_lets_chosen_addresses_through() -> None:
    """What the guard allows goes to the real connect — here the tripwire, which proves it got through."""
    with no_network(allow=["192.0.2.0/24", "API.Example.Invalid."]), socket.socket() as sock:
        with pytest.raises(Tripped):
            sock.connect((DOC_IP, 80))
        with pytest.raises(Tripped):
            socket.getaddrinfo(DOC_NAME, 80)
        with pytest.raises(NetworkBlockedError):
            sock.connect(("198.51.100.1", 80))  # TEST-NET-2 is not in the allow list


def test_guards_nest_restore_and_are_shared_by_threads() -> None:
    patched_connect = socket.socket.connect  # the tripwire
    assert not is_guarded()
    with no_network() as outer:
        assert is_guarded()
        assert socket.socket.connect is not patched_connect
        with guard(allow=[DOC_IP]) as inner:
            assert isinstance(inner, NetworkGuard)
            assert "192.0.2.1/32" in repr(inner)
        assert is_guarded()
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                with socket.socket() as sock:
                    sock.connect((DOC_IP, 80))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(5)
        assert [type(e) for e in errors] == [NetworkBlockedError]
        assert outer.blocked == [f"{DOC_IP}:80"]
    assert not is_guarded()
    assert socket.socket.connect is patched_connect  # restored exactly


# -- event loops and HTTP clients ---------------------------------------------------------------


async def test_asyncio_open_connection(listener: tuple[str, int]) -> None:
    with no_network():
        with pytest.raises(NetworkBlockedError):
            await asyncio.open_connection(DOC_IP, 80)
        with pytest.raises(NetworkBlockedError):
            await asyncio.open_connection(DOC_NAME, 80)
        _, writer = await asyncio.open_connection(*listener)
        writer.close()
        await writer.wait_closed()


def test_uvloop(listener: tuple[str, int]) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, uvloop.Loop)
        with no_network():
            with pytest.raises(NetworkBlockedError):
                await loop.create_connection(asyncio.Protocol, DOC_IP, 80)
            with pytest.raises(NetworkBlockedError):
                await loop.create_connection(asyncio.Protocol, DOC_NAME, 80)
            with pytest.raises(NetworkBlockedError):
                await loop.getaddrinfo(DOC_NAME, 80)
            transport, _ = await loop.create_connection(asyncio.Protocol, *listener)
            transport.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def test_trio(listener: tuple[str, int]) -> None:
    trio = pytest.importorskip("trio")

    async def main() -> None:
        with no_network():
            with pytest.raises(OSError) as caught:
                await trio.open_tcp_stream(DOC_IP, 80)
            assert any(isinstance(e, NetworkBlockedError) for e in exception_chain(caught.value)) or isinstance(
                caught.value, NetworkBlockedError
            )
            stream = await trio.open_tcp_stream(*listener)
            await stream.aclose()

    trio.run(main)


async def test_httpx() -> None:
    import httpx

    with no_network():
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError) as caught:
                await client.get(f"http://{DOC_IP}/")
    assert any(isinstance(e, NetworkBlockedError) for e in exception_chain(caught.value))


async def test_aiohttp() -> None:
    import aiohttp

    with no_network():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await session.get(f"http://{DOC_IP}/")
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(f"https://{DOC_NAME}/")
    assert any(isinstance(e, NetworkBlockedError) for e in exception_chain(caught.value))


@pytest.mark.parametrize("host", [DOC_IP, DOC_NAME])
async def test_litellm_transport_is_guarded(host: str) -> None:
    """LiteLLM's real stack (openai SDK → httpx → LiteLLM's aiohttp transport) hits the guard."""
    from oturn.llm.litellm import LiteLLMModel, prewarm

    await prewarm()
    model = LiteLLMModel(api_base=f"http://{host}/v1", api_key="sk-x", timeout=5)
    hi = [{"role": "user", "content": "hi"}]
    with no_network() as active, pytest.raises(ProviderConnectionError) as caught:
        async for _ in model.stream(CallModel(key="k", model="openai/gpt-4o", messages=hi)):
            pass  # pragma: no cover
    assert any(isinstance(e, NetworkBlockedError) for e in exception_chain(caught.value))
    assert active.blocked


# -- the pytest fixture --------------------------------------------------------------------------

_CONFTEST = """
import socket, ipaddress

_real = socket.socket.connect

def _tripwire(self, address):  # never let a test here reach a non-loopback address
    if isinstance(address, tuple) and not ipaddress.ip_address(address[0]).is_loopback:
        raise AssertionError("tripwire: the guard let a connection through")
    return _real(self, address)

socket.socket.connect = _tripwire

from oturn.testing.network import network_guard_fixture

network_guard = network_guard_fixture(allow=["203.0.113.9"])
"""

_TESTS = """
import socket
import pytest
from oturn.testing.network import NetworkBlockedError, NetworkGuard, is_guarded

def test_guarded(network_guard):
    assert isinstance(network_guard, NetworkGuard) and is_guarded()
    assert [str(n) for n in network_guard.allow_networks] == ["203.0.113.9/32"]
    with socket.socket() as sock, pytest.raises(NetworkBlockedError):
        sock.connect(("192.0.2.1", 80))

@pytest.mark.allow_network
def test_opted_out(network_guard):
    assert network_guard is None and not is_guarded()

@pytest.mark.allow_network("192.0.2.7", "db.example.invalid")
def test_allow_some(network_guard):
    assert is_guarded()
    assert network_guard.allow_names == {"db.example.invalid"}
    assert [str(n) for n in network_guard.allow_networks] == ["203.0.113.9/32", "192.0.2.7/32"]

async def test_async_tests_are_guarded_too():
    assert is_guarded()
"""

_INI = """
[pytest]
addopts = -p no:cacheprovider
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
markers =
    allow_network: run without the network guard (or with the hosts given allowed)
filterwarnings = error
"""


def test_network_guard_fixture(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(_CONFTEST))
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(_TESTS))
    (tmp_path / "pytest.ini").write_text(textwrap.dedent(_INI))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_allow_network_lifts_active_guards() -> None:
    with no_network() as outer:
        with allow_network():
            assert not is_guarded()
            with socket.socket() as sock, pytest.raises(Tripped):  # unguarded: reaches the tripwire
                sock.connect((DOC_IP, 80))
            with no_network(), socket.socket() as sock, pytest.raises(NetworkBlockedError):
                sock.connect((DOC_IP, 80))
            assert not is_guarded()
        assert is_guarded()
        with socket.socket() as sock, pytest.raises(NetworkBlockedError):
            sock.connect((DOC_IP, 80))
    assert outer.blocked == [f"{DOC_IP}:80"]
    with allow_network():  # nothing to lift
        assert not is_guarded()
