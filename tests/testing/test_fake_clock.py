"""FakeClock: virtual time on asyncio and trio, manual and autojump."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
import sniffio

from oturn import Clock
from oturn.testing import FakeClock, settle
from strategies import on_backends


@on_backends()
async def test_tests_really_run_on_the_backend_they_are_named_after(anyio_backend: str) -> None:
    assert sniffio.current_async_library() == anyio_backend


def test_time_starts_at_zero_or_the_given_value() -> None:
    assert FakeClock().now() == 0.0
    assert FakeClock(1000.5).now() == 1000.5


def test_fake_clock_implements_the_clock_protocol() -> None:
    assert isinstance(FakeClock(), Clock)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_start_must_be_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        FakeClock(bad)


def test_advance_rejects_negative_and_non_finite_steps() -> None:
    clock = FakeClock(5.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="advance"):
            clock.advance(bad)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance_to(4.0)
    assert clock.now() == 5.0


def test_advance_moves_time_without_an_event_loop() -> None:
    clock = FakeClock()
    clock.advance(1.5)
    clock.advance(0)
    clock.advance_to(10)
    assert clock.now() == 10.0


@on_backends()
async def test_advance_wakes_exactly_the_sleepers_that_are_due() -> None:
    clock = FakeClock(autojump=False)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "a", 1.0)
        tg.start_soon(sleeper, "b", 5.0)
        tg.start_soon(sleeper, "c", 3.0)
        await settle()
        assert clock.sleepers == 3
        assert clock.next_deadline == 1.0

        clock.advance(3.0)
        await settle()
        assert sorted(woke) == [("a", 3.0), ("c", 3.0)]
        assert clock.sleepers == 1

        clock.advance_to(4.999)
        await settle()
        assert len(woke) == 2

        clock.advance(0.001)
        await settle()
        assert [name for name, _ in woke][-1] == "b"
    assert clock.sleepers == 0
    assert clock.next_deadline is None


@on_backends()
async def test_sleep_of_zero_or_less_is_only_a_checkpoint() -> None:
    clock = FakeClock(autojump=False)
    await clock.sleep(0)
    await clock.sleep(-3)
    assert clock.now() == 0.0
    assert clock.sleepers == 0
    with pytest.raises(ValueError, match="NaN"):
        await clock.sleep(float("nan"))


@on_backends()
async def test_autojump_jumps_to_each_deadline_when_everything_waits() -> None:
    async with FakeClock(100.0) as clock:
        seen: list[float] = []
        for delay in (5.0, 0.25, 60.0):
            await clock.sleep(delay)
            seen.append(clock.now())
        assert seen == [105.0, 105.25, 165.25]
        assert clock.jumps == 3


@on_backends()
async def test_autojump_wakes_concurrent_sleepers_in_deadline_order() -> None:
    order: list[str] = []
    async with FakeClock() as clock:

        async def sleeper(name: str, delay: float) -> None:
            await clock.sleep(delay)
            order.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "late", 30.0)
            tg.start_soon(sleeper, "early", 10.0)
            tg.start_soon(sleeper, "middle", 20.0)
        assert order == ["early", "middle", "late"]
        assert clock.now() == 30.0


@on_backends()
async def test_autojump_does_not_move_time_while_a_task_can_still_run() -> None:
    async with FakeClock() as clock, anyio.create_task_group() as tg:
        done = anyio.Event()

        async def sleeper() -> None:
            await clock.sleep(10.0)
            done.set()

        tg.start_soon(sleeper)
        # This task stays runnable through many scheduling rounds: no jump yet.
        for _ in range(200):
            await anyio.lowlevel.checkpoint()
        assert clock.now() == 0.0
        assert not done.is_set()
        await done.wait()  # now everything waits: time jumps
        assert clock.now() == 10.0


@on_backends()
async def test_a_cancelled_sleeper_is_forgotten_and_never_makes_time_jump() -> None:
    async with FakeClock() as clock:
        with anyio.move_on_after(0):  # cancelled at its first checkpoint... after registering
            await clock.sleep(50.0)
        assert clock.sleepers == 0
        assert clock.next_deadline is None
        await settle()
        assert clock.now() == 0.0
        # A later sleeper is unaffected by the stale entry.
        await clock.sleep(1.0)
        assert clock.now() == 1.0


@on_backends()
async def test_without_async_with_time_only_moves_when_advanced() -> None:
    clock = FakeClock()  # autojump only happens while entered
    woke = anyio.Event()

    async def sleeper() -> None:
        await clock.sleep(2.0)
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await settle()
        assert clock.now() == 0.0
        assert not woke.is_set()
        clock.advance(2.0)
        await woke.wait()


@on_backends()
async def test_manual_mode_inside_async_with_never_jumps() -> None:
    async with FakeClock(autojump=False) as clock, anyio.create_task_group() as tg:
        tg.start_soon(clock.sleep, 1.0)
        await settle()
        assert clock.now() == 0.0
        assert clock.jumps == 0
        assert clock.sleepers == 1
        clock.advance(1.0)


@on_backends()
async def test_a_clock_cannot_be_entered_twice_at_once() -> None:
    async with FakeClock() as clock:
        with pytest.raises(RuntimeError, match="once"):
            await clock.__aenter__()
    async with clock:  # but again after leaving
        pass


@on_backends()
async def test_settle_returns_once_every_other_task_waits() -> None:
    progress: list[int] = []

    async def busy() -> None:
        for i in range(50):
            progress.append(i)
            await anyio.lowlevel.checkpoint()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(busy)
        await settle()
        assert progress == list(range(50))
        tg.cancel_scope.cancel()


@on_backends()
async def test_two_tasks_can_settle_at_the_same_time() -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(settle)
        tg.start_soon(settle)
        await settle()


def test_repr_tells_time_sleepers_and_mode() -> None:
    assert repr(FakeClock(3.0)) == "<FakeClock now=3.0 sleepers=0 autojump>"
    assert repr(FakeClock(autojump=False)) == "<FakeClock now=0.0 sleepers=0 manual>"
