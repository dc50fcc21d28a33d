"""ns per delivered event through a Nucleus, against a hand-written baseline in the same process.

Shape (issue 2): a counter reducer emits one event per signal; ``k`` subscribers
(0, 1, 10, 100) drain concurrently. The baseline calls the same reducer directly
and ``asyncio.Queue.put_nowait``s each event into every subscriber's queue; its
consumers drain concurrently too. Both let the loop run as often (every
``_YIELD_EVERY`` signals).
Run on asyncio and on uvloop. ``ns per delivered event`` = wall time / (events x
max(k, 1)). Targets: ratio <= 1.2 at 10 and 100 subscribers, <= 1.5 at 0.

At 0 subscribers the table also shows ``floor ns``: the baseline loop plus only what
the nucleus's contract makes it do for every signal even when nobody listens (read
the clock for the envelope's ``at``, keep a history-ring record for a later
``subscribe(from_seq=...)``), with no inbox hop and no producer. ``floor`` is
what any implementation of the contract pays in this process; ``oturn / floor`` is
what the inbox hop and oturn's own code add.

    python benchmarks/bench_nucleus.py            # table
    python benchmarks/bench_nucleus.py --json     # one JSON object with "rows"
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import oturn
from oturn import Event, Signal, Transition
from oturn.runtime.nucleus import _YIELD_EVERY

YIELD_EVERY = _YIELD_EVERY  # the baseline lets the loop run as often as the nucleus does
DELIVERIES = 400_000  # events x subscribers per measurement
TARGETS: dict[int, float | None] = {0: 1.5, 1: None, 10: 1.2, 100: 1.2}  # the issue sets none for 1


class Tick(Signal, frozen=True, kw_only=True, tag="tick"):
    n: int


class Counted(Event, frozen=True, kw_only=True, tag="counted"):
    total: int


def reducer(state: int, signal: Signal) -> Transition[int]:
    total = state + 1
    return Transition(total, (Counted(total=total),))


async def run_oturn(events: int, subscribers: int) -> float:
    signals = [Tick(n=i) for i in range(events)]
    async with oturn.Nucleus(reducer, 0, inbox=1024) as nucleus:
        subs = [nucleus.subscribe(policy="block", buffer=1024) for _ in range(subscribers)]
        done = asyncio.Event()
        remaining = [subscribers]

        async def consume(sub: oturn.Subscription) -> None:
            count = 0
            async for _ in sub:
                count += 1
                if count == events:
                    break
            remaining[0] -= 1
            if not remaining[0]:
                done.set()

        async with asyncio.TaskGroup() as tg:
            for sub in subs:
                tg.create_task(consume(sub))
            await asyncio.sleep(0)
            start = time.perf_counter()
            send = nucleus.send
            for signal in signals:
                await send(signal)
            if subscribers:
                await done.wait()
            else:
                while nucleus.last_seq < events:  # noqa: ASYNC110 - nothing to wait on without subscribers
                    await asyncio.sleep(0)
            elapsed = time.perf_counter() - start
        for sub in subs:
            await sub.aclose()
    return elapsed


async def run_baseline(events: int, subscribers: int) -> float:
    signals = [Tick(n=i) for i in range(events)]
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(subscribers)]
    done = asyncio.Event()
    remaining = [subscribers]

    async def consume(queue: asyncio.Queue[Any]) -> None:
        get = queue.get
        for _ in range(events):
            await get()
        remaining[0] -= 1
        if not remaining[0]:
            done.set()

    async with asyncio.TaskGroup() as tg:
        for queue in queues:
            tg.create_task(consume(queue))
        await asyncio.sleep(0)
        start = time.perf_counter()
        state = 0
        budget = YIELD_EVERY
        for signal in signals:
            t = reducer(state, signal)
            state = t.state
            for event in t.events:
                for queue in queues:
                    queue.put_nowait(event)
            budget -= 1
            if not budget:
                budget = YIELD_EVERY
                await asyncio.sleep(0)
        if subscribers:
            await done.wait()
        return time.perf_counter() - start


async def run_floor(events: int, subscribers: int) -> float:
    """The baseline at 0 subscribers plus the clock read and the history record per signal."""
    signals = [Tick(n=i) for i in range(events)]
    ring: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=1024)
    record = ring.append
    now = time.time
    start = time.perf_counter()
    state = 0
    seq = 0
    budget = YIELD_EVERY
    for cause, signal in enumerate(signals, 1):
        at = now()
        t = reducer(state, signal)
        state = t.state
        if t.events:
            record((seq + 1, at, t.turn, cause, t.events))
            seq += len(t.events)
        budget -= 1
        if not budget:
            budget = YIELD_EVERY
            await asyncio.sleep(0)
    return time.perf_counter() - start


def measure(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    fn: Callable[[int, int], Coroutine[Any, Any, float]],
    events: int,
    subscribers: int,
) -> float:
    gc.collect()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(fn(events, subscribers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=5, help="alternating runs per cell (median kept)")
    parser.add_argument("--deliveries", type=int, default=DELIVERIES)
    args = parser.parse_args()

    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [("asyncio", asyncio.new_event_loop)]
    try:
        import uvloop

        loops.append(("uvloop", uvloop.new_event_loop))
    except ImportError:
        pass

    rows = []
    for loop_name, factory in loops:
        for subscribers in (0, 1, 10, 100):
            events = max(2_000, args.deliveries // max(subscribers, 1))
            per = events * max(subscribers, 1)
            ours: list[float] = []
            base: list[float] = []
            floor: list[float] = []
            measure(factory, run_oturn, min(events, 5_000), subscribers)  # warm up
            measure(factory, run_baseline, min(events, 5_000), subscribers)
            for _ in range(args.repeat):  # alternate so drift hits all alike
                ours.append(measure(factory, run_oturn, events, subscribers) / per * 1e9)
                base.append(measure(factory, run_baseline, events, subscribers) / per * 1e9)
                if not subscribers:
                    floor.append(measure(factory, run_floor, events, subscribers) / per * 1e9)
            o, b = statistics.median(ours), statistics.median(base)
            f = statistics.median(floor) if floor else None
            target = TARGETS[subscribers]
            rows.append(
                {
                    "loop": loop_name,
                    "subscribers": subscribers,
                    "events": events,
                    "oturn_ns": round(o, 1),
                    "baseline_ns": round(b, 1),
                    "ratio": round(o / b, 3),
                    "floor_ns": None if f is None else round(f, 1),
                    "floor_ratio": None if f is None else round(f / b, 3),
                    "target": target,
                    "ok": None if target is None else o / b <= target,
                }
            )
    if args.json:
        print(json.dumps({"benchmark": "nucleus", "python": sys.version.split()[0], "rows": rows}))
    else:
        print(
            f"{'loop':8} {'subs':>5} {'events':>7} {'oturn ns':>9} {'base ns':>8} {'ratio':>6} {'target':>6}"
            f" {'':4} {'floor ns':>9} {'floor/base':>10} {'oturn/floor':>11}"
        )
        for r in rows:
            mark = "" if r["ok"] is None else ("ok" if r["ok"] else "MISS")
            extra = ""
            if r["floor_ns"] is not None:
                extra = f" {r['floor_ns']:>9} {r['floor_ratio']:>10} {round(r['oturn_ns'] / r['floor_ns'], 3):>11}"
            print(
                f"{r['loop']:8} {r['subscribers']:>5} {r['events']:>7} {r['oturn_ns']:>9} {r['baseline_ns']:>8}"
                f" {r['ratio']:>6} {r['target'] or '':>6} {mark:4}{extra}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
