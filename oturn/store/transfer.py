"""Export a session (JSONL, Markdown) and import it back, into the same or another store.

JSONL (``oturn export SESSION --format jsonl``): one JSON object per line, UTF-8::

    {"format":"oturn-session","version":1,"session":"s1","meta":{...},"created_at":...,"updated_at":...,
     "parent":null,"fork_seq":null,"signals":22,"events":68}
    {"kind":"signal","seq":1,"at":1718000000.5,"type":"user_input","data":{"type":"user_input",...}}
    {"kind":"event","seq":1,"cause":1,"at":1718000000.5,"turn":"t1","type":"message_sent","data":{...}}
    ...
    {"kind":"snapshot","signal_seq":20,"event_seq":60,"at":...,"data":{...the state...}}   (optional)

The header comes first; each signal is followed by the events it caused; snapshots (only
with ``snapshots=True``) come last. ``data`` is the stored record inlined verbatim (the
msgspec JSON the journal wrote), so an export imported and exported again is the same,
byte for byte (the ``session`` of the header aside, when imported under another id).

Importing (``oturn import FILE``) never imports code or unpickles anything: every line
is decoded into a closed set of record types, and every record's ``data`` is decoded with
the :class:`~oturn.Codec` (an unknown type, a truncated or corrupt line, a gap in the
seqs is a :class:`~oturn.CorruptRecordError` naming the line and the seq). The whole file
is checked before anything is written, and a failed write leaves no half-imported
session behind.

Markdown (``--format md``) is a readable transcript of an agent session, built from its
replayed (or stored) events: user and assistant messages, reasoning in collapsed
``<details>`` blocks, tool calls with their arguments and results, approvals, choices,
restarts, usage.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

import msgspec

from oturn._exceptions import CorruptRecordError, SchemaVersionError, UsageError
from oturn.core.builtins import ErrorEvent
from oturn.core.codec import Codec
from oturn.core.envelope import Envelope
from oturn.store.protocol import Store
from oturn.store.records import EventRecord, SessionInfo, SignalRecord, SnapshotRecord

__all__ = [
    "FORMAT",
    "VERSION",
    "Imported",
    "export_jsonl",
    "export_markdown",
    "import_jsonl",
    "render_markdown",
    "stored_envelopes",
]

FORMAT = "oturn-session"
VERSION = 1
_BATCH = 2048
_APPEND_BATCH = 4096


class _Header(msgspec.Struct, kw_only=True, omit_defaults=False):
    format: str
    version: int
    session: str
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    created_at: float | None = None
    updated_at: float | None = None
    parent: str | None = None
    fork_seq: int | None = None
    signals: int | None = None
    events: int | None = None


class _Probe(msgspec.Struct):
    format: str | None = None
    version: Any = None


class _SignalLine(msgspec.Struct, tag="signal", tag_field="kind", forbid_unknown_fields=True):
    seq: int
    at: float
    type: str
    data: msgspec.Raw


class _EventLine(msgspec.Struct, tag="event", tag_field="kind", forbid_unknown_fields=True):
    seq: int
    cause: int
    at: float
    turn: str | None
    type: str
    data: msgspec.Raw


class _SnapshotLine(msgspec.Struct, tag="snapshot", tag_field="kind", forbid_unknown_fields=True):
    signal_seq: int
    event_seq: int
    at: float
    data: msgspec.Raw


_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(_SignalLine | _EventLine | _SnapshotLine)
_probe_decoder = msgspec.json.Decoder(_Probe)
_header_decoder = msgspec.json.Decoder(_Header)


def _inline(data: bytes, what: str, session: str, seq: int) -> msgspec.Raw:
    """``data`` as a raw JSON value to inline, checked to be one line of valid JSON."""
    if b"\n" in data or b"\r" in data:
        raise CorruptRecordError(f"{what} {seq} holds a line break and cannot be inlined", session=session, seq=seq)
    return msgspec.Raw(data)


# -- export ---------------------------------------------------------------------------------


async def export_jsonl(
    store: Store,
    session: str,
    codec: Codec[Any],
    out: IO[bytes],
    *,
    snapshots: bool = False,
    upto: int | None = None,
) -> int:
    """Write ``session`` to ``out`` as JSONL (see the module docstring); return the number of lines.

    Every record is checked with ``codec`` first (:class:`~oturn.CorruptRecordError` naming
    the first bad one: export the readable prefix with ``upto``). ``upto`` exports signals
    ``1..upto`` and the events they caused (and the snapshots taken by then).
    """
    info = await store.info(session)
    if info is None:
        raise UsageError(f"there is no session {session!r} in this store")
    last = info.signals if upto is None else min(upto, info.signals)
    header = _Header(
        format=FORMAT,
        version=VERSION,
        session=session,
        meta=dict(info.meta),
        created_at=info.created_at,
        updated_at=info.updated_at,
        parent=info.parent,
        fork_seq=info.fork_seq,
        signals=last,
        events=None,
    )
    lines: list[bytes] = []
    latest = info.created_at
    events = _EventReader(store, session, last)
    seq = 0
    while seq < last:
        batch = await store.signals(session, after=seq, limit=min(_BATCH, last - seq))
        if not batch:
            break
        for record in batch:
            if record.seq != seq + 1:
                raise CorruptRecordError(
                    f"the log jumps from signal {seq} to {record.seq}", session=session, seq=record.seq
                )
            _check_signal(codec, session, record)
            latest = max(latest, record.at)
            lines.append(
                _encoder.encode(
                    _SignalLine(record.seq, record.at, record.type, _inline(record.data, "signal", session, record.seq))
                )
            )
            seq = record.seq
            for event in await events.caused_by(seq):
                _check_event(codec, session, event)
                latest = max(latest, event.at)
                lines.append(
                    _encoder.encode(
                        _EventLine(
                            event.seq,
                            event.cause,
                            event.at,
                            event.turn,
                            event.type,
                            _inline(event.data, "event", session, event.seq),
                        )
                    )
                )
    if seq < last:
        raise CorruptRecordError(
            f"the store counts {last} signals but only {seq} could be read", session=session, seq=seq + 1
        )
    if snapshots:
        snapshot = await store.latest_snapshot(session)
        if snapshot is not None and snapshot.signal_seq <= last:
            try:
                codec.decode_state(snapshot.data)
            except Exception as exc:
                raise CorruptRecordError(
                    f"the snapshot after signal {snapshot.signal_seq} is unreadable: {exc}",
                    session=session,
                    seq=snapshot.signal_seq,
                ) from exc
            latest = max(latest, snapshot.at)
            lines.append(
                _encoder.encode(
                    _SnapshotLine(
                        snapshot.signal_seq,
                        snapshot.event_seq,
                        snapshot.at,
                        _inline(snapshot.data, "snapshot", session, snapshot.signal_seq),
                    )
                )
            )
    header.events = events.count
    if last < info.signals:  # a prefix: its last change is its latest record's
        header.updated_at = latest
    out.write(_encoder.encode(header) + b"\n")
    for line in lines:
        out.write(line + b"\n")
    return len(lines) + 1


class _EventReader:
    """Reads a session's events in batches, handing out those caused by each signal in turn."""

    def __init__(self, store: Store, session: str, last_signal: int) -> None:
        self.store = store
        self.session = session
        self.last_signal = last_signal
        self.buffer: list[EventRecord] = []
        self.position = 0
        self.seq = 0
        self.count = 0
        self.exhausted = False

    async def caused_by(self, signal: int) -> list[EventRecord]:
        out: list[EventRecord] = []
        while True:
            if self.position >= len(self.buffer):
                if self.exhausted:
                    return out
                self.buffer = await self.store.events(self.session, after=self.seq, limit=_BATCH)
                self.position = 0
                if not self.buffer:
                    self.exhausted = True
                    return out
            record = self.buffer[self.position]
            if record.cause > signal:
                return out
            if record.seq != self.seq + 1:
                raise CorruptRecordError(
                    f"the events jump from {self.seq} to {record.seq}", session=self.session, seq=record.seq
                )
            if record.cause < 1:
                raise CorruptRecordError(
                    f"event {record.seq} names signal {record.cause} as its cause", session=self.session, seq=record.seq
                )
            self.position += 1
            self.seq = record.seq
            self.count += 1
            out.append(record)


