"""Session-level helpers over a :class:`~oturn.store.Store`: list, fork, delete, prune, salvage.

- :func:`fork` copies the log of a session up to a signal ``seq`` into a new session;
  opening the fork (``agent.session(id=new, store=...)``) restores the state reached
  after that signal (and settles whatever was in flight then, like any restart).
- :func:`prune` deletes sessions by age and/or count (retention); sessions whose writer
  lease is live are spared.
- :func:`readable_prefix` / :func:`salvage`: when a record cannot be read (a damaged or
  truncated record, a record of an unknown type), the session cannot be restored past
  it. :func:`salvage` forks the readable prefix — every signal before the first bad
  record, and the events they caused — into a new session and leaves the damaged one
  untouched as evidence. Nothing is ever deleted or rewritten by a repair.
- :func:`agent_meta` / :func:`agent_reducer`: an agent session records the turn
  configuration it was created with in its ``meta`` (key :data:`AGENT_META_KEY`), so
  that ``oturn replay`` can rebuild its reducer without the application's code.

Every function takes an *opened* store (``async with store:``).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from oturn._exceptions import CorruptRecordError, UsageError
from oturn.core.codec import Codec
from oturn.store.protocol import Store
from oturn.store.records import SessionInfo

if TYPE_CHECKING:
    from oturn.agent.agent import Agent
    from oturn.agent.turn import TurnReducer

__all__ = [
    "AGENT_META_KEY",
    "Salvaged",
    "agent_meta",
    "agent_reducer",
    "delete",
    "fork",
    "list_sessions",
    "parse_duration",
    "prune",
    "readable_prefix",
    "salvage",
]

AGENT_META_KEY = "oturn.agent"
"""The ``meta`` key under which an agent session keeps its turn configuration (JSON text)."""

_AGENT_META_VERSION = 1
_BATCH = 2048


def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


# -- listing, forking, deleting, pruning ---------------------------------------------------------


async def list_sessions(store: Store) -> list[SessionInfo]:
    """Every session, most recently updated first."""
    infos = await store.sessions()
    infos.sort(key=lambda i: (i.updated_at, i.created_at, i.id), reverse=True)
    return infos


async def fork(store: Store, session: str, *, at_seq: int, new: str | None = None, now: float | None = None) -> str:
    """Copy signals ``1..at_seq`` of ``session`` (and the events and snapshots they caused) into a new session.

    ``new`` defaults to ``"<session>-fork-<random>"``; returns the new id. The fork
    records its ``parent`` and ``fork_seq``; ``at_seq=0`` makes an empty copy.
    """
    if await store.info(session) is None:
        raise UsageError(f"there is no session {session!r} in this store")
    new = new or f"{session}-fork-{uuid.uuid4().hex[:6]}"
    await store.fork(session, new, at_seq=at_seq, now=_now(now))
    return new


async def delete(store: Store, session: str) -> bool:
    """Delete ``session`` and everything it holds; ``False`` if there was none."""
    return await store.delete(session)


async def prune(
    store: Store, *, older_than: float | None = None, keep: int | None = None, now: float | None = None
) -> list[str]:
    """Delete sessions not updated for ``older_than`` seconds and/or beyond the ``keep`` most recent.

    Sessions with a live writer lease are spared. Returns the deleted ids.
    """
    return await store.prune(older_than=older_than, keep=keep, now=_now(now))


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"30d"``, ``"2w"`` or a sum (``"1d12h"``)."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"a duration is a number with a unit (s, m, h, d, w), e.g. '30d'; got {text!r}")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None or match.end() == pos:
            raise UsageError(f"a duration is a number with a unit (s, m, h, d, w), e.g. '30d'; got {text!r}")
        total += float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
        pos = match.end()
    if not math.isfinite(total):
        raise UsageError(f"the duration {text!r} is too large")
    return total


# -- bad data --------------------------------------------------------------------------------


class Salvaged(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`salvage` did: the new session ``session`` holds signals ``1..upto`` of ``source``.

    ``problem`` describes the first unreadable record (``None``: the whole log was readable).
    """

    source: str
    session: str
    upto: int
    problem: str | None


