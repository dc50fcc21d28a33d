"""A guard that keeps tests off the network: only loopback connections are allowed.

``with no_network():`` (or ``guard()``, the same) makes every attempt to reach a
non-loopback address fail at once with :class:`NetworkBlockedError`, *before* anything
is sent: the check runs where the address is handed to the OS, so no packet leaves the
machine. Connections to ``127.0.0.0/8``, ``::1``, Unix sockets and the names
``localhost`` / ``*.localhost`` keep working (fake servers, a private redis-server).

What is patched while a guard is active (and restored afterwards):

- ``socket.socket.connect`` / ``connect_ex`` / ``sendto`` (every blocking and asyncio
  connection ends here: asyncio's ``sock_connect``, trio, ``ssl``, httpx, aiohttp,
  redis-py), checked against the numeric address;
- ``socket.getaddrinfo`` / ``gethostbyname`` / ``gethostbyname_ex``: resolving a name
  other than the local ones would send a DNS query, so it is refused too (numeric
  addresses pass through; the connect check decides);
- ``uvloop.Loop.create_connection`` / ``getaddrinfo`` when uvloop is imported: uvloop
  connects and resolves inside libuv, past the ``socket`` module.

Not covered: C extensions that open their own sockets (c-ares through aiodns, libcurl,
...). LiteLLM's transport (httpx over aiohttp, threaded resolver) is covered; see
``tests/testing/test_network_guard.py``.

Guards nest and may be used from several threads; the patches stay installed while at
least one is active. :func:`allow_network` lifts them for a block.
:func:`network_guard_fixture` makes a pytest fixture of it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import pytest

__all__ = [
    "NetworkBlockedError",
    "NetworkGuard",
    "allow_network",
    "guard",
    "is_guarded",
    "network_guard_fixture",
    "no_network",
]

_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class NetworkBlockedError(ConnectionRefusedError):
    """A test tried to reach a non-loopback address (or resolve a non-local name); nothing was sent.

    ``target`` names what was refused. It is a ``ConnectionRefusedError`` (an
    ``OSError``), so libraries report it as the connection failure it is.
    """

    def __init__(self, target: str, what: str = "connection to") -> None:
        self.target = target
        super().__init__(
            errno.ECONNREFUSED,
            f"oturn.testing.network: {what} {target} blocked: tests may only use loopback addresses"
            " (use a local fake server, or mark the test @pytest.mark.allow_network)",
        )


class NetworkGuard:
    """One active guard: ``allow`` (extra hosts, addresses or networks) and what it ``blocked``."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow_names: frozenset[str] = frozenset()
        self.allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
        names: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in allow:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                names.add(item.lower().rstrip("."))
        self.allow_names = frozenset(names)
        self.allow_networks = tuple(networks)
        self.blocked: list[str] = []
        """Every refused target, in order (``"host:port"`` or ``"dns:name"``)."""

    def __repr__(self) -> str:
        allowed = sorted(self.allow_names) + [str(n) for n in self.allow_networks]
        return f"<NetworkGuard allow={allowed} blocked={len(self.blocked)}>"


_lock = threading.RLock()
_active: list[NetworkGuard] = []
_saved: list[tuple[object, str, bool, Any]] = []  # (owner, attribute, had_own_attribute, original)


def is_guarded() -> bool:
    """Whether a guard is active (in any thread)."""
    return bool(_active)


# -- the checks ------------------------------------------------------------------------


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _local_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _allowed_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if _local_ip(ip):
        return True
    return any(ip in network for g in tuple(_active) for network in g.allow_networks)


def _allowed_name(name: str) -> bool:
    name = name.lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    return any(name in g.allow_names for g in tuple(_active))


def _refuse(target: str, what: str = "connection to") -> NetworkBlockedError:
    for g in tuple(_active):
        g.blocked.append(target)
    return NetworkBlockedError(target, what)


def _check_host(host: object, port: object = None) -> None:
    """Refuse ``host`` unless it is loopback, a local name or allowed (``None``/empty: local)."""
    if not _active or host is None:
        return
    if isinstance(host, bytes):
        host = host.decode("idna", "replace")
    if not isinstance(host, str) or not host:
        return
    ip = _ip(host)
    if ip is not None:
        if _allowed_ip(ip):
            return
    elif _allowed_name(host):
        return
    target = f"[{host}]:{port}" if ip is not None and ip.version == 6 else f"{host}:{port}"
    raise _refuse(target if port is not None else host)


def _check_resolve(host: object) -> None:
    """Refuse resolving a non-local *name* (numeric hosts resolve locally, without DNS)."""
    if not _active or host is None:
        return
    if isinstance(host, bytes):
        host = host.decode("idna", "replace")
    if not isinstance(host, str) or not host or _ip(host) is not None:
        return
    if _allowed_name(host) or _is_own_hostname(host):
        return
    raise _refuse(f"dns:{host}", "resolving the name")


def _is_own_hostname(host: str) -> bool:
    try:
        return host.lower() == socket.gethostname().lower()
    except OSError:  # pragma: no cover
        return False


def _check_address(family: int, address: object) -> None:
    if not _active:
        return
    if family == getattr(socket, "AF_UNIX", object()) or isinstance(address, str | bytes):
        return
    if isinstance(address, tuple) and len(address) >= 2:
        _check_host(address[0], address[1])


# -- the patches -----------------------------------------------------------------------


def _wrap_method(original: Callable[..., Any], check: Callable[[socket.socket, tuple[Any, ...]], None]) -> Any:
    def guarded(self: socket.socket, *args: Any) -> Any:
        check(self, args)
        return original(self, *args)

    guarded.__name__ = getattr(original, "__name__", "guarded")
    guarded.__doc__ = getattr(original, "__doc__", None)
    guarded.__wrapped__ = original  # type: ignore[attr-defined]
    return guarded


