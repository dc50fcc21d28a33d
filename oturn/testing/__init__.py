"""Test helpers for oturn and for applications built on it.

- :class:`FakeClock`: virtual time (manual ``advance`` or autojump inside ``async with``);
  :func:`settle` waits until every other task is blocked.
- :func:`drive`: run a reducer over signals with no event loop, the way a nucleus would,
  and build the envelopes it would publish.
- :func:`capture`: collect a nucleus's envelopes in a background task.
- :mod:`oturn.testing.strategies` (imported explicitly, needs hypothesis): strategies
  and a demo reducer.

``import oturn`` does not import this package.
"""

from oturn.testing.capture import Capture, capture, event_tag
from oturn.testing.clock import FakeClock, settle
from oturn.testing.driver import Drive, OnError, Step, drive

__all__ = [
    "Capture",
    "Drive",
    "FakeClock",
    "OnError",
    "Step",
    "capture",
    "drive",
    "event_tag",
    "settle",
]