async def readable_prefix(store: Store, session: str, codec: Codec[Any]) -> tuple[int, str | None]:
    """``(upto, problem)``: signals ``1..upto`` and the events they caused all decode with ``codec``.

    ``problem`` describes the first record that does not (``None`` when every record of
    the log decodes, and then ``upto`` is the last signal's seq).
    """
    from oturn.store.replay import decode_signal

    info = await store.info(session)
    if info is None:
        raise UsageError(f"there is no session {session!r} in this store")
    upto = 0
    problem: str | None = None
    try:
        while True:
            batch = await store.signals(session, after=upto, limit=_BATCH)
            if not batch:
                break
            for record in batch:
                if record.seq != upto + 1:
                    raise CorruptRecordError(
                        f"the log jumps from signal {upto} to {record.seq}", session=session, seq=record.seq
                    )
                decode_signal(codec, session, record)
                upto = record.seq
    except CorruptRecordError as exc:
        problem = str(exc)
    if problem is None and upto < info.signals:
        problem = f"the store counts {info.signals} signals but only {upto} could be read (session {session!r})"
    # events: the first unreadable one cuts the prefix before the signal that caused it
    seq = 0
    complete = 0  # signals whose events have all been read (causes never decrease along the events)
    while True:
        try:
            events = await store.events(session, after=seq, limit=_BATCH)
        except CorruptRecordError as exc:
            # the store cannot say which signal caused the unreadable event: keep only
            # the signals whose events were all read
            return min(upto, complete), str(exc)
        if not events:
            return upto, problem
        for event in events:
            if event.cause > upto:
                return upto, problem
            bad: str | None = None
            if event.seq != seq + 1:
                bad = f"the events jump from {seq} to {event.seq}"
            else:
                try:
                    codec.decode_event(event.data)
                except Exception as exc:
                    bad = f"event record {event.seq} ({event.type!r}) is unreadable: {exc}"
            if bad is not None:
                cut = max(0, event.cause - 1)
                return (cut, f"{bad} (session {session!r}, seq {event.seq})") if cut < upto else (upto, problem)
            seq = event.seq
            complete = event.cause - 1


async def salvage(
    store: Store, session: str, codec: Codec[Any], *, new: str | None = None, now: float | None = None
) -> Salvaged:
    """Fork the readable prefix of ``session`` into ``new`` (default ``"<session>-salvaged"``).

    The damaged session is left as it is. Open the new one to continue from the last
    readable signal (what was in flight then is settled as after any restart).
    """
    upto, problem = await readable_prefix(store, session, codec)
    new = new or f"{session}-salvaged"
    await store.fork(session, new, at_seq=upto, now=_now(now))
    return Salvaged(source=session, session=new, upto=upto, problem=problem)


# -- agent sessions ----------------------------------------------------------------------------


class _Approvals(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rules: dict[str, str]
    tool_defaults: dict[str, str]


class _AgentConfig(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    model: str
    system: str | None
    tools: list[dict[str, Any]]
    sequential: list[str]
    approvals: _Approvals
    max_steps: int
    input_policy: str
    max_parallel_tools: int
    approval_timeout: float | None
    approval_timeout_outcome: str
    params: dict[str, Any]


def agent_meta(agent: Agent) -> dict[str, str]:
    """The session ``meta`` recording ``agent``'s turn configuration (see :func:`agent_reducer`).

    Everything the turn reducer's decisions depend on is data (tools, approval rules,
    limits, policies), so it can be kept with the log. Parameters that do not encode as
    JSON are left out (they only reach the model, never the events).
    """
    c = agent.turn_config
    try:
        params = msgspec.json.decode(msgspec.json.encode(dict(c.params)))
    except (TypeError, msgspec.EncodeError, msgspec.DecodeError):
        params = {}
    config = _AgentConfig(
        version=_AGENT_META_VERSION,
        model=c.model,
        system=c.system,
        tools=[dict(t) for t in c.tools],
        sequential=sorted(c.sequential),
        approvals=_Approvals(rules=dict(agent.policy.rules()), tool_defaults=dict(agent.registry.approvals())),
        max_steps=c.max_steps,
        input_policy=c.input_policy,
        max_parallel_tools=c.max_parallel_tools,
        approval_timeout=c.approval_timeout,
        approval_timeout_outcome=c.approval_timeout_outcome,
        params=params,
    )
    try:
        return {AGENT_META_KEY: msgspec.json.encode(config).decode()}
    except (TypeError, msgspec.EncodeError):
        return {}


def agent_reducer(meta: Mapping[str, str]) -> TurnReducer:
    """The :class:`~oturn.agent.turn.TurnReducer` an agent session was created with, from its ``meta``.

    Raises :class:`~oturn.UsageError` when ``meta`` records no agent configuration (a
    session written by another kind of reducer, or by an older oturn).
    """
    from oturn.agent.turn import TurnConfig, TurnReducer
    from oturn.tools.approval import ApprovalPolicy

    text = meta.get(AGENT_META_KEY)
    if text is None:
        raise UsageError("the session does not record the agent configuration it was created with")
    try:
        config = msgspec.json.decode(text, type=_AgentConfig)
    except msgspec.DecodeError as exc:
        raise UsageError(f"the session's recorded agent configuration is unreadable: {exc}") from exc
    if config.version != _AGENT_META_VERSION:
        raise UsageError(f"the session's agent configuration has version {config.version}; this oturn reads version 1")
    policy = ApprovalPolicy.from_mapping(config.approvals.rules).with_tool_defaults(config.approvals.tool_defaults)
    return TurnReducer(
        TurnConfig(
            model=config.model,
            system=config.system,
            tools=tuple(config.tools),
            sequential=frozenset(config.sequential),
            decide=policy.decide,
            max_steps=config.max_steps,
            input_policy=config.input_policy,  # type: ignore[arg-type]
            max_parallel_tools=config.max_parallel_tools,
            approval_timeout=config.approval_timeout,
            approval_timeout_outcome=config.approval_timeout_outcome,  # type: ignore[arg-type]
            params=config.params,
        )
    )
