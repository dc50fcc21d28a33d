"""Overflow policies of subscriptions."""

from __future__ import annotations

import enum

from oturn._exceptions import InvalidPolicyError

__all__ = ["Policy", "parse_policy"]


class Policy(enum.StrEnum):
    """What a subscription does when its buffer is full.

    - ``block``: lossless; the nucleus waits for the subscriber (use for persistence).
    - ``drop_oldest``: the oldest buffered envelope is dropped to make room.
    - ``drop_newest``: the new envelope is dropped.
    - ``coalesce``: consecutive mergeable events (text and argument deltas) are merged
      into the unread tail whenever the subscriber is behind; when the buffer is full
      and nothing merges, the oldest is dropped.
    - ``latest``: only the newest envelope is kept (progress displays).
    - ``disconnect``: the subscription ends with
      :class:`~oturn.SubscriberDisconnected` carrying the ``seq`` to resume from.

    Every envelope not delivered is counted (``dropped``, ``merged``) and shows as a gap
    in ``seq``.
    """

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    COALESCE = "coalesce"
    LATEST = "latest"
    DISCONNECT = "disconnect"


def parse_policy(policy: Policy | str) -> Policy:
    """Turn a policy name into a :class:`Policy`, or raise :class:`~oturn.InvalidPolicyError`."""
    try:
        return Policy(policy)
    except ValueError:
        names = ", ".join(p.value for p in Policy)
        raise InvalidPolicyError(f"unknown overflow policy {policy!r}; choose one of: {names}") from None