def _signal_problem(codec: Codec[Any], record: SignalRecord) -> str | None:
    """Why ``record`` is not a readable signal of ``codec`` (``None``: it is)."""
    try:
        signal = codec.decode_signal(record.data)
    except Exception as exc:
        kind = "of an unknown type" if not codec.knows(record.type) else "unreadable"
        return f"signal record {record.seq} ({record.type!r}) is {kind}: {exc}"
    tag = signal.__struct_config__.tag
    if tag != record.type:
        return f"signal record {record.seq} is typed {record.type!r} but holds a {tag!r}"
    return None


def _event_problem(codec: Codec[Any], record: EventRecord) -> str | None:
    """Why ``record`` is not a readable event of ``codec`` (``None``: it is)."""
    try:
        event = codec.decode_event(record.data)
    except Exception as exc:
        kind = "of an unknown type" if not codec.knows(record.type) else "unreadable"
        return f"event record {record.seq} ({record.type!r}) is {kind}: {exc}"
    tag = event.__struct_config__.tag
    if tag != record.type:
        return f"event record {record.seq} is typed {record.type!r} but holds a {tag!r}"
    return None


def _check_signal(codec: Codec[Any], session: str, record: SignalRecord) -> None:
    problem = _signal_problem(codec, record)
    if problem is not None:
        raise CorruptRecordError(problem, session=session, seq=record.seq)


