"""LiteLLM in a child process: :class:`LiteLLMProcessModel` and the :class:`LiteLLMWorker` it talks to.

Importing and running LiteLLM in the application's interpreter stalls its event loop,
even from a worker thread (C-level work holding the GIL: module bodies, a ~1 MB JSON,
pydantic-core schema builds; single stalls of 25-60 ms during the import, ~20 ms in the
first call), and in-thread LiteLLM spends ~0.3-0.5 ms of the loop's CPU per streamed
chunk. :class:`LiteLLMProcessModel` streams through a worker process instead
(``python -m oturn.llm.worker``, see :mod:`oturn.llm.worker` for the protocol): the
parent's loop only writes requests to a socket and decodes the deltas that come back,
already normalised (a msgpack decode per chunk, no LiteLLM code). This is what
``oturn.Agent("provider/model")`` uses by default on POSIX systems.

- **Startup**: the worker is started by the first call (or :meth:`LiteLLMProcessModel.prewarm`);
  the call waits for it, asynchronously, while LiteLLM imports in the other process.
- **Sharing**: one worker serves any number of models and concurrent calls (each call
  has an id; frames are multiplexed over the one socket). By default every model uses
  the event loop's shared worker; pass ``worker=`` to use your own
  (``async with LiteLLMWorker() as worker``).
- **Errors**: a call fails with the same :class:`~oturn.ProviderError` subclass as with
  :class:`~oturn.llm.litellm.LiteLLMModel` (classified in the child by
  :func:`~oturn.llm.errors.translate_error`; status, retry-after and partial text kept).
  Its ``__cause__`` is a :class:`RemoteException` listing the child's cause chain as text
  (redacted of the API key, like the message).
- **Crashes**: if the worker dies, calls in flight fail (:class:`~oturn.ProviderConnectionError`
  before their stream started, :class:`~oturn.StreamInterrupted` with the partial text
  after) and the next call starts a new worker. A request the dead worker never
  acknowledged had not reached the provider: it is sent again, once, to the new one.
- **Cancellation**: cancelling a call (or closing its stream early) tells the worker to
  stop it and returns at once; cleanup writes are shielded and bounded.
- **Lifetime**: the worker lives until :meth:`LiteLLMWorker.aclose` (or the end of its
  ``async with``), until its event loop ends (it is stopped then, as asyncio and trio
  finalise pending async generators), until it is garbage collected, or until this
  process exits (its socket closes and it exits by itself). It is never left running.
- **Output**: the worker's stderr is this process's (LiteLLM's warnings show as they
  would in process); its stdout is pointed there too, so nothing it prints can corrupt
  the protocol.

The child is started with ``subprocess.Popen`` on the loop thread (~0.3 ms), its stdin
and stdout being one end of a socket pair; this side reads and writes the other end
without blocking (``anyio.wait_readable``), so it needs no child watcher and works on
asyncio, uvloop and trio. (``anyio.open_process`` on asyncio blocks the loop 3-15 ms on
Python 3.11 while it starts a child-watcher thread.) Reading needs no background task
either: whichever call is waiting reads, hands other calls their frames, and passes the
reading on when it has its own, so the child is served by the calls' own tasks, in
whatever task structure runs them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, TypeAlias, cast

import anyio
import msgspec
from anyio.lowlevel import RunVar
from msgspec.structs import replace

import oturn
from oturn._exceptions import (
    AuthenticationError,
    BadRequest,
    ClosedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamDecodeError,
    StreamInterrupted,
    StreamStalled,
    UsageError,
)
from oturn.agent.deltas import StreamDelta, TextDelta
from oturn.agent.effects import CallModel
from oturn.llm.errors import redact
from oturn.llm.litellm import DEFAULT_TIMEOUT, _check_params, _LiteLLMOptions
from oturn.llm.worker import (
    HEADER,
    NO_NETWORK_ENV,
    Accepted,
    Cancel,
    ChildMessage,
    Deltas,
    Done,
    Failed,
    Fatal,
    Ready,
    RemoteError,
    Request,
    frame,
)

__all__ = ["LiteLLMProcessModel", "LiteLLMWorker", "RemoteException", "shared_worker"]

DEFAULT_START_TIMEOUT: Final = 120.0
"""Seconds the first call waits for the worker to import LiteLLM (2-3 s normally; 7-10 s
without byte-compiled files; more on a loaded machine)."""
DEFAULT_CLOSE_TIMEOUT: Final = 2.0
_WRITE_TIMEOUT: Final = 5.0
"""A healthy worker reads its input at once; a write blocked this long means it is wedged."""
_POSIX: Final = os.name == "posix"
_CANCEL_TIMEOUT: Final = 0.5
"""A cancel frame is a few bytes: it only waits if the worker stopped reading (then it is dropped)."""
_WATCHDOG_GRACE: Final = 5.0
"""The worker enforces each call's deadline itself; the parent gives up on it this much later."""
_RECEIVE: Final = 1 << 20

