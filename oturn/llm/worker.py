"""The LiteLLM worker process: ``python -m oturn.llm.worker`` (started by :mod:`oturn.llm.process`).

Importing LiteLLM stalls whatever event loop shares its interpreter, even from a worker
thread: its module bodies, its model-cost JSON and pydantic-core's schema builds hold
the GIL for tens of milliseconds at a time. This process imports it instead and serves
the parent's calls over its stdin/stdout (both one end of a socket pair), so the
parent's loop never runs LiteLLM code. The import runs in a thread of lower CPU
priority (Linux), so that on a busy machine the parent is scheduled first.

The protocol: frames of a 4-byte big-endian length then a msgpack body (msgspec
structs below, encoded as arrays with a short tag first).

- parent → child: :class:`Request` (``id``, the :class:`~oturn.agent.effects.CallModel`,
  ``api_base``, ``api_key``, ``timeout``, ``idle_timeout``), :class:`Cancel` (``id``).
  Closing the socket asks the child to stop: it cancels what runs and exits.
- child → parent: :class:`Ready` once LiteLLM is imported (or :class:`Fatal` and exit
  if it cannot be); per request :class:`Accepted` (before anything is sent to the
  provider), then :class:`Deltas` (each LiteLLM chunk's deltas, already normalised by
  :func:`~oturn.llm.normalize.normalize_chunk`: the parent only decodes them) and
  :class:`Done`, or :class:`Failed` with a :class:`RemoteError` (the
  :class:`~oturn.ProviderError` the in-process adapter would raise, as data: class name,
  message, status, retry-after, partial text, and the redacted cause chain). A cancelled
  request gets nothing more.

Each request runs through :class:`~oturn.llm.litellm.LiteLLMModel` (the same deadlines,
idle timeout, cost and error translation as in process), one asyncio task per request,
all multiplexed over the one socket. The API key arrives with each request and is never
logged; every message that leaves the child is redacted of it.

The child keeps the protocol's socket to itself: fd 1 is pointed at stderr (whatever
LiteLLM prints cannot corrupt the stream) and fd 0 at ``/dev/null``. It ignores SIGINT
(the parent decides when it ends) and exits when the socket closes, so it never
outlives the parent. With ``OTURN_WORKER_NO_NETWORK`` set (a JSON list of extra
hosts to allow) it runs under :func:`oturn.testing.network.no_network`: the parent sets
it when it starts the child inside a network guard, so tests stay offline here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterable
from contextlib import ExitStack
from types import ModuleType
from typing import Final, cast

import msgspec

from oturn._exceptions import ProviderError, StreamInterrupted
from oturn.agent.deltas import AnyDelta
from oturn.agent.effects import CallModel
from oturn.llm.errors import exception_chain, redact

__all__ = [
    "NO_NETWORK_ENV",
    "Accepted",
    "Cancel",
    "ChildMessage",
    "Deltas",
    "Done",
    "Failed",
    "Fatal",
    "ParentMessage",
    "Ready",
    "RemoteError",
    "Request",
    "frame",
    "main",
]

NO_NETWORK_ENV: Final = "OTURN_WORKER_NO_NETWORK"
HEADER: Final = 4
MAX_FRAME: Final = 2**32 - 1
_MAX_CAUSE: Final = 1000
_HIGH_WATER: Final = 1 << 20


class _Message(msgspec.Struct, frozen=True, array_like=True, tag=True):
    pass


# -- parent → child --------------------------------------------------------------------------


class Request(_Message, frozen=True, tag="q"):
    """Stream ``call`` through LiteLLM (``call.params`` already merged with the model's)."""

    id: int
    call: CallModel
    api_base: str | None
    api_key: str | None
    timeout: float
    idle_timeout: float


class Cancel(_Message, frozen=True, tag="c"):
    """Stop request ``id`` (the parent no longer listens to it)."""

    id: int


ParentMessage = Request | Cancel


# -- child → parent --------------------------------------------------------------------------


class Ready(_Message, frozen=True, tag="r"):
    """LiteLLM is imported and warmed up; requests are served from now on."""

    pid: int
    litellm_version: str


class Fatal(_Message, frozen=True, tag="f"):
    """The worker cannot serve (LiteLLM failed to import); it exits after sending this."""

    error_type: str
    message: str


class Accepted(_Message, frozen=True, tag="a"):
    """Request ``id`` was received; nothing had been sent to the provider before this."""

    id: int


class Deltas(_Message, frozen=True, tag="d"):
    """The normalised deltas of one LiteLLM chunk of request ``id``."""

    id: int
    deltas: list[AnyDelta]


class Done(_Message, frozen=True, tag="e"):
    """Request ``id``'s stream ended normally."""

    id: int


class RemoteError(msgspec.Struct, frozen=True, array_like=True):
    """A :class:`~oturn.ProviderError` as data (``cls`` is its class name); ``chain``: the
    ``type: message`` of each exception in its cause chain (redacted, truncated)."""

    cls: str
    message: str
    status: int | None = None
    retry_after: float | None = None
    partial_text: str | None = None
    chain: list[str] = []


class Failed(_Message, frozen=True, tag="x"):
    """Request ``id`` failed."""

    id: int
    error: RemoteError


ChildMessage = Ready | Fatal | Accepted | Deltas | Done | Failed


def frame(body: bytes) -> bytes:
    """``body`` with its length prefix."""
    return len(body).to_bytes(HEADER, "big") + body


# -- the child -------------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_decode_parent = msgspec.msgpack.Decoder(ParentMessage).decode


def describe_error(exc: BaseException, secrets: Iterable[str | None]) -> RemoteError:
    """``exc`` (normally a :class:`~oturn.ProviderError`) as a :class:`RemoteError`, redacted of ``secrets``."""
    secrets = tuple(secrets)
    chain = [
        redact(f"{type(e).__module__}.{type(e).__qualname__}: {e}"[:_MAX_CAUSE], secrets)
        for e in exception_chain(exc)[1:]
    ]
    if isinstance(exc, ProviderError):
        return RemoteError(
            cls=type(exc).__name__,
            message=redact(str(exc), secrets),
            status=exc.status,
            retry_after=exc.retry_after,
            partial_text=exc.partial_text if isinstance(exc, StreamInterrupted) else None,
            chain=chain,
        )
    return RemoteError(
        cls="ProviderError",
        message=redact(f"the LiteLLM worker failed: {type(exc).__name__}: {exc}", secrets),
        chain=chain,
    )


class _Server:
    """Serves requests; frames produced in one turn of the event loop go out in one write.

    LiteLLM often hands over several buffered chunks without letting the loop run in
    between: their frames are coalesced (one system call here, one wake-up of the parent)
    instead of being written one by one.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.pending = bytearray()
        self.loop = asyncio.get_running_loop()

    async def send(self, message: ChildMessage) -> None:
        pending = self.pending
        if not pending:
            self.loop.call_soon(self._flush)
        start = len(pending)
        _encoder.encode_into(message, pending, start + HEADER)
        pending[start : start + HEADER] = (len(pending) - start - HEADER).to_bytes(HEADER, "big")
        if self.writer.transport.get_write_buffer_size() > _HIGH_WATER:
            await self.writer.drain()  # the parent is not reading: wait (the request's deadlines still run)

    def _flush(self) -> None:
        if self.pending and not self.writer.transport.is_closing():
            self.writer.write(self.pending)  # copies what it cannot send at once
        self.pending.clear()

    async def serve(self) -> None:
        async with asyncio.TaskGroup() as group:
            try:
                while True:
                    try:
                        header = await self.reader.readexactly(HEADER)
                        body = await self.reader.readexactly(int.from_bytes(header, "big"))
                    except asyncio.IncompleteReadError:
                        return  # the parent closed stdin (or died): stop
                    message = _decode_parent(body)
                    if isinstance(message, Request):
                        if message.id not in self.tasks:
                            self.tasks[message.id] = group.create_task(self.run(message))
                    else:
                        task = self.tasks.get(message.id)
                        if task is not None:
                            task.cancel()
            finally:
                for task in self.tasks.values():
                    task.cancel()

    async def run(self, request: Request) -> None:
        from oturn.llm.litellm import LiteLLMModel

        try:
            await self.send(Accepted(id=request.id))
            model = LiteLLMModel(
                api_base=request.api_base,
                api_key=request.api_key,
                timeout=request.timeout,
                idle_timeout=request.idle_timeout,
            )
            try:
                async for batch in model.stream(request.call):
                    await self.send(Deltas(id=request.id, deltas=cast("list[AnyDelta]", batch)))
            except Exception as exc:
                await self.send(Failed(id=request.id, error=describe_error(exc, (request.api_key,))))
            else:
                await self.send(Done(id=request.id))
        except OSError:
            pass  # the parent is gone (broken pipe, reset): nobody to tell
        finally:
            self.tasks.pop(request.id, None)


def _protect_stdio() -> socket.socket:
    """The protocol's socket (stdin and stdout are both that socket); fd 1 → stderr, fd 0 → /dev/null."""
    sock = socket.socket(fileno=os.dup(0))
    sys.stdout.flush()
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return sock


async def _serve(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**31)
    try:
        await _Server(reader, writer).serve()
    finally:
        writer.close()


def main() -> int:
    """Import LiteLLM, say :class:`Ready`, then serve requests until stdin closes."""
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sock = _protect_stdio()
    except OSError:
        print("oturn.llm.worker is started by oturn.llm.process: its stdin must be a socket", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        allow = os.environ.get(NO_NETWORK_ENV)
        if allow is not None:
            from oturn.testing.network import no_network

            stack.enter_context(no_network(json.loads(allow) if allow.strip() else ()))
        try:
            litellm = _import_in_the_background()
        except BaseException as exc:
            traceback.print_exc()
            fatal = Fatal(error_type=type(exc).__name__, message=str(exc)[:_MAX_CAUSE])
            sock.sendall(frame(_encoder.encode(fatal)))
            return 1
        version = str(getattr(litellm, "__version__", None) or _version("litellm"))
        sock.sendall(frame(_encoder.encode(Ready(pid=os.getpid(), litellm_version=version))))
        asyncio.run(_serve(sock))
    return 0


IMPORT_NICENESS: Final = 10
"""How much lower the priority of the thread that imports LiteLLM is (Linux: per thread)."""


def _import_in_the_background() -> ModuleType:
    """Import LiteLLM in a thread of lower CPU priority, so that on a busy machine the parent's
    event loop (and everything else) is scheduled before this seconds-long import.

    Linux keeps a nice value per thread: only the importing thread is lowered, the thread
    that serves requests afterwards keeps its priority. Elsewhere it is a plain import.
    """
    from oturn.llm.litellm import _import_litellm

    result: list[ModuleType] = []
    failure: list[BaseException] = []

    def run() -> None:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), IMPORT_NICENESS)
        try:
            result.append(_import_litellm())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="oturn-litellm-import")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _version(distribution: str) -> str:
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