def _check_event(codec: Codec[Any], session: str, record: EventRecord) -> None:
    problem = _event_problem(codec, record)
    if problem is not None:
        raise CorruptRecordError(problem, session=session, seq=record.seq)


# -- import ---------------------------------------------------------------------------------


class Imported(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`import_jsonl` wrote: the new ``session`` (from ``source``, the id in the file)."""

    session: str
    source: str
    signals: int
    events: int
    snapshots: int


def _lines(source: bytes | IO[bytes] | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source).splitlines()
    return source


async def import_jsonl(
    store: Store,
    source: bytes | IO[bytes] | Iterable[bytes],
    codec: Codec[Any],
    *,
    session: str | None = None,
    name: str = "<input>",
    now: float | None = None,
) -> Imported:
    """Import a JSONL export into ``store`` as ``session`` (default: the id in the file).

    ``source`` is the file's bytes, a binary file, or an iterable of lines; ``name``
    names it in errors. Everything is validated before anything is written (see the
    module docstring); the session must not exist yet.
    """
    header: _Header | None = None
    target = session
    signals: list[SignalRecord] = []
    events: list[EventRecord] = []
    snapshots: list[SnapshotRecord] = []
    number = 0
    for raw_line in _lines(source):
        number += 1
        line = raw_line.strip()
        if not line:
            continue
        where = f"{name} line {number}"
        if header is None:
            header = _read_header(line, where, target)
            target = target or header.session
            continue
        sid = target or header.session
        try:
            item = _line_decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise CorruptRecordError(f"{where} is not a session record: {exc}", session=sid, seq=None) from exc
        if isinstance(item, _SignalLine):
            expected = len(signals) + 1
            if item.seq != expected:
                raise CorruptRecordError(
                    f"{where}: signal {item.seq} where signal {expected} was due", session=sid, seq=item.seq
                )
            record = SignalRecord(item.seq, item.at, item.type, bytes(item.data))
            problem = _signal_problem(codec, record)
            if problem is not None:
                raise CorruptRecordError(f"{where}: {problem}", session=sid, seq=item.seq)
            signals.append(record)
        elif isinstance(item, _EventLine):
            expected = len(events) + 1
            if item.seq != expected:
                raise CorruptRecordError(
                    f"{where}: event {item.seq} where event {expected} was due", session=sid, seq=item.seq
                )
            previous = events[-1].cause if events else 1
            if item.cause < previous or item.cause < 1:
                raise CorruptRecordError(
                    f"{where}: event {item.seq} names signal {item.cause} as its cause, before signal {previous}",
                    session=sid,
                    seq=item.seq,
                )
            event = EventRecord(item.seq, item.cause, item.at, item.turn, item.type, bytes(item.data))
            problem = _event_problem(codec, event)
            if problem is not None:
                raise CorruptRecordError(f"{where}: {problem}", session=sid, seq=item.seq)
            events.append(event)
        else:
            try:
                codec.decode_state(item.data)
            except Exception as exc:
                raise CorruptRecordError(
                    f"{where}: the snapshot after signal {item.signal_seq} is unreadable: {exc}",
                    session=sid,
                    seq=item.signal_seq,
                ) from exc
            snapshots.append(SnapshotRecord(item.signal_seq, item.event_seq, item.at, bytes(item.data)))
    if header is None:
        raise CorruptRecordError(f"{name} is empty: no oturn-session header", session=target or "", seq=None)
    assert target is not None
    _check_totals(header, target, name, signals, events, snapshots)
    if await store.info(target) is not None:
        raise UsageError(f"session {target!r} already exists in this store (import it under another id)")
    created = header.created_at if header.created_at is not None else (time.time() if now is None else now)
    await store.create(target, meta=dict(header.meta), now=created)
    try:
        s = e = 0
        while s < len(signals) or e < len(events):
            batch = signals[s : s + _APPEND_BATCH]
            s += len(batch)
            limit = batch[-1].seq if batch else len(signals)
            stop = e
            while stop < len(events) and events[stop].cause <= limit and stop - e < _APPEND_BATCH * 4:
                stop += 1
            await store.append(target, batch, events[e:stop])
            e = stop
        for snapshot in snapshots:
            await store.snapshot(target, snapshot)
    except BaseException:
        await store.delete(target)
        raise
    return Imported(
        session=target, source=header.session, signals=len(signals), events=len(events), snapshots=len(snapshots)
    )


def _read_header(line: bytes, where: str, target: str | None) -> _Header:
    try:
        probe = _probe_decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise CorruptRecordError(
            f"{where} is not an oturn-session header: {exc}", session=target or "", seq=None
        ) from exc
    if probe.format != FORMAT:
        raise CorruptRecordError(
            f"{where} is not an oturn-session header (format {probe.format!r})", session=target or "", seq=None
        )
    if probe.version != VERSION:
        raise SchemaVersionError(
            f"{where}: the export has format version {probe.version!r}; this oturn reads version {VERSION}",
            found=probe.version if isinstance(probe.version, int) else -1,
            supported=VERSION,
        )
    try:
        header = _header_decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise CorruptRecordError(f"{where}: the header is unreadable: {exc}", session=target or "", seq=None) from exc
    if not header.session:
        raise CorruptRecordError(f"{where}: the header names no session", session=target or "", seq=None)
    return header


def _check_totals(
    header: _Header,
    target: str,
    name: str,
    signals: Sequence[SignalRecord],
    events: Sequence[EventRecord],
    snapshots: Sequence[SnapshotRecord],
) -> None:
    if header.signals is not None and header.signals != len(signals):
        raise CorruptRecordError(
            f"{name} is truncated: its header announces {header.signals} signals, it holds {len(signals)}",
            session=target,
            seq=len(signals) + 1,
        )
    if header.events is not None and header.events != len(events):
        raise CorruptRecordError(
            f"{name} is truncated: its header announces {header.events} events, it holds {len(events)}",
            session=target,
            seq=len(events) + 1,
        )
    if events and events[-1].cause > len(signals):
        raise CorruptRecordError(
            f"{name}: event {events[-1].seq} names signal {events[-1].cause},"
            f" but the file holds {len(signals)} signals",
            session=target,
            seq=events[-1].seq,
        )
    for snapshot in snapshots:
        if snapshot.signal_seq > len(signals) or snapshot.event_seq > len(events):
            raise CorruptRecordError(
                f"{name}: a snapshot after signal {snapshot.signal_seq} and event {snapshot.event_seq} does not fit"
                f" the {len(signals)} signals and {len(events)} events of the file",
                session=target,
                seq=snapshot.signal_seq,
            )


# -- markdown -------------------------------------------------------------------------------


async def stored_envelopes(store: Store, session: str, codec: Codec[Any]) -> list[Envelope]:
    """The stored events of ``session`` as envelopes (decoded; :class:`~oturn.CorruptRecordError` on a bad one)."""
    out: list[Envelope] = []
    seq = 0
    while True:
        batch = await store.events(session, after=seq, limit=_BATCH)
        if not batch:
            return out
        for record in batch:
            try:
                event = codec.decode_event(record.data)
            except Exception as exc:
                raise CorruptRecordError(
                    f"event record {record.seq} ({record.type!r}) is unreadable: {exc}", session=session, seq=record.seq
                ) from exc
            out.append(Envelope(record.seq, record.at, session, record.turn, record.cause, event))
            seq = record.seq


async def export_markdown(
    store: Store, session: str, codec: Codec[Any], *, reducer: Any = None, initial: Any = None
) -> str:
    """A Markdown transcript of ``session``: of its replayed events with ``reducer``, else of the stored ones."""
    info = await store.info(session)
    if info is None:
        raise UsageError(f"there is no session {session!r} in this store")
    if reducer is not None:
        from oturn.store.replay import replay

        result = await replay(store, session, reducer, initial, codec)
        envelopes = result.envelopes
    else:
        envelopes = await stored_envelopes(store, session, codec)
    return render_markdown(envelopes, info=info)


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fence(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}\n"


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.split("\n")) + "\n"


def _code(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _usage(usage: Any) -> str:
    cost = f", ${usage.cost:.5f}" if usage.cost is not None else ""
    calls = f"{usage.calls} model call{'s' if usage.calls != 1 else ''}, "
    return f"{calls}{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens{cost}"


def _pretty_arguments(arguments: str) -> str:
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return arguments
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def render_markdown(envelopes: Sequence[Envelope], *, info: SessionInfo | None = None) -> str:
    """A Markdown transcript of an agent session's events (see the module docstring)."""
    from oturn.agent import events as ev

    parts: list[str] = []
    title = info.id if info is not None else (envelopes[0].session if envelopes else "session")
    parts.append(f"# Session {_code(title)}\n\n")
    if info is not None:
        parts.append(f"- created: {_when(info.created_at)}; updated: {_when(info.updated_at)}\n")
        parts.append(f"- {info.signals} signals, {info.events} events\n")
        if info.parent is not None:
            parts.append(f"- forked from {_code(info.parent)} at signal {info.fork_seq}\n")
        parts.append("\n")
    text: list[str] = []
    reasoning: list[str] = []
    user: list[str] = []  # a message_sent waits for its turn_started, so the turn's heading comes first

    def flush(*, users: bool = True) -> None:
        if user and users:
            parts.extend(user)
            user.clear()
        if reasoning:
            body = "".join(reasoning).strip("\n")
            parts.append(f"<details><summary>Reasoning</summary>\n\n{_quote(body)}\n</details>\n\n")
            reasoning.clear()
        if text:
            body = "".join(text).strip("\n")
            parts.append(f"**Assistant:**\n\n{body}\n\n")
            text.clear()

    for envelope in envelopes:
        event = envelope.event
        if isinstance(event, ev.AssistantReasoningDelta):
            if text:
                flush()
            reasoning.append(event.text)
            continue
        if isinstance(event, ev.AssistantDelta):
            if reasoning:
                flush()
            text.append(event.text)
            continue
        if isinstance(
            event,
            ev.StateChanged
            | ev.ToolCallDelta
            | ev.AssistantFinal
            | ev.ToolStarted
            | ev.ToolExit
            | ev.InputQueued
            | ev.ChoiceResolved,
        ):
            continue
        if isinstance(event, ev.MessageSent):
            flush()
            user.append(f"**User:**\n\n{_quote(event.text)}\n")
            continue
        if isinstance(event, ev.TurnStarted):
            flush(users=False)
            parts.append(f"## Turn {event.turn}\n\n_{_when(envelope.at)}_\n\n")
            flush()
            continue
        flush()
        if isinstance(event, ev.ToolCall):
            parts.append(f"**Tool call** {_code(event.name)} ({_code(event.id)}):\n\n")
            parts.append(_fence(_pretty_arguments(event.arguments), "json") + "\n")
        elif isinstance(event, ev.ApprovalRequest):
            parts.append(f"**Approval requested** for {_code(event.tool)} ({_code(event.id)})\n\n")
        elif isinstance(event, ev.ApprovalResolved):
            verdict = "Approved" if event.approved else "Denied"
            how = "" if event.how in ("approved", "denied") else f" ({event.how.replace('_', ' ')})"
            message = f": {event.message}" if event.message else ""
            parts.append(f"**{verdict}**{how} {_code(event.call_id)}{message}\n\n")
        elif isinstance(event, ev.ChoiceRequest):
            options = ", ".join(_code(value) for value in event.options)
            parts.append(f"**Choice requested** ({_code(event.id)}): {event.prompt} — {options}\n\n")
        elif isinstance(event, ev.ToolOutput):
            parts.append(f"_{_code(event.id)} output:_\n\n{_fence(event.text)}\n")
        elif isinstance(event, ev.ToolResult):
            status = "error" if event.is_error else "ok"
            parts.append(f"**Tool result** {_code(event.name)} ({_code(event.id)}, {status}):\n\n")
            parts.append(_fence(event.content) + "\n")
        elif isinstance(event, ev.UsageReport):
            parts.append(f"_Usage of {_code(event.call)}: {_usage(event.usage)}_\n\n")
        elif isinstance(event, ev.SessionResumed):
            details = []
            if event.model_call:
                details.append(f"model call {_code(event.model_call)} made again")
            if event.interrupted:
                details.append("interrupted: " + ", ".join(_code(i) for i in event.interrupted))
            if event.pending:
                details.append("still waiting for approval: " + ", ".join(_code(p) for p in event.pending))
            detail = f" ({'; '.join(details)})" if details else ""
            parts.append(f"> _Session resumed after a restart{detail}._\n\n")
        elif isinstance(event, ev.RunAborted):
            parts.append(f"_Turn {event.turn} aborted: {event.reason}._\n\n")
        elif isinstance(event, ev.CancelRequested):
            parts.append(f"_Cancel requested ({event.mode})._\n\n")
        elif isinstance(event, ev.InputRejected):
            parts.append(f"_Input {_code(event.input_id)} rejected: {event.reason}._\n\n")
        elif isinstance(event, ev.Ignored):
            parts.append(f"_Ignored {event.signal} {_code(event.id or '')}: {event.reason}._\n\n")
        elif isinstance(event, ev.TurnFinished):
            error = f" — {event.error.message}" if event.error is not None else ""
            parts.append(f"**Turn {event.turn} {event.outcome}**{error} — {_usage(event.usage)}\n\n---\n\n")
        elif isinstance(event, ErrorEvent):
            parts.append(f"> **Reducer error** on signal {event.signal_seq} ({event.signal_type}): {event.message}\n\n")
        else:
            parts.append(f"_{event.__struct_config__.tag}_\n\n")
    flush()
    return "".join(parts).rstrip("\n") + "\n"
