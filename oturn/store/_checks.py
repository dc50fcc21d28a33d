"""Argument checks and decisions every store shares, so that all stores fail the same way.

Pure functions over plain values (no I/O, no clock): the memory, SQLite and Redis
stores call them with what they read, inside their own transaction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from oturn._exceptions import SessionLockedError, StoreError, UsageError
from oturn.store.lease import holder_is_dead

__all__ = [
    "check_batch",
    "check_continues",
    "check_fork",
    "check_lease_for_append",
    "check_meta",
    "check_now",
    "check_owner",
    "check_prune",
    "check_read",
    "check_session_id",
    "check_snapshot",
    "check_ttl",
    "lease_is_live",
    "may_acquire",
    "no_session",
    "prune_victims",
]


class _Seq(Protocol):
    @property
    def seq(self) -> int: ...


def no_session(session: str) -> UsageError:
    """The error for a write to a session the store does not hold."""
    return UsageError(f"there is no session {session!r} in this store (create it first)")


def check_session_id(session: object) -> None:
    if not isinstance(session, str) or not session:
        raise UsageError(f"a session id is a non-empty string; got {session!r}")


def check_owner(owner: object) -> None:
    if not isinstance(owner, str) or not owner:
        raise UsageError(f"a lease owner is a non-empty string; got {owner!r}")


def check_now(now: object, name: str = "now") -> None:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise UsageError(f"{name} is a finite number of seconds; got {now!r}")


def check_read(after: object, limit: object) -> None:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise UsageError(f"after is a seq >= 0; got {after!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise UsageError(f"limit is None or a whole number >= 0; got {limit!r}")


def check_ttl(ttl: object) -> None:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not (ttl > 0 and math.isfinite(ttl)):
        raise UsageError(f"a lease ttl is a finite number of seconds > 0; got {ttl!r}")


def check_meta(meta: object) -> dict[str, str]:
    """A copy of ``meta`` (``{}`` for ``None``); ``UsageError`` unless it maps strings to strings."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise UsageError(f"session meta is a dict of strings to strings; got {meta!r}")
    return dict(meta)


def check_batch(session: str, kind: str, records: Sequence[_Seq]) -> None:
    """``StoreError`` unless the seqs of a non-empty batch are consecutive (n, n+1, ...)."""
    first = records[0].seq
    seqs = [r.seq for r in records]
    if seqs == list(range(first, first + len(seqs))):
        return
    for prev, seq in itertools.pairwise(seqs):  # pragma: no branch
        if seq != prev + 1:
            raise StoreError(
                f"session {session!r}: the {kind}s of a batch must have consecutive seqs; {kind} {seq} follows {prev}"
            )


def check_continues(session: str, kind: str, first: int, last: int) -> None:
    """``StoreError`` unless a batch starting at ``first`` continues a log ending at ``last``."""
    if first != last + 1:
        what = "is already in the log" if first <= last else "would leave a gap"
        raise StoreError(
            f"session {session!r}: the batch starts at {kind} {first}, which {what}: the log ends at {kind} {last},"
            f" so the next {kind} must be {last + 1}"
        )


def check_lease_for_append(session: str, owner: str | None, holder: str | None, expires: float | None) -> None:
    """``SessionLockedError`` if ``owner`` is given and does not hold the lease (by name, not by time)."""
    if owner is not None and holder != owner:
        raise SessionLockedError(session, holder if holder is not None else "", expires)


def lease_is_live(holder: str | None, expires: float | None, now: float) -> bool:
    """Whether someone holds an unexpired lease at ``now`` (a lease ends at ``expires``)."""
    return holder is not None and expires is not None and now < expires


def may_acquire(owner: str, holder: str | None, expires: float | None, now: float) -> bool:
    """Whether ``owner`` may take the lease: free, expired, its own, or held by a dead process of this host."""
    return holder == owner or not lease_is_live(holder, expires, now) or holder_is_dead(holder or "")


def check_snapshot(session: str, signal_seq: int, event_seq: int, signals: int, events: int) -> None:
    if not 0 <= signal_seq <= signals or not 0 <= event_seq <= events:
        raise UsageError(
            f"session {session!r}: a snapshot after signal {signal_seq} and event {event_seq} does not fit a log"
            f" of {signals} signals and {events} events (append the records before their snapshot)"
        )


def check_fork(session: str, new: str, at_seq: object, signals: int) -> None:
    check_session_id(new)
    if isinstance(at_seq, bool) or not isinstance(at_seq, int) or not 0 <= at_seq <= signals:
        raise UsageError(
            f"cannot fork session {session!r} at seq {at_seq!r}: it holds signals 1..{signals}"
            " (fork at 0 for an empty copy)"
        )


def check_prune(older_than: object, keep: object, now: object) -> None:
    check_now(now)
    if older_than is None and keep is None:
        raise UsageError("prune() needs older_than= and/or keep=")
    if older_than is not None and (
        isinstance(older_than, bool)
        or not isinstance(older_than, int | float)
        or not (older_than >= 0 and math.isfinite(older_than))
    ):
        raise UsageError(f"older_than is a finite number of seconds >= 0; got {older_than!r}")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise UsageError(f"keep is a whole number >= 0; got {keep!r}")


def prune_victims(
    rows: Iterable[tuple[str, float, float, str | None, float | None]],
    *,
    older_than: float | None,
    keep: int | None,
    now: float,
) -> list[str]:
    """The ids to delete among ``(id, created_at, updated_at, holder, expires)`` rows.

    Sessions not updated since ``now - older_than`` and those beyond the ``keep`` most
    recently updated (ties broken by creation time, then id), except sessions whose
    lease is live at ``now``; least recently updated first.
    """
    ordered = sorted(rows, key=lambda r: (r[2], r[1], r[0]), reverse=True)
    victims = []
    for rank, (sid, _created, updated, holder, expires) in enumerate(ordered):
        old = older_than is not None and updated < now - older_than
        beyond = keep is not None and rank >= keep
        if (old or beyond) and not lease_is_live(holder, expires, now):
            victims.append(sid)
    victims.reverse()
    return victims
