"""Who writes a session: owner identities for the stores' writer leases.

An owner is ``"hostname:pid:random"`` (:func:`make_owner`). The random part keeps two
writers of one process apart (two nuclei on the same session are two owners); the host
and pid let a store take a lease over at once from a holder that died on this host
(:func:`holder_is_dead`) instead of waiting for its ``ttl`` to run out.

This is the only place a store looks at the world outside its arguments: everything
else (time included) comes in as arguments.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys

__all__ = ["holder_is_dead", "make_owner", "parse_owner"]


def make_owner(*, host: str | None = None, pid: int | None = None) -> str:
    """A fresh owner identity, ``"hostname:pid:random"`` (this host and process by default)."""
    host = socket.gethostname() if host is None else host
    pid = os.getpid() if pid is None else pid
    return f"{host}:{pid}:{secrets.token_hex(4)}"


def parse_owner(owner: str) -> tuple[str, int, str] | None:
    """``(host, pid, token)`` of an owner made by :func:`make_owner`, or ``None`` for any other string."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:
        return None
    host, pid, token = parts
    if not host or not pid.isdigit() or not pid.isascii():
        return None
    return host, int(pid), token


def holder_is_dead(holder: str) -> bool:
    """Whether ``holder`` is an owner of *this host* whose process no longer exists.

    ``False`` whenever that cannot be known for sure: another host, an owner string not
    made by :func:`make_owner`, this very process, a pid that exists (even one owned by
    another user), or Windows (where signal 0 is not a probe). A zombie (killed but not
    yet reaped by its parent) counts as dead on Linux.

    Hosts are told apart by hostname: containers that share a hostname but not a pid
    namespace must use distinct owner strings (``make_owner(host=...)``).
    """
    parsed = parse_owner(holder)
    if parsed is None or sys.platform == "win32":
        return False
    host, pid, _ = parsed
    if host != socket.gethostname() or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, as another user
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ...": comm may contain spaces and parentheses; the state follows the last ')'
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state in (b"Z", b"X")
