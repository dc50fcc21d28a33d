"""Two subscribers with different overflow policies on one agent session.

- The **UI** renders the answer as it streams. It is deliberately slow (it takes
  50 ms per update) and has a small buffer, with policy ``coalesce``: while it is
  behind, consecutive ``assistant_delta`` events are merged into the one it has not
  read yet, so it gets fewer, bigger deltas, never stalls the agent, and still ends up
  with the whole text.
- The **logger** has policy ``block`` (lossless: the session waits for it if it ever
  fills up) and writes every envelope as a JSON line with ``msgspec.json.encode``.

At the end: the UI's merged deltas concatenate to the final text, the logger saw every
``seq`` without a gap, and both subscriptions' statistics.

    python examples/ui_and_logger.py
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any

import anyio
import msgspec

import oturn
from oturn.agent import events as ev
from oturn.testing import FakeModel

ANSWER = (
    "A nucleus reduces one signal at a time and fans the events out to every subscriber. "
    "Each subscriber has its own bounded buffer and overflow policy, so a slow screen "
    "never holds up the agent, while the audit log still gets every single event."
)


def scripted_model(clock: oturn.Clock | None) -> FakeModel:
    # One word every 10 ms (on ``clock``), five times faster than the UI can draw.
    words = [item for delta in FakeModel.text(ANSWER) for item in (delta, FakeModel.delay(0.01))]
    return FakeModel([[*words, *FakeModel.usage(40, 45)]], clock=clock)


async def ui(sub: oturn.Subscription, clock: oturn.Clock, stats: dict[str, Any]) -> None:
    """A slow screen: shows the answer as it grows, one update per 50 ms."""
    text = ""
    async for envelope in sub:
        if isinstance(envelope.event, ev.AssistantDelta):
            text += envelope.event.text
            stats["updates"].append(envelope.event.text)
        await clock.sleep(0.05)  # "rendering"
    stats["text"] = text


async def logger(sub: oturn.Subscription, log: IO[bytes], stats: dict[str, Any]) -> None:
    """The audit log: every envelope, as one JSON line."""
    async for envelope in sub:
        line = msgspec.json.encode(envelope)
        log.write(line + b"\n")
        stats["seqs"].append(envelope.seq)
        stats.setdefault("first", line.decode())


async def main(
    model: oturn.Model | None = None,
    clock: oturn.Clock | None = None,
    log: IO[bytes] | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run one turn with both subscribers; return what each saw and their statistics."""
    clock = clock or oturn.SystemClock()
    log = log if log is not None else io.BytesIO()
    agent = oturn.Agent(model or scripted_model(clock))
    ui_stats: dict[str, Any] = {"updates": []}
    log_stats: dict[str, Any] = {"seqs": []}
    async with anyio.create_task_group() as tg, agent.session(id="ui-and-logger", clock=clock) as session:
        # Subscribe before the turn starts (so both see it from the first event).
        ui_sub = session.subscribe(policy="coalesce", buffer=4, types=[ev.AssistantDelta, ev.TurnFinished])
        log_sub = session.subscribe(policy="block")
        tg.start_soon(ui, ui_sub, clock, ui_stats)
        tg.start_soon(logger, log_sub, log, log_stats)
        finished = await session.run("Why can't a slow screen stall the agent?")
    # Leaving the session closed it: both subscriptions ended once read to the end, and
    # leaving the task group waited for that.
    ui_stats["statistics"], log_stats["statistics"] = ui_sub.statistics(), log_sub.statistics()
    published = session.statistics().events_published

    seqs = log_stats["seqs"]
    out(f"final text ({len(finished.text)} chars): {finished.text[:60]}...")
    out(f"UI: {len(ui_stats['updates'])} updates, the biggest {max(ui_stats['updates'], key=len)!r}")
    out(f"    merged deltas == final text: {ui_stats['text'] == finished.text}")
    out(f"logger: {len(seqs)} JSON lines, seq {seqs[0]}..{seqs[-1]}, no gap: {seqs == list(range(1, seqs[-1] + 1))}")
    out(f"        first line: {log_stats['first']}")
    out(f"events published: {published}")
    for name, stats in (("ui", ui_stats), ("logger", log_stats)):
        s = stats["statistics"]
        out(
            f"  {name:6} {s.policy:8} buffer={s.buffer:<4} delivered={s.delivered:<3} peak={s.peak:<3}"
            f" merged={s.merged:<3} dropped={s.dropped}"
        )
    return {"finished": finished, "ui": ui_stats, "logger": log_stats, "published": published}


if __name__ == "__main__":
    oturn.run(main)
