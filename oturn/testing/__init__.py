"""Test helpers for oturn and for applications built on it.

- :class:`FakeClock`: virtual time (manual ``advance`` or autojump inside ``async with``);
  :func:`settle` waits until every other task is blocked.
- :func:`drive`: run a reducer over signals with no event loop, the way a nucleus would,
  and build the envelopes it would publish.
- :func:`capture`: collect a nucleus's envelopes in a background task.
- :class:`FakeModel`: a scripted model (text, reasoning, tool calls split into
  fragments, usage, delays, failures) with ``assert_complete()``.
- :class:`OpenAIServer`: an in-process OpenAI-compatible streaming server on
  127.0.0.1 for end-to-end tests through LiteLLM (needs aiohttp, the ``dev`` extra).
- :func:`no_network` / :func:`network_guard_fixture`: make any connection to a
  non-loopback address fail at once (no test reaches a real provider).
- :mod:`oturn.testing.strategies` (imported explicitly, needs hypothesis): strategies
  and a demo reducer.

``import oturn`` does not import this package.
"""

from oturn.testing.capture import Capture, capture, event_tag
from oturn.testing.clock import FakeClock, settle
from oturn.testing.driver import Drive, OnError, Step, drive
from oturn.testing.fake_model import FakeModel, FakeModelError
from oturn.testing.network import NetworkBlockedError, allow_network, network_guard_fixture, no_network
from oturn.testing.openai_server import OpenAIServer

__all__ = [
    "Capture",
    "Drive",
    "FakeClock",
    "FakeModel",
    "FakeModelError",
    "NetworkBlockedError",
    "OnError",
    "OpenAIServer",
    "Step",
    "allow_network",
    "capture",
    "drive",
    "event_tag",
    "network_guard_fixture",
    "no_network",
    "settle",
]