_ERRORS: Final[dict[str, type[ProviderError]]] = {
    cls.__name__: cls
    for cls in (
        ProviderError,
        StreamDecodeError,
        ProviderConnectionError,
        ProviderTimeout,
        RateLimited,
        ProviderUnavailable,
        AuthenticationError,
        BadRequest,
        StreamInterrupted,
        StreamStalled,
    )
}

_decode: Final = msgspec.msgpack.Decoder(ChildMessage).decode
_encode: Final = msgspec.msgpack.Encoder().encode

_wait_readable: Callable[[socket.socket], Awaitable[None]] = getattr(anyio, "wait_readable", None) or (
    anyio.wait_socket_readable
)
_wait_writable: Callable[[socket.socket], Awaitable[None]] = getattr(anyio, "wait_writable", None) or (
    anyio.wait_socket_writable
)

_run_marker: RunVar[object] = RunVar("oturn.llm.process.run")
_shared: RunVar[LiteLLMWorker] = RunVar("oturn.llm.process.shared")

Message: TypeAlias = ChildMessage


class RemoteException(Exception):
    """The cause of an error raised in the worker process, as text (it cannot cross the socket as an object).

    ``chain`` holds ``"module.Type: message"`` for each exception of the original cause
    chain (outermost first), redacted of the API key.
    """

    def __init__(self, chain: Sequence[str]) -> None:
        self.chain = tuple(chain)
        super().__init__("\n".join(self.chain) if self.chain else "(no cause recorded in the worker)")


class _Died(Exception):
    """Internal: the child is gone (``error`` says why)."""

    def __init__(self, error: ProviderError) -> None:
        self.error = error
        super().__init__(str(error))


