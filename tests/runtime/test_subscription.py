"""Subscriptions: every overflow policy, filters, replay from a seq, OTURN queues, statistics."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from oturn import (
    ClosedError,
    Envelope,
    Event,
    HistoryUnavailableError,
    InvalidPolicyError,
    Nucleus,
    Policy,
    Signal,
    SubscriberDisconnected,
    Subscription,
    Transition,
    UsageError,
    WouldBlock,
)
from oturn.testing import capture, settle
from strategies import on_backends

# -- a small reducer: Emit publishes the events it carries -------------------------------


class Num(Event, frozen=True, kw_only=True, tag="ts_num"):
    n: int


class TextDelta(Event, frozen=True, kw_only=True, tag="ts_text_delta"):
    """A delta that the ``coalesce`` policy folds into the one before it."""

    text: str

    def merge(self, later: Event) -> Event | None:
        if isinstance(later, TextDelta):
            return TextDelta(text=self.text + later.text)
        return None


class Emit(Signal, frozen=True, kw_only=True, tag="ts_emit"):
    events: tuple[Event, ...]


def reducer(state: int, signal: Signal) -> Transition[int]:
    assert isinstance(signal, Emit)
    return Transition(state + 1, signal.events)


def nums(*values: int) -> Emit:
    return Emit(events=tuple(Num(n=v) for v in values))


def deltas(*texts: str) -> Emit:
    return Emit(events=tuple(TextDelta(text=t) for t in texts))


def seqs(envelopes: list[Envelope]) -> list[int]:
    return [env.seq for env in envelopes]


async def read_into(sub: Subscription, out: list[Envelope]) -> None:
    async for env in sub:
        out.append(env)


def drain(sub: Subscription) -> list[Envelope]:
    """Everything buffered right now (without waiting)."""
    out: list[Envelope] = []
    while True:
        try:
            out.append(sub.get_nowait())
        except (WouldBlock, ClosedError):
            return out


# -- block --------------------------------------------------------------------------------


@on_backends()
async def test_block_is_lossless_and_stalls_the_nucleus_until_read() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="block", buffer=2)
        nucleus.send_nowait(nums(*range(1, 6)))
        await settle()
        assert nucleus.last_seq == 3  # 1 and 2 buffered; the nucleus waits to hand over 3
        assert sub.statistics().depth == 2
        nucleus.send_nowait(nums(6))
        await settle()
        assert nucleus.statistics().inbox_depth == 1  # nothing else is reduced meanwhile
        got = [await sub.get() for _ in range(6)]
        assert seqs(got) == [1, 2, 3, 4, 5, 6]
        stats = sub.statistics()
        assert (stats.delivered, stats.dropped, stats.merged, stats.peak) == (6, 0, 0, 2)
        await sub.aclose()


@on_backends()
async def test_closing_a_block_subscriber_releases_a_stalled_nucleus() -> None:
    async with Nucleus(reducer, 0) as nucleus, capture(nucleus) as cap:
        stuck = nucleus.subscribe(buffer=1)
        nucleus.send_nowait(nums(1, 2, 3))
        await settle()
        assert nucleus.last_seq == 2
        await stuck.aclose()
        await cap.wait_count(3)
        assert nucleus.statistics().subscribers == 1


@pytest.mark.parametrize("policy", [p.value for p in Policy if p is not Policy.BLOCK])
@on_backends()
async def test_a_slow_lossy_subscriber_stalls_neither_the_nucleus_nor_the_others(policy: str) -> None:
    async with Nucleus(reducer, 0) as nucleus, capture(nucleus) as fast:
        slow = nucleus.subscribe(policy=policy, buffer=2)  # never read until the end
        for i in range(100):
            await nucleus.send(nums(i))
        await fast.wait_count(100)
        assert nucleus.statistics().signals_reduced == 100
        assert fast.seqs() == list(range(1, 101))
        stats = slow.statistics()
        assert stats.depth <= 2
        if policy == "disconnect":
            assert stats.disconnected
            assert slow.resume_from == 3
        else:
            assert stats.dropped + stats.depth == 100


# -- drop_oldest, drop_newest, latest -----------------------------------------------------


@on_backends()
async def test_drop_oldest_keeps_the_newest_and_counts_the_drops() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="drop_oldest", buffer=3)
        await nucleus.send(nums(*range(1, 9)))
        await settle()
        got = drain(sub)
        assert seqs(got) == [6, 7, 8]
        stats = sub.statistics()
        assert (stats.dropped, stats.delivered, stats.peak, stats.depth) == (5, 3, 3, 0)


@on_backends()
async def test_drop_newest_keeps_the_oldest_and_counts_the_drops() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="drop_newest", buffer=3)
        await nucleus.send(nums(*range(1, 9)))
        await settle()
        assert seqs(drain(sub)) == [1, 2, 3]
        await nucleus.send(nums(9))  # room again: the stream goes on, the gap shows in seq
        await settle()
        assert seqs(drain(sub)) == [9]
        assert sub.statistics().dropped == 5


@on_backends()
async def test_latest_keeps_only_the_newest_envelope_whatever_the_buffer() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="latest", buffer=50)
        await nucleus.send(nums(*range(1, 6)))
        await settle()
        assert seqs(drain(sub)) == [5]
        stats = sub.statistics()
        assert (stats.buffer, stats.dropped, stats.delivered) == (1, 4, 1)


# -- coalesce -----------------------------------------------------------------------------


@on_backends()
async def test_coalesce_merges_consecutive_deltas_into_the_unread_tail() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="coalesce", buffer=8)
        await nucleus.send(deltas("He", "ll", "o"))
        await nucleus.send(Emit(events=(Num(n=1),)))
        await nucleus.send(deltas(" wor", "ld"))
        await settle()
        got = drain(sub)
        assert [env.event for env in got] == [TextDelta(text="Hello"), Num(n=1), TextDelta(text=" world")]
        assert seqs(got) == [3, 4, 6]  # a merged envelope carries the seq of its last part
        assert [env.cause for env in got] == [1, 2, 3]
        stats = sub.statistics()
        assert (stats.merged, stats.dropped, stats.delivered) == (3, 0, 3)


@on_backends()
async def test_coalesce_does_not_merge_what_the_reader_already_took() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="coalesce", buffer=8)
        await nucleus.send(deltas("a"))
        await settle()
        first = await sub.get()
        await nucleus.send(deltas("b", "c"))
        await settle()
        assert [first.event, *(env.event for env in drain(sub))] == [TextDelta(text="a"), TextDelta(text="bc")]


@on_backends()
async def test_coalesce_drops_the_oldest_when_full_and_nothing_merges() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="coalesce", buffer=2)
        await nucleus.send(Emit(events=(Num(n=1), Num(n=2), Num(n=3), TextDelta(text="x"), TextDelta(text="y"))))
        await settle()
        got = drain(sub)
        assert [env.event for env in got] == [Num(n=3), TextDelta(text="xy")]
        stats = sub.statistics()
        assert (stats.dropped, stats.merged) == (2, 1)


# -- disconnect ---------------------------------------------------------------------------


@on_backends()
async def test_disconnect_ends_with_a_cursor_and_resuming_from_it_leaves_no_gap() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="disconnect", buffer=2)
        await nucleus.send(nums(1, 2, 3, 4))
        await settle()
        got: list[Envelope] = []
        with pytest.raises(SubscriberDisconnected) as info:
            await read_into(sub, got)
        assert seqs(got) == [1, 2]  # what was buffered is still handed out first
        resume = info.value.resume_from
        assert resume == 3 == sub.resume_from
        assert "resume from seq 3" in str(info.value)
        stats = sub.statistics()
        assert stats.disconnected
        assert stats.closed
        assert stats.dropped == 0
        assert "disconnected" in repr(sub)
        with pytest.raises(SubscriberDisconnected):
            sub.get_nowait()

        async with nucleus.subscribe(from_seq=resume) as again:
            await nucleus.send(nums(5))
            rest = [await again.get() for _ in range(3)]
        assert seqs(got + rest) == [1, 2, 3, 4, 5]
        assert [env.event for env in got + rest] == [Num(n=i) for i in range(1, 6)]


# -- filters ------------------------------------------------------------------------------


@on_backends()
async def test_types_keeps_only_the_listed_event_types() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(types=[TextDelta], buffer=10)
        await nucleus.send(Emit(events=(Num(n=1), TextDelta(text="a"), Num(n=2), TextDelta(text="b"))))
        await settle()
        got = drain(sub)
        assert [env.event for env in got] == [TextDelta(text="a"), TextDelta(text="b")]
        assert seqs(got) == [2, 4]


@on_backends()
async def test_session_filter_keeps_only_that_sessions_envelopes() -> None:
    async with Nucleus(reducer, 0, session="alpha") as nucleus:
        mine = nucleus.subscribe(session="alpha")
        other = nucleus.subscribe(session="beta")
        await nucleus.send(nums(1))
        await settle()
        assert [env.session for env in drain(mine)] == ["alpha"]
        assert drain(other) == []


@pytest.mark.parametrize("bad", [[Num, int], ["ts_num"], [Emit]])
def test_types_must_be_event_classes(bad: list[object]) -> None:
    nucleus = Nucleus(reducer, 0)
    with pytest.raises(InvalidPolicyError, match="Event subclasses"):
        nucleus.subscribe(types=bad)  # type: ignore[arg-type]


# -- replay -------------------------------------------------------------------------------


@on_backends()
async def test_from_seq_replays_the_tail_then_goes_live_without_gap_or_duplicate() -> None:
    async with Nucleus(reducer, 0, history=100) as nucleus:
        await nucleus.send(nums(1, 2, 3, 4, 5))
        await settle()
        async with nucleus.subscribe(from_seq=3, buffer=1) as sub:
            assert sub.statistics().replayed == 3
            await nucleus.send(nums(6, 7))
            got = [await sub.get() for _ in range(5)]
        assert seqs(got) == [3, 4, 5, 6, 7]
        assert [env.event for env in got] == [Num(n=i) for i in range(3, 8)]


@on_backends()
async def test_from_seq_in_the_future_skips_until_that_seq() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        await nucleus.send(nums(1))
        await settle()
        sub = nucleus.subscribe(from_seq=4)
        await nucleus.send(nums(2, 3, 4, 5))
        await settle()
        assert seqs(drain(sub)) == [4, 5]


@on_backends()
async def test_from_seq_replay_respects_the_type_filter() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        await nucleus.send(Emit(events=(Num(n=1), TextDelta(text="a"), Num(n=2))))
        await settle()
        sub = nucleus.subscribe(from_seq=1, types=[Num])
        await nucleus.send(Emit(events=(TextDelta(text="b"), Num(n=3))))
        await settle()
        assert [env.event for env in drain(sub)] == [Num(n=1), Num(n=2), Num(n=3)]
        assert sub.statistics().replayed == 2


@on_backends()
async def test_from_seq_older_than_the_history_names_the_oldest_seq() -> None:
    async with Nucleus(reducer, 0, history=3) as nucleus:
        await nucleus.send(nums(*range(1, 8)))
        await settle()
        with pytest.raises(HistoryUnavailableError, match="oldest available seq is 5") as info:
            nucleus.subscribe(from_seq=4)
        assert (info.value.requested, info.value.oldest) == (4, 5)
        assert isinstance(info.value, LookupError)
        assert seqs(drain(nucleus.subscribe(from_seq=5))) == [5, 6, 7]


@on_backends()
async def test_from_seq_without_history_is_unavailable() -> None:
    async with Nucleus(reducer, 0, history=0) as nucleus:
        await nucleus.send(nums(1))
        await settle()
        with pytest.raises(HistoryUnavailableError, match="no history is kept") as info:
            nucleus.subscribe(from_seq=1)
        assert info.value.oldest is None
        assert nucleus.history() == []


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3"])
def test_from_seq_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(InvalidPolicyError, match="from_seq"):
        Nucleus(reducer, 0).subscribe(from_seq=bad)  # type: ignore[call-overload]


@on_backends()
async def test_after_the_end_from_seq_still_reads_the_history() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        await nucleus.send(nums(1, 2, 3))
    with pytest.raises(ClosedError, match="ended"):
        nucleus.subscribe()
    sub = nucleus.subscribe(from_seq=2)
    assert seqs([env async for env in sub]) == [2, 3]
    assert sub.closed


# -- bad options --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["fastest", "", "BLOCK"])
def test_an_unknown_policy_raises_invalid_policy_error(policy: str) -> None:
    with pytest.raises(InvalidPolicyError, match="unknown overflow policy") as info:
        Nucleus(reducer, 0).subscribe(policy=policy)
    assert isinstance(info.value, ValueError)
    assert "drop_oldest" in str(info.value)


@pytest.mark.parametrize("buffer", [0, -5, True, 2.0])
def test_a_buffer_below_one_raises_invalid_policy_error(buffer: object) -> None:
    with pytest.raises(InvalidPolicyError, match="at least 1"):
        Nucleus(reducer, 0).subscribe(buffer=buffer)  # type: ignore[call-overload]


# -- consumer side ------------------------------------------------------------------------


@on_backends()
async def test_get_nowait_raises_would_block_when_empty_and_closed_error_at_the_end() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe()
        with pytest.raises(WouldBlock):
            sub.get_nowait()
        await nucleus.send(nums(1))
        await settle()
        assert sub.get_nowait().seq == 1
    with pytest.raises(ClosedError):
        sub.get_nowait()
    with pytest.raises(ClosedError):
        await sub.get()


@on_backends()
async def test_iteration_ends_when_the_nucleus_closes_after_the_buffered_envelopes() -> None:
    nucleus = Nucleus(reducer, 0)
    sub = nucleus.subscribe()  # before the nucleus starts: nothing is missed
    async with nucleus:
        await nucleus.send(nums(1, 2))
    assert sub.closed
    assert seqs([env async for env in sub]) == [1, 2]


@on_backends()
async def test_a_reader_waiting_for_the_next_envelope_wakes_up_for_it() -> None:
    async with Nucleus(reducer, 0) as nucleus, nucleus.subscribe() as sub:
        got: list[int] = []

        async def reader() -> None:
            async for env in sub:
                got.append(env.seq)
                if len(got) == 2:
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await settle()
            await nucleus.send(nums(1))
            await settle()
            assert got == [1]
            await nucleus.send(nums(2))
        assert got == [1, 2]


@on_backends()
async def test_leaving_the_subscription_block_detaches_it_and_discards_its_buffer() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        async with nucleus.subscribe(buffer=4) as sub:
            assert nucleus.statistics().subscribers == 1
            await nucleus.send(nums(1, 2))
            await settle()
        assert nucleus.statistics().subscribers == 0
        assert sub.closed
        assert sub.statistics().depth == 0
        await nucleus.send(nums(3))
        await settle()
        assert sub.statistics().delivered == 0


# -- statistics and repr ------------------------------------------------------------------


@on_backends()
async def test_subscription_statistics_and_repr() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(policy="drop_newest", buffer=2)
        assert repr(sub) == "<Subscription drop_newest open depth=0/2 delivered=0 dropped=0 merged=0>"
        await nucleus.send(nums(1, 2, 3))
        await settle()
        await sub.get()
        stats = sub.statistics()
        assert stats.policy == "drop_newest"
        assert sub.policy is Policy.DROP_NEWEST
        assert (stats.buffer, stats.depth, stats.peak) == (2, 1, 2)
        assert (stats.delivered, stats.dropped, stats.merged, stats.replayed) == (1, 1, 0, 0)
        assert not stats.closed
        assert not stats.disconnected
        assert repr(sub) == "<Subscription drop_newest open depth=1/2 delivered=1 dropped=1 merged=0>"
    assert "closed" in repr(sub)


# -- OTURN compatibility: plain asyncio.Queue (asyncio only) ------------------------------


@pytest.mark.asyncio
async def test_queue_subscribers_get_envelopes_and_none_at_the_end() -> None:
    queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(queue)
        await nucleus.send(nums(1, 2))
        await settle()
        assert queue.qsize() == 2
    items = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [item.seq if item is not None else None for item in items] == [1, 2, None]
    stats = sub.statistics()
    assert (stats.delivered, stats.dropped, stats.closed) == (2, 0, True)
    assert repr(sub) == "<QueueSubscription drop_newest delivered=2 dropped=0>"


@pytest.mark.asyncio
async def test_unsubscribe_stops_a_queue_subscriber() -> None:
    queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
    async with Nucleus(reducer, 0) as nucleus:
        nucleus.subscribe(queue)
        await nucleus.send(nums(1))
        await settle()
        nucleus.unsubscribe(queue)
        assert nucleus.statistics().subscribers == 0
        await nucleus.send(nums(2))
        await settle()
        with pytest.raises(UsageError, match="not subscribed"):
            nucleus.unsubscribe(queue)
        nucleus.subscribe(queue)  # the same queue can subscribe again
    assert [item.seq if item else None for item in [queue.get_nowait() for _ in range(queue.qsize())]] == [1, None]


@pytest.mark.asyncio
async def test_a_full_bounded_queue_drops_the_newest_and_counts_it() -> None:
    queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=2)
    async with Nucleus(reducer, 0) as nucleus:
        sub = nucleus.subscribe(queue)
        await nucleus.send(nums(1, 2, 3, 4))
        await settle()
        assert [queue.get_nowait().seq for _ in range(2)] == [1, 2]  # type: ignore[union-attr]
        assert sub.statistics().dropped == 2


@pytest.mark.asyncio
async def test_a_block_queue_subscriber_makes_the_nucleus_wait() -> None:
    queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=1)
    async with Nucleus(reducer, 0) as nucleus:
        nucleus.subscribe(queue, policy="block")
        await nucleus.send(nums(1, 2, 3))
        await settle()
        assert nucleus.last_seq == 2
        got = [(await queue.get()).seq for _ in range(3)]  # type: ignore[union-attr]
        assert got == [1, 2, 3]


@pytest.mark.asyncio
async def test_a_queue_subscriber_replays_from_seq_onto_the_queue() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        await nucleus.send(nums(1, 2, 3))
        await settle()
        queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        nucleus.subscribe(queue, from_seq=2)
        await nucleus.send(nums(4))
        await settle()
        assert [queue.get_nowait().seq for _ in range(queue.qsize())] == [2, 3, 4]  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_a_block_queue_subscriber_refuses_a_replay_that_does_not_fit_instead_of_losing_it() -> None:
    async with Nucleus(reducer, 0) as nucleus:
        await nucleus.send(nums(1, 2, 3, 4, 5))
        await settle()
        small: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=2)
        with pytest.raises(InvalidPolicyError, match="holds 5 envelopes but the queue has room for 2"):
            nucleus.subscribe(small, policy="block", from_seq=1)
        assert nucleus.statistics().subscribers == 0
        nucleus.subscribe(small, policy="block", from_seq=4)  # this one fits
        assert [small.get_nowait().seq for _ in range(2)] == [4, 5]  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_queue_subscription_misuse_raises_usage_errors() -> None:
    queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
    async with Nucleus(reducer, 0) as nucleus:
        nucleus.subscribe(queue)
        with pytest.raises(UsageError, match="already subscribed"):
            nucleus.subscribe(queue)
        with pytest.raises(UsageError, match=r"asyncio\.Queue"):
            nucleus.subscribe([])  # type: ignore[call-overload]
        with pytest.raises(InvalidPolicyError, match="queue subscriber supports"):
            nucleus.subscribe(asyncio.Queue(), policy="coalesce")
