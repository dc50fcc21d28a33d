"""Every subscription policy side by side, on one burst of events.

A nucleus streams 200 text deltas (as an LLM would) in one burst to six subscribers.
The ``block`` one is a fast logger with a large buffer: it gets everything, and the
nucleus would wait for it if it fell behind. The others read slowly with a
16-envelope buffer each and never hold anyone up; the table shows what each got and
counts exactly what it dropped or merged. The ``disconnect`` subscriber is cut off
with a cursor and catches up by resubscribing from it (the history ring still holds
the envelopes).

    python examples/subscribers.py
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

import oturn
from oturn import Event, Signal, Transition
from oturn.testing import settle


class Chunk(Signal, frozen=True, kw_only=True, tag="chunk"):
    text: str


class Delta(Event, frozen=True, kw_only=True, tag="delta"):
    text: str

    def merge(self, later: Event) -> Event | None:  # lets ``coalesce`` fold deltas together
        return Delta(text=self.text + later.text) if isinstance(later, Delta) else None


def reducer(length: int, signal: Signal) -> Transition[int]:
    assert isinstance(signal, Chunk)
    return Transition(length + len(signal.text), [Delta(text=signal.text)])


POLICIES = ["block", "drop_oldest", "drop_newest", "coalesce", "latest", "disconnect"]


async def main(out: Callable[[str], None] = print, chunks: int = 200) -> dict[str, dict[str, int]]:
    text = [f"w{i} " for i in range(chunks)]
    results: dict[str, dict[str, int]] = {}
    async with oturn.Nucleus(reducer, 0, inbox=chunks, history=4096) as nucleus:
        subs = {
            policy: nucleus.subscribe(policy=policy, buffer=256 if policy == "block" else 16) for policy in POLICIES
        }

        async def read(policy: str, sub: oturn.Subscription) -> None:
            got, chars, resumed = 0, 0, 0
            try:
                async for envelope in sub:
                    got += 1
                    chars += len(envelope.event.text)  # type: ignore[attr-defined]
                    if policy != "block":  # a slow reader: one envelope per turn of the loop
                        await anyio.lowlevel.checkpoint()
            except oturn.SubscriberDisconnected as cut:
                async with nucleus.subscribe(from_seq=cut.resume_from, policy="block") as rest:
                    async for envelope in rest:
                        resumed += 1
                        chars += len(envelope.event.text)  # type: ignore[attr-defined]
            stats = sub.statistics()
            results[policy] = {
                "received": got,
                "dropped": stats.dropped,
                "merged": stats.merged,
                "resumed": resumed,
                "chars": chars,
            }

        async with anyio.create_task_group() as tg:
            for policy, sub in subs.items():
                tg.start_soon(read, policy, sub)
            for piece in text:  # the burst: all queued before the nucleus runs
                nucleus.send_nowait(Chunk(text=piece))
            await settle()
            await nucleus.aclose()  # end of stream for everyone
    total = sum(map(len, text))
    out(f"{chunks} deltas, {total} characters; buffer 16 each (block: 256)")
    out(f"{'policy':12} {'received':>8} {'dropped':>8} {'merged':>7} {'resumed':>8} {'chars':>6}")
    for policy in POLICIES:
        r = results[policy]
        out(f"{policy:12} {r['received']:>8} {r['dropped']:>8} {r['merged']:>7} {r['resumed']:>8} {r['chars']:>6}")
    return results


if __name__ == "__main__":
    oturn.run(main)
