"""Replay: re-reduce a stored signal log and check that it reproduces the stored events byte for byte.

A session *is* its signal log: the reducers are pure, and everything that came from
outside (user input, every chunk the model streamed, tool results, approvals, timers)
is in the log as a signal. :func:`replay` reads the log from the first signal and
reduces it again, with no model and no tools, building the envelopes exactly as the
:class:`~oturn.Nucleus` built them:

- event ``seq`` from 1, one per event, in order;
- ``at`` = the time the signal was logged with (the nucleus stamps a signal's events
  with the time it reduced that signal);
- ``cause`` = the signal's ``seq``; ``turn`` = the transition's ``turn``;
- a reducer that raised (or returned something that is not a Transition) leaves the
  state untouched and publishes one :class:`~oturn.ErrorEvent`, as the nucleus does
  (``on_reducer_error`` says whether the nucleus would have stopped there);
- a terminal transition ends the replay.

:func:`verify` compares the replayed events with the stored ones (``seq``, ``cause``,
``at``, ``turn``, ``type`` and the encoded bytes) and returns the first
:class:`Mismatch`, or ``None`` when every stored event is reproduced::

    result = await replay(store, "s1", reducer, reducer.initial(), agent_codec())
    mismatch = await verify(store, "s1", reducer, reducer.initial(), agent_codec())
    assert mismatch is None, mismatch

:func:`replay_transcript` prints an agent session as a readable transcript (what
``oturn replay SESSION`` shows).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TextIO, TypeVar

import msgspec

from oturn._exceptions import CorruptRecordError, ReducerContractError, UsageError
from oturn.core.builtins import ErrorEvent
from oturn.core.codec import Codec
from oturn.core.envelope import Envelope
from oturn.core.messages import Event, Signal
from oturn.core.transition import Transition
from oturn.store.protocol import Store
from oturn.store.records import EventRecord, SignalRecord

__all__ = [
    "Mismatch",
    "ReplayResult",
    "compare",
    "decode_signal",
    "read_signals",
    "reduce_log",
    "render_transcript",
    "replay",
    "replay_transcript",
    "stored_events",
    "usage_line",
    "verify",
]

S = TypeVar("S")

_BATCH = 2048


class _OnError(enum.StrEnum):
    CONTINUE = "continue"
    STOP = "stop"


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """The first place where a replay and the stored events disagree.

    ``expected`` is the event record the replay produced (``None``: the store holds an
    event the replay did not produce); ``found`` the stored one (``None``: the store
    lacks an event the replay produced). ``reason`` says what differs.
    """

    session: str
    seq: int
    expected: EventRecord | None
    found: EventRecord | None
    reason: str

    def __str__(self) -> str:
        lines = [f"session {self.session!r}: event {self.seq}: {self.reason}"]
        lines.append(f"  expected: {_describe(self.expected)}")
        lines.append(f"  found:    {_describe(self.found)}")
        return "\n".join(lines)


def _describe(record: EventRecord | None) -> str:
    if record is None:
        return "(nothing)"
    data = record.data.decode("utf-8", "replace")
    if len(data) > 300:
        data = data[:300] + "…"
    return f"seq={record.seq} cause={record.cause} at={record.at!r} turn={record.turn!r} type={record.type!r} {data}"


class ReplayResult(Generic[S]):
    """What :func:`replay` produced.

    - ``state``: the state after the last signal replayed;
    - ``envelopes``: the envelopes the nucleus published (events decoded);
    - ``records``: the same events encoded, as the journal stored them;
    - ``signals``: how many signals were replayed; ``errors``: how many of them the
      reducer failed on; ``terminated``: a transition was terminal (or a fatal error
      stopped the replay), so signals after it, if any, were not reduced.
    """

    __slots__ = ("envelopes", "errors", "records", "session", "signals", "state", "terminated")

    def __init__(
        self,
        session: str,
        state: S,
        envelopes: list[Envelope],
        records: list[EventRecord],
        signals: int,
        errors: int,
        terminated: bool,
    ) -> None:
        self.session = session
        self.state = state
        self.envelopes = envelopes
        self.records = records
        self.signals = signals
        self.errors = errors
        self.terminated = terminated

    def __repr__(self) -> str:
        return (
            f"<ReplayResult {self.session} signals={self.signals} events={len(self.records)}"
            f" errors={self.errors} terminated={self.terminated}>"
        )


def decode_signal(codec: Codec[Any], session: str, record: SignalRecord) -> Signal:
    """The signal of ``record``, or :class:`~oturn.CorruptRecordError` naming the session and seq."""
    try:
        return codec.decode_signal(record.data)
    except Exception as exc:
        kind = "of an unknown type" if not codec.knows(record.type) else "unreadable"
        raise CorruptRecordError(
            f"signal record {record.seq} ({record.type!r}) is {kind}: {exc}", session=session, seq=record.seq
        ) from exc


async def read_signals(
    store: Store, session: str, codec: Codec[Any], *, upto: int | None = None
) -> list[tuple[SignalRecord, Signal]]:
    """Every signal of ``session`` (up to ``upto``), decoded, checking that the seqs have no gap."""
    out: list[tuple[SignalRecord, Signal]] = []
    seq = 0
    while upto is None or seq < upto:
        limit = _BATCH if upto is None else min(_BATCH, upto - seq)
        batch = await store.signals(session, after=seq, limit=limit)
        if not batch:
            break
        for record in batch:
            if record.seq != seq + 1:
                raise CorruptRecordError(
                    f"the log jumps from signal {seq} to {record.seq}", session=session, seq=record.seq
                )
            out.append((record, decode_signal(codec, session, record)))
            seq = record.seq
    return out


async def replay(
    store: Store,
    session: str,
    reducer: Callable[[S, Signal], Transition[S]],
    initial: S,
    codec: Codec[S],
    *,
    upto: int | None = None,
    on_reducer_error: str = "continue",
) -> ReplayResult[S]:
    """Re-reduce the signals of ``session`` (all, or ``1..upto``) from ``initial``; see the module docstring.

    Raises :class:`~oturn.UsageError` if the store has no such session and
    :class:`~oturn.CorruptRecordError` (naming the session and seq) at the first signal
    that does not decode.
    """
    try:
        mode = _OnError(on_reducer_error)
    except ValueError:
        raise UsageError(f"on_reducer_error is 'continue' or 'stop'; got {on_reducer_error!r}") from None
    if await store.info(session) is None:
        raise UsageError(f"there is no session {session!r} in this store")
    signals = await read_signals(store, session, codec, upto=upto)
    return reduce_log(session, reducer, initial, codec, signals, fatal=mode is _OnError.STOP)


def reduce_log(
    session: str,
    reducer: Callable[[S, Signal], Transition[S]],
    initial: S,
    codec: Codec[S],
    signals: Sequence[tuple[SignalRecord, Signal]],
    *,
    fatal: bool = False,
) -> ReplayResult[S]:
    """The pure part of :func:`replay`: reduce decoded ``(record, signal)`` pairs like the nucleus."""
    encode = codec.encode
    state = initial
    envelopes: list[Envelope] = []
    records: list[EventRecord] = []
    seq = 0
    errors = 0
    replayed = 0
    terminated = False

    def publish(events: Sequence[Event], turn: str | None, at: float, cause: int) -> None:
        nonlocal seq
        for event in events:
            seq += 1
            envelopes.append(Envelope(seq, at, session, turn, cause, event))
            records.append(EventRecord(seq, cause, at, turn, event.__struct_config__.tag, encode(event)))  # type: ignore[arg-type]

    for record, signal in signals:
        cause, at = record.seq, record.at
        replayed += 1
        failure: tuple[str, str] | None = None
        try:
            t: object = reducer(state, signal)
        except Exception as exc:
            kind = "contract" if isinstance(exc, ReducerContractError) else "reducer"
            failure = (kind, f"{type(exc).__name__}: {exc}")
        else:
            if not isinstance(t, Transition):
                failure = ("contract", f"the reducer returned {type(t).__name__}, not a Transition")
        if failure is not None:
            errors += 1
            kind, message = failure
            event = ErrorEvent(
                kind=kind, message=message, signal_seq=cause, signal_type=type(signal).__name__, fatal=fatal
            )
            publish((event,), None, at, cause)
            if fatal:
                terminated = True
                break
            continue
        assert isinstance(t, Transition)
        state = t.state
        if t.events:
            publish(t.events, t.turn, at, cause)
        if t.terminal:
            terminated = True
            break
    return ReplayResult(session, state, envelopes, records, replayed, errors, terminated)


def compare(session: str, expected: Sequence[EventRecord], found: Sequence[EventRecord]) -> Mismatch | None:
    """The first difference between two event logs (``None`` when they are identical)."""
    for mine, theirs in zip(expected, found, strict=False):
        reason = _differs(mine, theirs)
        if reason is not None:
            return Mismatch(session=session, seq=mine.seq, expected=mine, found=theirs, reason=reason)
    if len(expected) > len(found):
        mine = expected[len(found)]
        return Mismatch(
            session=session,
            seq=mine.seq,
            expected=mine,
            found=None,
            reason="the replay produced an event the store does not hold",
        )
    if len(found) > len(expected):
        theirs = found[len(expected)]
        return Mismatch(
            session=session,
            seq=theirs.seq,
            expected=None,
            found=theirs,
            reason="the store holds an event the replay did not produce",
        )
    return None


def _differs(mine: EventRecord, theirs: EventRecord) -> str | None:
    if mine.seq != theirs.seq:
        return f"seq differs ({mine.seq} replayed, {theirs.seq} stored)"
    if mine.type != theirs.type:
        return f"type differs ({mine.type!r} replayed, {theirs.type!r} stored)"
    if mine.cause != theirs.cause:
        return f"cause differs (signal {mine.cause} replayed, {theirs.cause} stored)"
    if mine.data != theirs.data:
        return "data differs"
    if mine.turn != theirs.turn:
        return f"turn differs ({mine.turn!r} replayed, {theirs.turn!r} stored)"
    if mine.at != theirs.at:
        return f"at differs ({mine.at!r} replayed, {theirs.at!r} stored)"
    return None


async def stored_events(store: Store, session: str, *, upto_cause: int | None = None) -> list[EventRecord]:
    """Every stored event of ``session`` (those caused by signals ``<= upto_cause``, if given)."""
    out: list[EventRecord] = []
    seq = 0
    while True:
        batch = await store.events(session, after=seq, limit=_BATCH)
        if not batch:
            return out
        for record in batch:
            if upto_cause is not None and record.cause > upto_cause:
                return out
            out.append(record)
            seq = record.seq


async def verify(
    store: Store,
    session: str,
    reducer: Callable[[S, Signal], Transition[S]],
    initial: S,
    codec: Codec[S],
    *,
    upto: int | None = None,
    on_reducer_error: str = "continue",
    result: ReplayResult[S] | None = None,
) -> Mismatch | None:
    """Replay ``session`` (or use ``result``) and compare with its stored events; the first mismatch or ``None``.

    With ``upto``, only the signals ``1..upto`` and the events they caused are compared.
    """
    if result is None:
        result = await replay(store, session, reducer, initial, codec, upto=upto, on_reducer_error=on_reducer_error)
    found = await stored_events(store, session, upto_cause=upto)
    return compare(session, result.records, found)


# -- transcripts -------------------------------------------------------------------------------


def render_transcript(envelopes: Sequence[Envelope], *, color: bool = False) -> Iterator[str]:
    """Pieces of text that, written one after another, make an agent session's transcript.

    User messages, reasoning (dimmed), the answer as it streamed, tool calls with their
    arguments and results, approvals and choices, restarts, and one line per finished
    turn with its usage. Events of other reducers are shown by their type.
    """
    from oturn.agent import events as ev

    dim, bold, reset = ("\033[2m", "\033[1m", "\033[0m") if color else ("", "", "")
    mode = ""
    at_line_start = True

    def put(text: str) -> str:
        nonlocal at_line_start
        if text:
            at_line_start = text.endswith("\n")
        return text

    def newline() -> str:
        nonlocal mode
        mode = ""
        return "" if at_line_start else put("\n")

    def line(text: str) -> Iterator[str]:
        """A new line (unless at the start of one), then ``text``."""
        yield newline()
        yield put(text)

    for envelope in envelopes:
        event = envelope.event
        if isinstance(event, ev.MessageSent):
            yield from line(f"{bold}you>{reset} {event.text}\n")
        elif isinstance(event, ev.AssistantReasoningDelta):
            if mode != "reasoning":
                yield from line(f"{dim}  (thinking) ")
                mode = "reasoning"
            yield put(event.text)
        elif isinstance(event, ev.AssistantDelta):
            if mode != "text":
                yield from line(f"{reset}{bold}assistant>{reset} ")
                mode = "text"
            yield put(event.text)
        elif isinstance(event, ev.ToolCall):
            yield from line(f"  -> {event.name}({event.arguments})\n")
        elif isinstance(event, ev.ToolOutput):
            yield from line(f"     {event.text}\n")
        elif isinstance(event, ev.ToolResult):
            mark = "!!" if event.is_error else "<-"
            yield from line(f"  {mark} {event.name}: {event.content}\n")
        elif isinstance(event, ev.ApprovalRequest):
            yield from line(f"  ? {event.tool}({event.arguments}) needs approval [{event.id}]\n")
        elif isinstance(event, ev.ApprovalResolved):
            verdict = "approved" if event.approved else "denied"
            message = f": {event.message}" if event.message else ""
            yield from line(f"  {dim}[{verdict}: {event.how}{message}]{reset}\n")
        elif isinstance(event, ev.ChoiceRequest):
            yield from line(f"  ? {event.prompt} {list(event.options)} [{event.id}]\n")
        elif isinstance(event, ev.ChoiceResolved):
            yield from line(f"  {dim}[chosen: {event.value}]{reset}\n")
        elif isinstance(event, ev.SessionResumed):
            parts = []
            if event.model_call:
                parts.append(f"model call {event.model_call} made again")
            if event.interrupted:
                parts.append(f"interrupted: {', '.join(event.interrupted)}")
            if event.pending:
                parts.append(f"still waiting for approval: {', '.join(event.pending)}")
            detail = f" ({'; '.join(parts)})" if parts else ""
            yield from line(f"{dim}[session resumed after a restart{detail}]{reset}\n")
        elif isinstance(event, ev.Ignored):
            yield from line(f"  {dim}[ignored {event.signal} {event.id}: {event.reason}]{reset}\n")
        elif isinstance(event, ev.InputRejected):
            yield from line(f"  {dim}[input {event.input_id} rejected: {event.reason}]{reset}\n")
        elif isinstance(event, ev.RunAborted):
            yield from line(f"  {dim}[turn {event.turn} aborted: {event.reason}]{reset}\n")
        elif isinstance(event, ev.TurnFinished):
            detail = f" ({event.error.message})" if event.error else ""
            yield from line(f"{dim}[turn {event.turn} {event.outcome}{detail}; {usage_line(event.usage)}]{reset}\n\n")
        elif isinstance(event, ErrorEvent):
            yield from line(
                f"{dim}[reducer error on signal {event.signal_seq} ({event.signal_type}): {event.message}]{reset}\n"
            )
        elif isinstance(
            event,
            ev.StateChanged
            | ev.TurnStarted
            | ev.ToolCallDelta
            | ev.UsageReport
            | ev.ToolStarted
            | ev.ToolExit
            | ev.AssistantFinal
            | ev.InputQueued
            | ev.CancelRequested,
        ):
            continue
        else:
            yield from line(f"{dim}[{event.__struct_config__.tag}]{reset}\n")
    yield newline()


def usage_line(usage: Any) -> str:
    """``N model call(s), P prompt + C completion tokens[, $cost]`` for a :class:`~oturn.agent.usage.Usage`."""
    cost = f", ${usage.cost:.5f}" if usage.cost is not None else ""
    return (
        f"{usage.calls} model call(s), {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens{cost}"
    )


async def replay_transcript(
    store: Store,
    session: str,
    reducer: Callable[[S, Signal], Transition[S]],
    initial: S,
    codec: Codec[S],
    out: TextIO,
    *,
    check: bool = False,
    color: bool = False,
) -> Mismatch | None:
    """Replay ``session`` and write its transcript to ``out``; with ``check``, also :func:`verify` it.

    Returns the first mismatch (only when ``check``), else ``None``.
    """
    result = await replay(store, session, reducer, initial, codec)
    for piece in render_transcript(result.envelopes, color=color):
        out.write(piece)
    if not check:
        return None
    return await verify(store, session, reducer, initial, codec, result=result)
