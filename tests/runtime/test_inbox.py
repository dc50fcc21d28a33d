"""The bounded inbox: waiting and failing puts, FIFO fairness, close and cancellation."""

from __future__ import annotations

import anyio
import pytest

from oturn import ClosedError, InboxFullError
from oturn.runtime import Inbox
from oturn.testing import settle
from strategies import on_backends


def test_put_nowait_fills_to_capacity_then_raises_inbox_full_error() -> None:
    inbox: Inbox[int] = Inbox(2)
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    with pytest.raises(InboxFullError, match=r"full \(2 signals\)"):
        inbox.put_nowait(3)
    assert (len(inbox), inbox.capacity, inbox.peak) == (2, 2, 2)
    assert [inbox.get_nowait(), inbox.get_nowait()] == [1, 2]
    assert inbox.peak == 2
    assert len(inbox) == 0


@on_backends()
async def test_put_with_room_does_not_wait() -> None:
    inbox: Inbox[int] = Inbox(3)
    for i in range(3):
        await inbox.put(i)
    assert len(inbox) == 3


@on_backends()
async def test_waiting_senders_get_room_in_arrival_order() -> None:
    inbox: Inbox[str] = Inbox(1)
    inbox.put_nowait("first")
    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            tg.start_soon(inbox.put, name)
            await settle()  # arrival order a, b, c
        taken: list[str] = []
        while len(taken) < 4:
            await inbox.wait_nonempty()
            taken.append(inbox.get_nowait())
            await settle()
    assert taken == ["first", "a", "b", "c"]
    assert inbox.peak == 1


@on_backends()
async def test_put_nowait_does_not_overtake_waiting_senders() -> None:
    inbox: Inbox[str] = Inbox(1)
    inbox.put_nowait("x")
    async with anyio.create_task_group() as tg:
        tg.start_soon(inbox.put, "waiting")
        await settle()
        assert inbox.get_nowait() == "x"  # room now, but promised to the waiting sender
        with pytest.raises(InboxFullError):
            inbox.put_nowait("rude")
    assert inbox.get_nowait() == "waiting"


@on_backends()
async def test_a_sender_cancelled_while_waiting_leaves_the_queue_of_senders() -> None:
    inbox: Inbox[str] = Inbox(1)
    inbox.put_nowait("x")
    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()
        tg.start_soon(_put_in_scope, inbox, "cancelled", first)
        await settle()
        tg.start_soon(inbox.put, "second")
        await settle()
        first.cancel()  # still waiting: it leaves without putting anything
        await settle()
        assert inbox.get_nowait() == "x"  # the room goes to the next sender
        await settle()
    assert [inbox.get_nowait() for _ in range(len(inbox))] == ["second"]


@on_backends()
async def test_a_sender_cancelled_after_it_was_given_room_still_delivers_exactly_once() -> None:
    inbox: Inbox[str] = Inbox(1)
    inbox.put_nowait("x")
    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()
        tg.start_soon(_put_in_scope, inbox, "granted", first)
        await settle()
        tg.start_soon(inbox.put, "second")
        await settle()
        assert inbox.get_nowait() == "x"  # room handed to "granted"...
        first.cancel()  # ...before it could run: the put has happened, not undone
        await settle()
        taken = [inbox.get_nowait()]
        await settle()
    taken += [inbox.get_nowait() for _ in range(len(inbox))]
    assert taken == ["granted", "second"]


async def _put_in_scope(inbox: Inbox[str], item: str, scope: anyio.CancelScope) -> None:
    with scope:
        await inbox.put(item)


@on_backends()
async def test_close_wakes_waiting_senders_with_closed_error_and_returns_what_was_queued() -> None:
    inbox: Inbox[int] = Inbox(1)
    inbox.put_nowait(1)
    errors: list[BaseException] = []

    async def sender() -> None:
        try:
            await inbox.put(2)
        except ClosedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await settle()
        assert inbox.close() == [1]
    assert len(errors) == 1
    assert "closed" in str(errors[0])
    assert inbox.closed
    assert len(inbox) == 0
    with pytest.raises(ClosedError):
        inbox.put_nowait(3)
    with pytest.raises(ClosedError):
        await inbox.put(3)
    await inbox.wait_nonempty()  # returns at once: closed


@on_backends()
async def test_stop_intake_keeps_what_is_queued_and_refuses_more() -> None:
    inbox: Inbox[int] = Inbox(1)
    inbox.put_nowait(1)
    errors: list[BaseException] = []

    async def sender() -> None:
        try:
            await inbox.put(2)
        except ClosedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await settle()
        inbox.stop_intake()
    assert len(errors) == 1
    assert inbox.closed
    assert len(inbox) == 1
    assert inbox.get_nowait() == 1
    with pytest.raises(ClosedError):
        inbox.put_nowait(3)


@on_backends()
async def test_wait_nonempty_wakes_for_an_item_or_for_close() -> None:
    inbox: Inbox[int] = Inbox(4)
    woke: list[int] = []

    async def receiver() -> None:
        await inbox.wait_nonempty()
        woke.append(len(inbox))

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        await settle()
        assert woke == []
        inbox.put_nowait(7)
    assert woke == [1]

    empty: Inbox[int] = Inbox(1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(empty.wait_nonempty)
        await settle()
        empty.close()
