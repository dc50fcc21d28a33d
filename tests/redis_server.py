"""Private ``redis-server`` processes for tests.

Each :class:`RedisServer` runs its own ``redis-server`` on a free loopback port with
persistence off (``--save "" --appendonly no``) and its working directory in a
temporary folder, so tests are isolated from each other and from any Redis the
machine runs, and fault tests can kill and restart it::

    with RedisServer() as server:
        url = server.url          # redis://127.0.0.1:PORT/0
        server.kill()             # SIGKILL: clients see the connection drop
        server.restart()          # same port, empty data set

Readiness is checked with a raw ``PING`` over a socket, so this module needs only the
standard library. Servers still running when the interpreter exits are killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "RedisServerError", "find_redis_server", "free_port", "ping"]

_HOST = "127.0.0.1"
_START_ATTEMPTS = 5
_live: weakref.WeakSet[RedisServer] = weakref.WeakSet()


class RedisServerError(RuntimeError):
    """A private redis-server could not be started (the message includes its log)."""


def find_redis_server() -> str | None:
    """The redis-server binary: ``$OTURN_TEST_REDIS_SERVER``, else ``redis-server`` on PATH."""
    configured = os.environ.get("OTURN_TEST_REDIS_SERVER")
    if configured:
        return shutil.which(configured) or (configured if os.access(configured, os.X_OK) else None)
    return shutil.which("redis-server")


def free_port(host: str = _HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers ``PING`` on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One private redis-server process; a context manager that stops it on exit."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        host: str = _HOST,
        port: int | None = None,
        startup_timeout: float = 10.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise RedisServerError("no redis-server binary found (install redis-server or set OTURN_TEST_REDIS_SERVER)")
        self.binary = found
        self.host = host
        self.port = port
        self._fixed_port = port is not None
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.starts = 0

    # -- properties -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://HOST:PORT/0`` of this server (valid once started)."""
        if self.port is None:
            raise RedisServerError("the server has not been started")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The process id while the server runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the redis-server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def workdir(self) -> Path:
        """The server's private working directory (its log is ``redis.log`` there)."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="oturn-redis-")
        return Path(self._tmp.name)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; a no-op if it runs already.

        Without a ``port`` a free one is picked at the first start; restarts keep it.
        """
        if self.running:
            return self
        # A port given by the caller, or the one of an earlier start (restart), is kept;
        # otherwise a free one is picked, and picked again if another process took it
        # between the pick and redis-server's bind.
        keep_port = self._fixed_port or self.starts > 0
        last_error: RedisServerError | None = None
        for _ in range(1 if keep_port else _START_ATTEMPTS):
            if not keep_port:
                self.port = free_port(self.host)
            try:
                self._spawn()
            except RedisServerError as exc:
                last_error = exc
                if "already in use" in str(exc):
                    continue  # lost the race for the port: pick another
                break
            self.starts += 1
            _live.add(self)
            return self
        assert last_error is not None
        if self.starts == 0:
            self.close()
        raise last_error

    def _spawn(self) -> None:
        assert self.port is not None
        log = self.workdir / "redis.log"
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            "--logfile",
            "",  # log to stdout, which goes to the log file with stderr
            *self.extra_args,
        ]
        with log.open("ab") as out:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not for the server
            )
        self._process = process
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.002
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if ping(self.host, self.port):
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        self._reap(process)
        self._process = None
        text = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        what = (
            f"exited with status {process.returncode}"
            if process.returncode is not None and process.returncode >= 0
            else f"did not answer PING within {self.startup_timeout} s"
        )
        raise RedisServerError(f"{self.binary} on {self.host}:{self.port} {what}; its log:\n{text}")

    def stop(self, timeout: float = 5.0) -> None:
        """Shut the server down (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        process = self._process
        self._process = None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._reap(process)
        _live.discard(self)

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would; its data is lost."""
        process = self._process
        self._process = None
        if process is not None:
            self._reap(process)
        _live.discard(self)

    def restart(self) -> RedisServer:
        """Stop the server if it runs and start it again on the same port (empty)."""
        if self.running:
            self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @staticmethod
    def _reap(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5.0)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state}>"


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        server.kill()
