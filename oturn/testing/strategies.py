"""Hypothesis strategies for oturn, and a small demo reducer to drive with them.

Import this module explicitly (it needs ``hypothesis``; ``import oturn`` and
``import oturn.testing`` do not load it)::

    from hypothesis import given
    from oturn.testing.strategies import demo_signal_lists, policies

The demo reducer (:func:`demo_reducer` over :class:`DemoState`) exercises everything a
nucleus does with events: several events per signal, none, a mergeable delta (for the
``coalesce`` policy), turn ids, a reducer that raises (:class:`Boom`) and a terminal
transition (:class:`Stop`). It starts no effects, so the envelopes of a run depend on
the signals alone.
"""

from __future__ import annotations

import msgspec
from hypothesis import strategies as st

from oturn.core.messages import Event, Signal
from oturn.core.transition import Transition
from oturn.runtime.policy import Policy

__all__ = [
    "LOSSY_POLICIES",
    "Add",
    "Boom",
    "Burst",
    "Delta",
    "DemoState",
    "Quiet",
    "Say",
    "Stop",
    "Stopped",
    "Stream",
    "Tick",
    "Total",
    "buffer_sizes",
    "demo_reducer",
    "demo_signal_lists",
    "demo_signals",
    "policies",
]

LOSSY_POLICIES: tuple[Policy, ...] = tuple(p for p in Policy if p is not Policy.BLOCK)
"""Every policy that may drop, merge or disconnect (all but ``block``)."""


# -- the demo reducer -------------------------------------------------------------------


class DemoState(msgspec.Struct, frozen=True, kw_only=True):
    """The demo reducer's state: a running total, the text said so far, signals reduced."""

    total: int = 0
    text: str = ""
    reduced: int = 0


class Add(Signal, frozen=True, kw_only=True, tag="demo_add"):
    """Add ``amount`` to the total; publishes :class:`Total`."""

    amount: int


class Say(Signal, frozen=True, kw_only=True, tag="demo_say"):
    """Append ``text``; publishes a mergeable :class:`Delta`."""

    text: str


class Stream(Signal, frozen=True, kw_only=True, tag="demo_stream"):
    """Append every part; publishes one :class:`Delta` per part (what ``coalesce`` merges)."""

    parts: tuple[str, ...]


class Burst(Signal, frozen=True, kw_only=True, tag="demo_burst"):
    """Publish ``count`` :class:`Tick` events at once (0 publishes nothing)."""

    count: int


class Quiet(Signal, frozen=True, kw_only=True, tag="demo_quiet"):
    """Change the state, publish nothing."""


class Boom(Signal, frozen=True, kw_only=True, tag="demo_boom"):
    """Make the reducer raise ``ValueError(message)``."""

    message: str = "boom"


class Stop(Signal, frozen=True, kw_only=True, tag="demo_stop"):
    """End the run: a terminal transition publishing :class:`Stopped`."""


class Total(Event, frozen=True, kw_only=True, tag="demo_total"):
    value: int


class Delta(Event, frozen=True, kw_only=True, tag="demo_delta"):
    """A text delta; consecutive deltas merge by concatenation."""

    text: str

    def merge(self, later: Event) -> Event | None:
        if isinstance(later, Delta):
            return Delta(text=self.text + later.text)
        return None


class Tick(Event, frozen=True, kw_only=True, tag="demo_tick"):
    index: int


class Stopped(Event, frozen=True, kw_only=True, tag="demo_stopped"):
    total: int


def demo_reducer(state: DemoState, signal: Signal) -> Transition[DemoState]:
    """The demo reducer (pure). Turn ids are ``t0``, ``t1``, ... one per four signals."""
    turn = f"t{state.reduced // 4}"
    reduced = state.reduced + 1
    if isinstance(signal, Add):
        total = state.total + signal.amount
        return Transition(msgspec.structs.replace(state, total=total, reduced=reduced), [Total(value=total)], turn=turn)
    if isinstance(signal, Say):
        return Transition(
            msgspec.structs.replace(state, text=state.text + signal.text, reduced=reduced),
            [Delta(text=signal.text)],
            turn=turn,
        )
    if isinstance(signal, Stream):
        return Transition(
            msgspec.structs.replace(state, text=state.text + "".join(signal.parts), reduced=reduced),
            [Delta(text=part) for part in signal.parts],
            turn=turn,
        )
    if isinstance(signal, Burst):
        return Transition(
            msgspec.structs.replace(state, reduced=reduced),
            [Tick(index=i) for i in range(signal.count)],
            turn=turn,
        )
    if isinstance(signal, Boom):
        raise ValueError(signal.message)
    if isinstance(signal, Stop):
        return Transition(
            msgspec.structs.replace(state, reduced=reduced), [Stopped(total=state.total)], terminal=True, turn=turn
        )
    return Transition(msgspec.structs.replace(state, reduced=reduced))


# -- strategies -------------------------------------------------------------------------


def policies(*, lossy_only: bool = False) -> st.SearchStrategy[Policy]:
    """A subscription overflow policy (only the lossy ones with ``lossy_only``)."""
    return st.sampled_from(LOSSY_POLICIES if lossy_only else tuple(Policy))


def buffer_sizes(min_size: int = 1, max_size: int = 16) -> st.SearchStrategy[int]:
    """A subscription buffer size; small by default so that overflow actually happens."""
    if min_size < 1:
        raise ValueError("a buffer holds at least 1 envelope")
    return st.integers(min_value=min_size, max_value=max_size)


def demo_signals(*, failures: bool = True) -> st.SearchStrategy[Signal]:
    """One demo signal (never :class:`Stop`); :class:`Boom` only with ``failures``."""
    options: list[st.SearchStrategy[Signal]] = [
        st.builds(Add, amount=st.integers(min_value=-5, max_value=5)),
        st.builds(Say, text=st.text(alphabet="abcxyz ", min_size=1, max_size=4)),
        st.builds(Stream, parts=st.lists(st.text(alphabet="pqr", min_size=1, max_size=3), max_size=5).map(tuple)),
        st.builds(Burst, count=st.integers(min_value=0, max_value=6)),
        st.just(Quiet()),
    ]
    if failures:
        options.append(st.builds(Boom, message=st.sampled_from(["boom", "bang"])))
    return st.one_of(options)


def demo_signal_lists(
    min_size: int = 0, max_size: int = 30, *, failures: bool = True, stop: bool | None = False
) -> st.SearchStrategy[list[Signal]]:
    """A list of demo signals.

    ``stop=True`` always ends it with :class:`Stop`; ``stop=None`` sometimes puts a
    :class:`Stop` somewhere in it (the signals after it are refused by a nucleus).
    """
    body = st.lists(demo_signals(failures=failures), min_size=min_size, max_size=max_size)
    if stop is True:
        return body.map(lambda signals: [*signals, Stop()])
    if stop is None:

        @st.composite
        def with_stop(draw: st.DrawFn) -> list[Signal]:
            signals = draw(body)
            if draw(st.booleans()):
                signals.insert(draw(st.integers(min_value=0, max_value=len(signals))), Stop())
            return signals

        return with_stop()
    return body