def _current_run() -> object:
    """A token unique to the running event loop (a worker process belongs to one loop)."""
    try:
        return _run_marker.get()
    except LookupError:
        marker = object()
        _run_marker.set(marker)
        return marker


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` unless it has exited (``Popen.kill`` polls first: a reaped pid is never signalled)."""
    with contextlib.suppress(OSError):
        process.kill()


def _release(process: subprocess.Popen[bytes], sock: socket.socket) -> None:
    """Kill and reap the child, close its socket (a child's finaliser: at GC or at exit)."""
    _kill(process)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(0.2)  # killed: gone in a few milliseconds
    sock.close()


async def _exited(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``process`` to exit (polling: no watcher thread, any event loop)."""
    with anyio.move_on_after(seconds):
        delay = 0.001
        while process.poll() is None:
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.02)
    return process.returncode is not None


class _Slot:
    """One waiter on the socket: a call (or a wait for readiness) and the frames routed to it."""

    __slots__ = ("id", "inbox", "wakeup")

    def __init__(self, id: int) -> None:
        self.id = id
        self.inbox: deque[Message] = deque()
        self.wakeup: anyio.Event | None = None


class _Child:
    """One worker process, its socket, and the calls waiting on it (owned by a :class:`LiteLLMWorker`)."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket, run: object) -> None:
        self.process = process
        self.sock = sock
        self.run = run
        self.buffer = bytearray()
        self.slots: dict[int, _Slot] = {}
        self.reading = False
        self.ready: Ready | None = None
        self.failure: ProviderError | None = None
        self.closing = False
        self.write_lock = anyio.Lock()
        self.sentinel: AsyncGenerator[None, None] | None = None
        self.finalizer = weakref.finalize(self, _release, process, sock)

    # -- slots -------------------------------------------------------------------------

    def register(self, id: int) -> _Slot:
        slot = self.slots[id] = _Slot(id)
        return slot

    def unregister(self, slot: _Slot) -> None:
        self.slots.pop(slot.id, None)
        if not self.reading:
            self._hand_over()  # it may have been chosen to read next

    def is_ready(self) -> bool:
        return self.ready is not None

    def idle(self) -> bool:
        """Whether nobody is reading the socket (a method: it changes across awaits)."""
        return not self.reading

    def _hand_over(self) -> None:
        """Wake one waiter that has nothing to do, so that it takes over reading the socket."""
        for slot in self.slots.values():
            if slot.wakeup is not None and not slot.inbox:
                slot.wakeup.set()
                slot.wakeup = None
                return

    def _wake_all(self) -> None:
        for slot in self.slots.values():
            if slot.wakeup is not None:
                slot.wakeup.set()
                slot.wakeup = None

    # -- reading -----------------------------------------------------------------------

    async def wait_for(self, slot: _Slot, done: Callable[[], bool]) -> None:
        """Return when ``done()`` or the child failed; reads the socket when nobody else does."""
        while not done() and self.failure is None:
            if self.reading:
                event = slot.wakeup = anyio.Event()
                try:
                    await event.wait()
                except BaseException:
                    if slot.wakeup is event:
                        slot.wakeup = None
                    elif self.idle():
                        self._hand_over()  # it was woken to read and will not: pass that on
                    raise
            else:
                await self._pump(done)

    async def _pump(self, done: Callable[[], bool]) -> None:
        self.reading = True
        try:
            while not done() and self.failure is None:
                # Wait first, even if data is there: a reader fed only other calls' frames still yields.
                try:
                    await _wait_readable(self.sock)
                    data = self.sock.recv(_RECEIVE)
                except (BlockingIOError, InterruptedError):
                    continue
                except (OSError, anyio.ClosedResourceError):
                    data = b""
                if not data:
                    try:
                        await _exited(self.process, 0.25)  # for the exit code in the message
                    finally:
                        self.die(self._exit_error())
                    return
                self._feed(data)
        finally:
            self.reading = False
            if self.failure is None:
                self._hand_over()

    def _feed(self, data: bytes) -> None:
        buffer = self.buffer
        if buffer:
            buffer += data
            view = memoryview(buffer)
        else:
            view = memoryview(data)
        size = len(view)
        position = 0
        try:
            while size - position >= HEADER:
                end = position + HEADER + int.from_bytes(view[position : position + HEADER], "big")
                if end > size:
                    break
                self._dispatch(_decode(view[position + HEADER : end]))
                position = end
        except (msgspec.DecodeError, ValueError) as exc:
            self.die(ProviderConnectionError(f"the LiteLLM worker sent an unreadable frame: {exc}"))
            return
        finally:
            view.release()
        if buffer:
            del buffer[:position]
        elif position < size:
            buffer += data[position:]

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Ready):
            self.ready = message
            self._wake_all()
            return
        if isinstance(message, Fatal):
            self.die(_fatal_error(message))
            return
        slot = self.slots.get(message.id)
        if slot is None:
            return  # a call that was cancelled or closed: its late frames are dropped
        slot.inbox.append(message)
        if slot.wakeup is not None:
            slot.wakeup.set()
            slot.wakeup = None

    async def next(self, slot: _Slot) -> Message:
        """The next frame for ``slot``; raises :class:`_Died` if the child is gone first."""
        if not slot.inbox:
            await self.wait_for(slot, lambda: bool(slot.inbox))
            if not slot.inbox:
                assert self.failure is not None
                raise _Died(self.failure)
        return slot.inbox.popleft()

    # -- writing -----------------------------------------------------------------------

    async def send(self, body: bytes, limit: float = _WRITE_TIMEOUT) -> None:
        """Write one frame (shielded, at most ``limit`` seconds); raises :class:`_Died` if the child cannot take it."""
        if self.failure is not None:
            raise _Died(self.failure)
        data = frame(body)
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(limit) as scope:
                try:
                    async with self.write_lock:
                        await self._send_all(data)
                except (OSError, anyio.ClosedResourceError):  # broken pipe, reset, closed
                    self.die(self._exit_error())
            if scope.cancelled_caught:
                self.die(ProviderConnectionError("the LiteLLM worker stopped reading its input (killed it)"))
        if self.failure is not None:
            raise _Died(self.failure)

    async def _send_all(self, data: bytes) -> None:
        view = memoryview(data)
        sock = self.sock
        while view:
            try:
                view = view[sock.send(view) :]
            except (BlockingIOError, InterruptedError):
                await _wait_writable(sock)

    # -- the end -----------------------------------------------------------------------

    def die(self, error: ProviderError) -> None:
        """Mark the child failed (every waiter gets ``error``) and kill it; :meth:`close` reaps it."""
        if self.failure is None:
            self.failure = error
        _kill(self.process)
        self._wake_all()

    def _exit_error(self) -> ProviderConnectionError:
        if self.closing:
            return ProviderConnectionError("the LiteLLM worker was closed")
        code = self.process.returncode
        if code is None:
            how = "exited"
        elif code < 0:
            how = f"was killed by signal {-code} ({_signal_name(-code)})"
        else:
            how = f"exited with code {code}"
        return ProviderConnectionError(f"the LiteLLM worker process {how} unexpectedly (its stderr is this process's)")

    async def start_sentinel(self) -> None:
        """Close this child when the event loop ends (asyncio and trio finalise pending async generators)."""
        sentinel = self.sentinel = _close_at_loop_end(self)
        await sentinel.asend(None)

    async def close(self, grace: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Stop the child (its input closed, killed after ``grace`` seconds) and reap it; bounded and shielded."""
        if self.closing:
            return
        self.closing = True
        with anyio.CancelScope(shield=True):
            if self.failure is None:
                self.failure = ProviderConnectionError("the LiteLLM worker was closed")
                self._wake_all()
            process = self.process
            anyio.notify_closing(self.sock)  # a call reading or writing it gets ClosedResourceError
            self.sock.close()  # the child exits when its input ends...
            if self.ready is None:
                _kill(process)  # ...but not while it imports LiteLLM: it reads nothing until then
            if not await _exited(process, grace):
                _kill(process)
                await _exited(process, grace)
            self.finalizer.detach()
            sentinel, self.sentinel = self.sentinel, None
            if sentinel is not None:
                await sentinel.aclose()


async def _close_at_loop_end(child: _Child) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        if child.sentinel is not None:  # the loop is finalising this generator, not close()
            child.sentinel = None
            await child.close(grace=0.5)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def _fatal_error(message: Fatal) -> ProviderError:
    if message.error_type in ("ModuleNotFoundError", "ImportError"):
        text = f"LiteLLM could not be imported in the worker process ({message.error_type}: {message.message})"
        return ProviderError(text + "; install it with: pip install 'oturn[llm]'")
    return ProviderError(f"the LiteLLM worker failed to start ({message.error_type}: {message.message})")


def _package_root() -> str | None:
    """Where ``oturn`` was imported from, for the child's ``PYTHONPATH`` (``None``: an installed copy).

    A source checkout (a test run, an editable path) is put first; a ``site-packages``
    directory never is (it would come before the standard library).
    """
    root = Path(oturn.__file__).resolve().parent.parent
    return None if root.name in ("site-packages", "dist-packages") else str(root)


def _network_guard_env() -> str | None:
    """The value of ``OTURN_WORKER_NO_NETWORK`` when a network guard is active here (tests), else ``None``."""
    network = sys.modules.get("oturn.testing.network")
    if network is None or not network.is_guarded():
        return None
    allow: set[str] = set()
    for guard in getattr(network, "_active", ()):
        allow.update(guard.allow_names)
        allow.update(str(net) for net in guard.allow_networks)
    return msgspec.json.encode(sorted(allow)).decode()


class LiteLLMWorker:
    """One LiteLLM worker process, started on demand and shared by any number of calls.

    Start it ahead of the first call with :meth:`start`; stop it with :meth:`aclose`
    (or use ``async with``). A worker belongs to the event loop it was started in; used
    from another loop, it starts a new process there (the old one is killed). After a
    crash the next call starts a new process. ``env``: extra environment variables for
    the child (it inherits this process's environment, provider keys included).
    """

    def __init__(
        self,
        *,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not start_timeout > 0:
            raise UsageError(f"start_timeout must be positive, got {start_timeout!r}")
        self.start_timeout = float(start_timeout)
        self.close_timeout = float(close_timeout)
        self.env = dict(env or {})
        self._child: _Child | None = None
        self._spawning: anyio.Event | None = None
        self._closed = False
        self._ids = itertools.count(1)
        self.restarts = 0
        """How many times a worker process was started after the first."""

    def __repr__(self) -> str:
        child = self._child
        state = "closed" if self._closed else "idle" if child is None else f"pid {child.process.pid}"
        return f"<LiteLLMWorker {state}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called (a closed worker starts no process)."""
        return self._closed

    @property
    def pid(self) -> int | None:
        """The process id of the running child, if any."""
        child = self._child
        return child.process.pid if child is not None and child.failure is None else None

    @property
    def litellm_version(self) -> str | None:
        """The LiteLLM version the running child imported (once it is ready)."""
        child = self._child
        return child.ready.litellm_version if child is not None and child.ready is not None else None

    async def __aenter__(self) -> LiteLLMWorker:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the process if it is not running and wait until LiteLLM is imported in it."""
        await self._ready_child()

    async def aclose(self) -> None:
        """Stop the process (calls in flight fail with :class:`~oturn.ProviderConnectionError`); idempotent."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            await child.close(self.close_timeout)

    # -- internals ---------------------------------------------------------------------

    async def _current(self) -> _Child:
        if self._closed:
            raise ClosedError("this LiteLLMWorker is closed")
        run = _current_run()
        while True:
            child = self._child
            if child is not None and child.run is not run:
                # started by another event loop: its waiters and lock cannot be used here
                self._child = None
                child.failure = ProviderConnectionError("the LiteLLM worker belonged to another event loop")
                child.finalizer()  # kills it (its waiters, if any, are in a loop that is gone)
                child = None
            if child is not None and child.failure is not None:
                self._child = None
                await child.close(self.close_timeout)
                child = None
            if child is not None:
                return child
            spawning = self._spawning
            if spawning is not None:
                await spawning.wait()
                continue
            self._spawning = anyio.Event()
            try:
                child = await self._spawn(run)
            finally:
                self._spawning.set()
                self._spawning = None
            if self.closed:  # closed while it was starting
                await child.close(self.close_timeout)
                raise ClosedError("this LiteLLMWorker is closed")
            self._child = child
            return child

    async def _spawn(self, run: object) -> _Child:
        env = dict(os.environ)
        env.update(self.env)
        path = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
        if path:
            env["PYTHONPATH"] = path
        guard = _network_guard_env()
        if guard is not None:
            env[NO_NETWORK_ENV] = guard
        if not _POSIX:  # pragma: no cover - the child's stdio is a socket
            raise UsageError("LiteLLMProcessModel needs a POSIX system; use LiteLLMModel (in-thread) on Windows")
        # Popen runs here, on the loop thread: ~0.3 ms. anyio.open_process (asyncio's subprocess
        # support) blocks the loop for 3-15 ms on Python 3.11, starting a child-watcher thread.
        # The child's stdin and stdout are one end of a socket pair: the other end is read and
        # written without blocking, waiting with anyio, on any event loop.
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                process = subprocess.Popen(  # noqa: ASYNC220 - on purpose, see above
                    [sys.executable, "-P", "-m", "oturn.llm.worker"],
                    stdin=theirs.fileno(),
                    stdout=theirs.fileno(),
                    env=env,
                )
            ours.setblocking(False)
            child = _Child(process, ours, run)
            with anyio.CancelScope(shield=True):
                await child.start_sentinel()
        except BaseException:
            ours.close()
            raise
        return child

    async def _ready_child(self) -> _Child:
        child = await self._current()
        if child.ready is not None:
            return child
        slot = child.register(-next(self._ids))
        try:
            with anyio.move_on_after(self.start_timeout):
                await child.wait_for(slot, lambda: child.ready is not None)
        finally:
            child.unregister(slot)
        if child.is_ready():
            return child
        if child.failure is None:
            child.die(
                ProviderConnectionError(f"the LiteLLM worker did not start within {self.start_timeout:g} s (killed)")
            )
        assert child.failure is not None
        raise child.failure

    async def _open(self, request: Request) -> _RemoteCall:
        """Send ``request`` and wait until the worker accepted it (a new worker, once, if the first is gone)."""
        id = next(self._ids)
        try:
            body = _encode(replace(request, id=id))
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise UsageError(f"the call cannot be sent to the LiteLLM worker: {exc}") from exc
        for attempt in (1, 2):
            child = await self._ready_child()
            slot = child.register(id)
            accepted = False
            try:
                try:
                    await child.send(body)
                    message = await child.next(slot)
                except _Died as died:
                    if attempt == 1:
                        self.restarts += 1
                        continue  # never acknowledged: it did not reach the provider; try a new worker
                    raise died.error from None
                if not isinstance(message, Accepted):  # pragma: no cover - protocol violation
                    child.die(ProviderConnectionError(f"the LiteLLM worker answered {type(message).__name__} first"))
                    raise cast("ProviderError", child.failure)
                accepted = True
                return _RemoteCall(child, slot, request)
            finally:
                if not accepted:
                    await _cancel(child, slot)
        raise AssertionError("unreachable")  # pragma: no cover


async def _cancel(child: _Child, slot: _Slot) -> None:
    """Forget ``slot`` and tell the child to stop its call (best effort, shielded, bounded)."""
    child.unregister(slot)
    if child.failure is None:
        with contextlib.suppress(_Died):
            await child.send(_encode(Cancel(id=slot.id)), _CANCEL_TIMEOUT)


class _RemoteCall:
    """One accepted call: the frames of its stream, as batches of deltas."""

    __slots__ = ("batches", "child", "deadline", "finished", "request", "slot")

    def __init__(self, child: _Child, slot: _Slot, request: Request) -> None:
        self.child = child
        self.slot = slot
        self.request = request
        self.deadline = anyio.current_time() + request.timeout + _WATCHDOG_GRACE
        self.finished = False
        self.batches: list[list[StreamDelta]] = []

    def _partial_text(self) -> str:
        return "".join(d.text for batch in self.batches for d in batch if type(d) is TextDelta and d.choice == 0)

    async def next_batch(self) -> list[StreamDelta] | None:
        """The next batch (every :class:`Deltas` frame that is there, merged); ``None`` at the end."""
        slot = self.slot
        inbox = slot.inbox
        message: Message | None
        try:
            if inbox:
                message = inbox.popleft()
            else:
                message = None
                with anyio.move_on_after(self.deadline - anyio.current_time()):
                    message = await self.child.next(slot)
                if message is None:
                    if not inbox:
                        raise self._wedged()
                    message = inbox.popleft()
        except _Died as died:
            self.finished = True
            raise self._died(died.error) from None
        if type(message) is Deltas:
            deltas = cast("list[StreamDelta]", message.deltas)
            while inbox and type(inbox[0]) is Deltas:
                deltas.extend(cast("Deltas", inbox.popleft()).deltas)
            self.batches.append(deltas)
            return deltas
        self.finished = True
        if type(message) is Done:
            return None
        if isinstance(message, Failed):
            raise self._rebuild(message.error)
        raise ProviderConnectionError(f"the LiteLLM worker sent {type(message).__name__} mid-stream")

    def _wedged(self) -> ProviderError:
        text = self._partial_text()
        what = f"the LiteLLM worker gave no answer within the call's timeout of {self.request.timeout:g} s"
        if self.batches:
            return StreamStalled(f"the model stream stalled: {what}", partial_text=text)
        return ProviderTimeout(what)

    def _died(self, error: ProviderError) -> ProviderError:
        if not self.batches:
            return error
        return StreamInterrupted(f"the model stream was interrupted: {error}", partial_text=self._partial_text())

    def _rebuild(self, remote: RemoteError) -> ProviderError:
        cls = _ERRORS.get(remote.cls, ProviderError)
        message = redact(remote.message, (self.request.api_key,))
        error: ProviderError
        if issubclass(cls, StreamInterrupted):
            error = cls(
                message, status=remote.status, retry_after=remote.retry_after, partial_text=remote.partial_text or ""
            )
        else:
            error = cls(message, status=remote.status, retry_after=remote.retry_after)
        error.__cause__ = RemoteException([redact(line, (self.request.api_key,)) for line in remote.chain])
        return error

    async def close(self) -> None:
        if self.finished:
            self.child.unregister(self.slot)
        else:
            self.finished = True
            await _cancel(self.child, self.slot)


def shared_worker() -> LiteLLMWorker:
    """The running event loop's shared worker (created on first use; a closed one is replaced)."""
    try:
        worker = _shared.get()
    except LookupError:
        worker = None
    if worker is None or worker.closed:
        worker = LiteLLMWorker()
        _shared.set(worker)
    return worker


class LiteLLMProcessModel(_LiteLLMOptions):
    """A :class:`~oturn.agent.model.Model` that streams through LiteLLM in a worker process.

    The options are :class:`~oturn.llm.litellm.LiteLLMModel`'s (``name``, ``api_base``,
    ``api_key``, ``timeout``, ``idle_timeout``, ``params``; the same reserved keys are
    refused), plus ``worker``: the :class:`LiteLLMWorker` to use (default: the event
    loop's shared one, started by the first call). ``async with model:`` starts the
    worker and, for the shared one, stops it at the end (the next call starts another).
    """

    __slots__ = ("_worker",)
    _repr_name: ClassVar[str] = "LiteLLMProcessModel"

    def __init__(
        self,
        name: str | None = None,
        /,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        idle_timeout: float | None = None,
        params: Mapping[str, Any] | None = None,
        worker: LiteLLMWorker | None = None,
    ) -> None:
        super().__init__(
            name, api_base=api_base, api_key=api_key, timeout=timeout, idle_timeout=idle_timeout, params=params
        )
        self._worker = worker

    @property
    def worker(self) -> LiteLLMWorker:
        """The worker this model's calls go to (in the running event loop)."""
        return self._worker if self._worker is not None else shared_worker()

    async def prewarm(self) -> None:
        """Start the worker now and wait until LiteLLM is imported in it (never blocks the loop)."""
        await self.worker.start()

    async def aclose(self) -> None:
        """Stop the shared worker (a worker given to the constructor is left to its owner)."""
        if self._worker is None:
            try:
                worker = _shared.get()
            except LookupError:
                return
            await worker.aclose()

    async def __aenter__(self) -> LiteLLMProcessModel:
        await self.prewarm()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def request(self, call: CallModel, id: int = 0) -> Request:
        """The :class:`~oturn.llm.worker.Request` sent for ``call`` (params merged and checked)."""
        _check_params(call.params, "CallModel.params")
        if self.params:
            call = replace(call, params={**self.params, **call.params})
        return Request(
            id=id,
            call=call,
            api_base=self.api_base,
            api_key=self._api_key,
            timeout=self.timeout,
            idle_timeout=self.idle_timeout,
        )

    async def stream(self, call: CallModel, /) -> AsyncGenerator[Sequence[StreamDelta], None]:
        """Stream ``call``: one batch per LiteLLM chunk (or several chunks that arrived together).

        Raises a :class:`~oturn.ProviderError` subclass when the call fails.
        """
        remote = await self.worker._open(self.request(call))
        try:
            while True:
                batch = await remote.next_batch()
                if batch is None:
                    return
                yield batch
        finally:
            await remote.close()
