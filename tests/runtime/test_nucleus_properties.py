"""Properties of fan-out and determinism, over random signals, subscribers and reading speeds.

Each Hypothesis example runs a whole nucleus in its own event loop (``anyio.run``), on
asyncio or trio. A lossless ``block`` recorder with a buffer larger than the run sees
everything the nucleus published; the subscribers under test are compared with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oturn import (
    ClosedError,
    Envelope,
    HistoryUnavailableError,
    Nucleus,
    Policy,
    Signal,
    SubscriberDisconnected,
    Subscription,
    SubscriptionStatistics,
)
from oturn.testing import FakeClock, drive
from oturn.testing.strategies import Delta, DemoState, demo_reducer, demo_signal_lists
from strategies import BACKENDS, SubscriberSpec, subscriber_specs

SESSION = "prop"
START = 1000.0
RECORDER_BUFFER = 100_000  # far more than a run publishes: the recorder never stalls anything

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Received:
    spec: SubscriberSpec
    envelopes: list[Envelope] = field(default_factory=list)
    disconnected: SubscriberDisconnected | None = None
    stats: SubscriptionStatistics | None = None


@dataclass
class Run:
    published: list[Envelope]
    received: list[Received]
    nucleus: Nucleus[DemoState]


async def _consume(sub: Subscription, out: Received) -> None:
    try:
        async for env in sub:
            out.envelopes.append(env)
            if len(out.envelopes) % out.spec.take == 0:
                for _ in range(out.spec.pause):
                    await anyio.lowlevel.checkpoint()
    except SubscriberDisconnected as exc:
        out.disconnected = exc
    out.stats = sub.statistics()


async def _run(
    signals: list[Signal], specs: list[SubscriberSpec], inbox: int, yields: list[bool], history: int = 1024
) -> Run:
    clock = FakeClock(START, autojump=False)
    received = [Received(spec) for spec in specs]
    async with (
        anyio.create_task_group() as consumers,
        Nucleus(
            demo_reducer,
            DemoState(),
            clock=clock,
            session=SESSION,
            inbox=inbox,
            history=history,
            on_reducer_error="continue",
        ) as nucleus,
    ):
        recorder = nucleus.subscribe(policy="block", buffer=RECORDER_BUFFER)
        for out in received:
            sub = nucleus.subscribe(policy=out.spec.policy, buffer=out.spec.buffer)
            consumers.start_soon(_consume, sub, out)
        for i, signal in enumerate(signals):
            try:
                await nucleus.send(signal)
            except ClosedError:  # a Stop was reduced: the nucleus takes nothing more
                break
            if yields[i % len(yields)]:
                await anyio.lowlevel.checkpoint()
        # Leaving reduced what was queued and ended every subscription.
    published = []
    while True:
        try:
            published.append(recorder.get_nowait())
        except ClosedError:
            break
    return Run(published, received, nucleus)


def _expected(signals: list[Signal]) -> list[Envelope]:
    return drive(demo_reducer, DemoState(), signals, on_error="continue").envelopes(session=SESSION, at=START)


def _encode(envelopes: list[Envelope]) -> bytes:
    return msgspec.json.encode(envelopes)


runs = st.fixed_dictionaries(
    {
        "signals": demo_signal_lists(min_size=8, max_size=40, stop=None),
        "specs": st.lists(subscriber_specs(), min_size=1, max_size=6),
        "inbox": st.integers(min_value=1, max_value=16),
        "yields": st.lists(st.booleans(), min_size=1, max_size=8),
    }
)


@pytest.mark.parametrize("backend", BACKENDS)
@PROPERTY_SETTINGS
@given(run=runs)
def test_every_block_subscriber_gets_every_envelope_exactly_once_in_order(backend: str, run: dict[str, object]) -> None:
    result = anyio.run(lambda: _run(**run), backend=backend)  # type: ignore[arg-type]
    published = result.published
    assert [env.seq for env in published] == list(range(1, len(published) + 1))
    for out in result.received:
        if out.spec.policy is Policy.BLOCK:
            assert out.disconnected is None
            assert _encode(out.envelopes) == _encode(published)
            assert out.stats is not None
            assert (out.stats.delivered, out.stats.dropped, out.stats.merged) == (len(published), 0, 0)
            assert out.stats.peak <= out.spec.buffer


@pytest.mark.parametrize("backend", BACKENDS)
@PROPERTY_SETTINGS
@given(run=runs)
def test_lossy_subscribers_get_an_increasing_subsequence_and_account_for_every_envelope(
    backend: str, run: dict[str, object]
) -> None:
    result = anyio.run(lambda: _run(**run), backend=backend)  # type: ignore[arg-type]
    published = result.published
    by_seq = {env.seq: env for env in published}
    total = len(published)
    for out in result.received:
        policy = out.spec.policy
        if policy is Policy.BLOCK:
            continue
        stats = out.stats
        assert stats is not None
        seqs = [env.seq for env in out.envelopes]
        assert seqs == sorted(set(seqs)), "strictly increasing"
        assert set(seqs) <= set(by_seq)
        # The consumer read everything that was buffered before the stream ended.
        assert stats.delivered == len(out.envelopes)
        assert stats.depth == 0
        assert stats.peak <= (1 if policy is Policy.LATEST else out.spec.buffer)

        if policy is Policy.DISCONNECT:
            assert stats.dropped == stats.merged == 0
            if out.disconnected is not None:
                resume = out.disconnected.resume_from
                # Everything before the cursor was delivered; the cursor envelope itself is
                # the one that did not fit.
                assert seqs == list(range(1, resume))
                assert stats.delivered + 1 == resume
                assert stats.disconnected
            else:
                assert seqs == list(range(1, total + 1))
            continue

        assert stats.delivered + stats.dropped + stats.merged == total
        if policy is not Policy.COALESCE:
            assert stats.merged == 0
            for env in out.envelopes:
                assert env == by_seq[env.seq]
            continue

        # coalesce: a received delta is the concatenation of the consecutive deltas
        # that end at its seq; anything else arrives unchanged.
        for env in out.envelopes:
            original = by_seq[env.seq]
            if not isinstance(env.event, Delta):
                assert env == original
                continue
            assert isinstance(original.event, Delta)
            text, seq = "", env.seq
            while len(text) < len(env.event.text) and seq in by_seq and isinstance(by_seq[seq].event, Delta):
                text = by_seq[seq].event.text + text  # type: ignore[attr-defined]
                seq -= 1
            assert text == env.event.text
        if stats.dropped == 0:
            flatten = [
                ("delta", env.event.text) if isinstance(env.event, Delta) else ("event", env.event) for env in published
            ]
            got = [
                ("delta", env.event.text) if isinstance(env.event, Delta) else ("event", env.event)
                for env in out.envelopes
            ]
            assert _join_deltas(got) == _join_deltas(flatten)


def _join_deltas(items: Sequence[tuple[str, object]]) -> list[tuple[str, object]]:
    joined: list[tuple[str, object]] = []
    for kind, value in items:
        if kind == "delta" and joined and joined[-1][0] == "delta":
            joined[-1] = ("delta", str(joined[-1][1]) + str(value))
        else:
            joined.append((kind, value))
    return joined


@pytest.mark.parametrize("backend", BACKENDS)
@PROPERTY_SETTINGS
@given(run=runs)
def test_replaying_the_signals_reproduces_every_envelope_byte_for_byte(backend: str, run: dict[str, object]) -> None:
    first = anyio.run(lambda: _run(**run), backend=backend)  # type: ignore[arg-type]
    signals: list[Signal] = run["signals"]  # type: ignore[assignment]
    # A fresh nucleus with no other subscribers and the largest inbox: same bytes.
    second = anyio.run(lambda: _run(signals, [], 1024, [False]), backend=backend)
    assert _encode(second.published) == _encode(first.published)
    # ... and both equal the pure reduction.
    assert _encode(first.published) == _encode(_expected(signals))
    assert first.nucleus.state == second.nucleus.state


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    signals=demo_signal_lists(min_size=1, max_size=25, stop=None),
    history=st.integers(min_value=0, max_value=20),
    from_seq=st.integers(min_value=1, max_value=60),
    spec=subscriber_specs(max_buffer=3).filter(lambda s: s.policy is Policy.DISCONNECT),
)
def test_the_history_replays_any_available_tail_exactly(
    backend: str, signals: list[Signal], history: int, from_seq: int, spec: SubscriberSpec
) -> None:
    result = anyio.run(lambda: _run(signals, [spec], 2, [True, False], history=history), backend=backend)
    published = result.published
    nucleus = result.nucleus
    kept = published[-history:] if history else []
    assert nucleus.history() == kept

    async def replay(start: int) -> list[Envelope]:
        return [env async for env in nucleus.subscribe(from_seq=start)]

    if from_seq > len(published):
        assert anyio.run(replay, from_seq, backend=backend) == []
    elif kept and from_seq >= kept[0].seq:
        assert anyio.run(replay, from_seq, backend=backend) == published[from_seq - 1 :]
    else:
        with pytest.raises(HistoryUnavailableError) as info:
            nucleus.subscribe(from_seq=from_seq)
        assert info.value.oldest == (kept[0].seq if kept else None)

    # A disconnected subscriber resumes from its cursor without a gap while the history holds it.
    out = result.received[0]
    if out.disconnected is not None and kept and out.disconnected.resume_from >= kept[0].seq:
        rest = anyio.run(replay, out.disconnected.resume_from, backend=backend)
        assert _encode(out.envelopes + rest) == _encode(published)
