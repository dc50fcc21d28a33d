"""An incremental Server-Sent Events decoder (WHATWG HTML, "event stream interpretation").

Feed it the bytes of a ``text/event-stream`` body as they arrive, in pieces of any
size; it gives back the events completed so far::

    decoder = SSEDecoder()
    for piece in body:
        for event in decoder.feed(piece):
            ...
    for event in decoder.close():
        ...

What the spec asks, and this does: UTF-8 decoding with a character split across
pieces (invalid bytes become U+FFFD), one leading byte-order mark dropped, lines ended
by CRLF, LF or CR (also when a CRLF is split between two pieces), comment lines
(``:...``) ignored, ``field: value`` with one leading space stripped from the value, a
line without a colon being a field with an empty value, unknown field names ignored
(so a first line ``" data: x"`` is the field ``" data"`` and is dropped), ``data``
lines of one event joined with ``\\n``, ``event`` naming the event, ``id`` setting the
last event id (kept for later events, ignored when it contains NUL), ``retry`` setting
:attr:`SSEDecoder.retry` when it is all ASCII digits, and an event dispatched on a
blank line only when it has data. One deliberate extension: :meth:`SSEDecoder.close`
also dispatches a last event that was not followed by a blank line (real providers
end streams that way; the spec would drop it).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

import msgspec

__all__ = ["SSEDecoder", "SSEEvent", "iter_sse"]


class SSEEvent(msgspec.Struct, frozen=True):
    """One dispatched event.

    ``event`` is the ``event:`` field (``None`` when the event had none: a plain
    ``message``), ``data`` its ``data:`` lines joined with ``\\n``, ``id`` the last event
    id seen on the stream so far (``None`` if none was ever set).
    """

    event: str | None
    data: str
    id: str | None = None


class SSEDecoder:
    """Turns a byte stream into :class:`SSEEvent` values, incrementally.

    Not thread-safe; one decoder per stream. After :meth:`close` it must not be fed.
    """

    __slots__ = ("_data", "_decoder", "_event", "_id", "_pending", "_skip_lf", "_started", "retry")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # pieces of the incomplete last line (never holding a CR or LF)
        self._skip_lf = False  # the previous piece ended with CR: an LF starting this one belongs to it
        self._started = False  # a first character was seen (the BOM check is done)
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.retry: int | None = None
        """The reconnection time in milliseconds the stream asked for (``retry:``), if any."""

    @property
    def last_event_id(self) -> str | None:
        """The last event id the stream set (``id:``), ``None`` if it never did."""
        return self._id

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Decode the next piece of the stream; return the events it completed (often none)."""
        text = self._decoder.decode(data)
        if not text:
            return []
        return self._lines(text, final=False)

    def close(self) -> list[SSEEvent]:
        """End the stream: flush an unterminated last line and dispatch a last event without a blank line."""
        text = self._decoder.decode(b"", True)
        events = self._lines(text, final=True) if text or self._pending else []
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _lines(self, text: str, *, final: bool) -> list[SSEEvent]:
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text[:1] == "\n":
                text = text[1:]
        if "\r" in text:
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        pending = self._pending
        if not final and "\n" not in text:
            if text:
                pending.append(text)  # a long line arriving in many pieces is joined once, when it ends
            return []
        if pending:
            pending.append(text)
            text = "".join(pending)
        lines = text.split("\n")
        rest = "" if final else lines.pop()
        self._pending = [rest] if rest else []
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif line[0] != ":":
                self._field(line)
        return events

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> SSEEvent | None:
        data = self._data
        event = self._event
        self._event = ""
        if not data:
            return None
        self._data = []
        return SSEEvent(event or None, data[0] if len(data) == 1 else "\n".join(data), self._id)


def iter_sse(data: bytes | Iterable[bytes]) -> Iterator[SSEEvent]:
    """Decode a whole body (``bytes``), or an iterable of byte pieces, into its events."""
    decoder = SSEDecoder()
    if isinstance(data, bytes | bytearray | memoryview):
        yield from decoder.feed(bytes(data))
    else:
        for piece in data:
            yield from decoder.feed(piece)
    yield from decoder.close()