def _check_connect(sock: socket.socket, args: tuple[Any, ...]) -> None:
    if args:
        _check_address(sock.family, args[0])


def _check_sendto(sock: socket.socket, args: tuple[Any, ...]) -> None:
    if len(args) >= 2:
        _check_address(sock.family, args[-1])


def _wrap_function(original: Callable[..., Any], check: Callable[..., None]) -> Any:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return original(*args, **kwargs)

    guarded.__name__ = getattr(original, "__name__", "guarded")
    guarded.__doc__ = getattr(original, "__doc__", None)
    guarded.__wrapped__ = original  # type: ignore[attr-defined]
    return guarded


def _resolve_check(host: object = None, *args: Any, **kwargs: Any) -> None:
    _check_resolve(kwargs.get("host", host))


def _patch(owner: object, name: str, replacement: Any) -> None:
    had_own = name in vars(owner)
    original = vars(owner)[name] if had_own else getattr(owner, name)
    _saved.append((owner, name, had_own, original))
    setattr(owner, name, replacement)


def _install() -> None:
    sock_cls = socket.socket
    _patch(sock_cls, "connect", _wrap_method(sock_cls.connect, _check_connect))
    _patch(sock_cls, "connect_ex", _wrap_method(sock_cls.connect_ex, _check_connect))
    _patch(sock_cls, "sendto", _wrap_method(sock_cls.sendto, _check_sendto))
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        _patch(socket, name, _wrap_function(getattr(socket, name), _resolve_check))
    uvloop = sys.modules.get("uvloop")
    loop_cls: Any = getattr(uvloop, "Loop", None) if uvloop is not None else None
    if loop_cls is not None:
        _patch(loop_cls, "create_connection", _uvloop_create_connection(loop_cls.create_connection))
        _patch(loop_cls, "getaddrinfo", _uvloop_getaddrinfo(loop_cls.getaddrinfo))


def _uvloop_create_connection(original: Callable[..., Any]) -> Any:
    async def create_connection(self: Any, protocol_factory: Any, host: Any = None, port: Any = None, **kw: Any) -> Any:
        if kw.get("sock") is None:
            _check_host(host, port)
        return await original(self, protocol_factory, host, port, **kw)

    create_connection.__wrapped__ = original  # type: ignore[attr-defined]
    return create_connection


def _uvloop_getaddrinfo(original: Callable[..., Any]) -> Any:
    async def getaddrinfo(self: Any, host: Any, *args: Any, **kwargs: Any) -> Any:
        _check_resolve(host)
        return await original(self, host, *args, **kwargs)

    getaddrinfo.__wrapped__ = original  # type: ignore[attr-defined]
    return getaddrinfo


def _uninstall() -> None:
    while _saved:
        owner, name, had_own, original = _saved.pop()
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


# -- the public API ----------------------------------------------------------------------


@contextmanager
def no_network(allow: Iterable[str] = ()) -> Iterator[NetworkGuard]:
    """Refuse every connection to a non-loopback address (and non-local DNS) inside the block.

    ``allow`` adds host names, addresses or networks (``"10.0.0.0/8"``) that stay
    reachable. Yields the :class:`NetworkGuard` (its ``blocked`` lists what was refused).
    """
    current = NetworkGuard(allow)
    with _lock:
        if not _active:
            _install()
        _active.append(current)
    try:
        yield current
    finally:
        with _lock:
            _active.remove(current)
            if not _active:
                _uninstall()


guard = no_network
"""Alias of :func:`no_network`."""


@contextmanager
def allow_network() -> Iterator[None]:
    """Lift every active guard inside the block (all threads); they are back afterwards.

    Guards entered inside the block work as usual. For the rare test that must reach the
    network while an autouse guard is active (prefer ``@pytest.mark.allow_network``).
    """
    with _lock:
        lifted = list(_active)
        if lifted:
            _active.clear()
            _uninstall()
    try:
        yield
    finally:
        with _lock:
            if lifted:
                if not _active:
                    _install()
                _active[:0] = lifted


def network_guard_fixture(
    *,
    allow: Iterable[str] = (),
    autouse: bool = True,
    name: str = "network_guard",
    marker: str = "allow_network",
    scope: str = "function",
) -> Any:
    """A pytest fixture (to assign in a ``conftest.py``) that runs every test under :func:`no_network`.

    ``allow`` is passed to every guard (e.g. the host of an external test Redis). A test
    marked ``@pytest.mark.allow_network`` runs unguarded (the fixture yields ``None``);
    ``@pytest.mark.allow_network("10.1.2.3", "example.internal")`` keeps the guard but
    allows those too. Register the marker (``markers = ["allow_network: ..."]``) when
    pytest runs with ``--strict-markers``. pytest is imported here, not at module import.
    """
    import pytest

    always = tuple(allow)

    def fixture(request: pytest.FixtureRequest) -> Iterator[NetworkGuard | None]:
        mark = request.node.get_closest_marker(marker) if scope == "function" else None
        if mark is not None and not mark.args:
            yield None
            return
        extra = tuple(str(a) for a in mark.args) if mark is not None else ()
        with no_network(allow=always + extra) as active:
            yield active

    fixture.__name__ = name
    fixture.__doc__ = "Refuse non-loopback network access during the test (see oturn.testing.network)."
    return pytest.fixture(autouse=autouse, name=name, scope=scope)(fixture)  # type: ignore[call-overload]
