"""Owner identities and the dead-holder probe."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from oturn.store.lease import holder_is_dead, make_owner, parse_owner


def test_an_owner_names_this_host_and_process_and_is_unique() -> None:
    a, b = make_owner(), make_owner()
    assert a != b
    host, pid, token = a.rsplit(":", 2)
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert len(token) == 8
    assert parse_owner(a) == (host, os.getpid(), token)


def test_make_owner_takes_a_host_and_pid() -> None:
    owner = make_owner(host="node-7", pid=42)
    assert owner.startswith("node-7:42:")


def test_parse_owner_rejects_other_strings() -> None:
    for text in ("", "w1", "host:pid:x", "host:-1:x", ":12:x", "host:١٢:x"):
        assert parse_owner(text) is None, text
    assert parse_owner("a:b:12:x") == ("a:b", 12, "x")  # the host keeps its colons


@pytest.fixture
def reaped_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def zombie_pid() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        yield child.pid
    finally:
        child.wait()


@pytest.fixture
def live_pid() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_holder_whose_process_is_gone_is_dead(reaped_pid: int) -> None:
    assert holder_is_dead(make_owner(pid=reaped_pid))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombies are recognised through /proc")
def test_a_killed_but_unreaped_holder_is_dead(zombie_pid: int) -> None:
    assert holder_is_dead(make_owner(pid=zombie_pid))


def test_a_running_holder_is_alive(live_pid: int) -> None:
    assert not holder_is_dead(make_owner(pid=live_pid))


def test_this_process_and_pid_1_are_alive() -> None:
    assert not holder_is_dead(make_owner())
    assert not holder_is_dead(make_owner(pid=1))  # exists, owned by another user: PermissionError or not, alive


def test_holders_of_other_hosts_and_foreign_strings_are_never_dead(reaped_pid: int) -> None:
    assert not holder_is_dead(make_owner(host="another-host.invalid", pid=reaped_pid))
    assert not holder_is_dead("w1")
    assert not holder_is_dead(f"{socket.gethostname()}:0:x")
