"""Persistence figures (issue 4): the journal's append rate to SQLite, restore time, and a persisted turn.

- ``append_batched``: signals/s appended to SQLite through the :class:`~oturn.runtime.journal.Journal`
  in ``batched`` mode, driven as the nucleus drives it (``record_signal`` per signal, the loop let
  run as often as the nucleus lets it, the writer committing one transaction per batch in the background). The
  records are encoded from real agent signals (model stream chunks, tool results, ...) as part
  of the measurement. Target >= 50,000/s.
- ``append_raw_executemany``: the baseline, measured in the same run: the same rows, already
  encoded, inserted with one aiosqlite ``executemany`` in one transaction into the same schema.
  ``append_ratio`` = journal / raw, target >= 0.7. Both are medians of 5 alternated runs.
- ``restore_10k_ms``: opening a 10,000-signal agent session from its SQLite file with the
  default snapshots (every 1,000 signals) in their worst case (the latest snapshot ~1,000 signals
  back): ``agent.session(...).__aenter__`` (opening the file, the lease, the latest snapshot, the
  tail replay). Target <= 150 ms. ``restore_10k_journal_only_ms``: ``Journal.restore`` alone on an
  open store; ``restore_10k_no_snapshot_ms`` replays all 10,000 signals (no target).
- ``turn_sqlite_ms``: the reference turn of ``bench_turn.py`` (1,000 text deltas, 3 tool calls of 50
  argument deltas, a second model call of 20) in a session persisted to SQLite with
  ``durability="effects"``, timed as bench_turn times it: from ``send`` until ``turn_finished`` is
  received (the three write-ahead commits before the model calls and the tools included). Target
  <= 3 ms. ``turn_sqlite_durable_ms`` goes on until the turn's last records (written in the
  background after ``turn_finished``) are committed too; ``turn_memory_ms`` is the same turn
  without a store (the baseline).

    python benchmarks/bench_store.py [--json] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosqlite

import oturn
from oturn.agent.codec import agent_codec
from oturn.agent.deltas import TextDelta, ToolCallDelta, UsageDelta
from oturn.agent.events import ApprovalRequest, TurnFinished
from oturn.agent.signals import ModelDone, ModelStream, ToolFinished, UserInput
from oturn.agent.turn import TurnReducer
from oturn.agent.usage import Usage
from oturn.core.messages import Signal
from oturn.runtime.journal import Journal
from oturn.runtime.nucleus import _YIELD_EVERY
from oturn.store.sqlite import SQLiteStore
from oturn.testing.fake_model import FakeModel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_turn import fake_model, lookup  # the reference turn's model and tool

SIGNALS = 100_000
YIELD_EVERY = _YIELD_EVERY  # as the nucleus: the loop lets other tasks run every so many signals
RESTORE_SIGNALS = 10_000


def agent_signals(n: int) -> list[Signal]:
    """A realistic mix: mostly stream chunks, with the odd tool result, model end and user input."""
    pattern: list[Signal] = [
        UserInput(id="in-1", text="What is the weather in Tokyo and in Paris?"),
        *[ModelStream(call="t1.1", deltas=(TextDelta(text=f"word{i} "),)) for i in range(20)],
        ModelStream(call="t1.1", deltas=(ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"ci'),)),
        ModelStream(call="t1.1", deltas=(ToolCallDelta(index=0, arguments='ty": "Tokyo"}'),)),
        ModelStream(call="t1.1", deltas=(UsageDelta(usage=Usage(prompt_tokens=50, completion_tokens=21)),)),
        ModelDone(call="t1.1"),
        ToolFinished(call="t1.1.0", content="18 °C, light rain"),
    ]
    return [pattern[i % len(pattern)] for i in range(n)]


async def journal_append(path: Path, signals: list[Signal]) -> float:
    """Signals/s through the journal (batched), the writer running as in a nucleus."""
    async with SQLiteStore(path) as store:
        journal: Journal[Any] = Journal(store, "bench", agent_codec(), durability="batched", snapshot_every=10**9)
        await journal.restore(lambda s, x: oturn.Transition(s), None, now=time.time())
        gc.collect()
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(journal.run(time.time))
            now = time.time()
            budget = YIELD_EVERY
            record, must_wait = journal.record_signal, journal.must_wait
            for seq, signal in enumerate(signals, 1):
                record(seq, now, signal)
                if must_wait(False):
                    await journal.flush()
                budget -= 1
                if not budget:
                    budget = YIELD_EVERY
                    await asyncio.sleep(0)
            await journal.close(time.time())
        elapsed = time.perf_counter() - start
        info = await store.info("bench")
        assert info is not None
        assert info.signals == len(signals), info
    return len(signals) / elapsed


async def raw_executemany(path: Path, signals: list[Signal]) -> float:
    """Rows/s for the same rows, pre-encoded, in one aiosqlite executemany (the baseline)."""
    codec = agent_codec()
    now = time.time()
    rows = [("bench", seq, now, s.__struct_config__.tag, codec.encode(s)) for seq, s in enumerate(signals, 1)]
    async with SQLiteStore(path) as store:  # the same file format: schema, WAL
        await store.create("bench", now=now)
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        gc.collect()
        start = time.perf_counter()
        await db.execute("BEGIN IMMEDIATE")
        await db.executemany("INSERT INTO signals (session, seq, at, type, data) VALUES (?, ?, ?, ?, ?)", rows)
        await db.execute("COMMIT")
        elapsed = time.perf_counter() - start
    return len(rows) / elapsed


# -- restore -------------------------------------------------------------------------------------


def restore_agent(responses: int) -> oturn.Agent:
    F = FakeModel
    script: list[Any] = []
    for i in range(responses):
        if i % 3 == 0:
            script.append([F.text("Let me look that up.", chunks=4), F.tool_call("lookup", {"city": f"c{i}"})])
        else:
            script.append([F.text(f"The answer number {i} is here, in a few words " * 2, chunks=40), F.usage(90, 40)])
    return oturn.Agent(FakeModel(script, batch=False), tools=[oturn.tool(lookup)])


async def build_session(url: str, *phases: tuple[int, int]) -> int:
    """A session of whole turns written through the journal: for each ``(signals, snapshot_every)``
    phase the session is opened and run until it holds that many signals."""
    agent = restore_agent(3000)
    total = 0
    n = 0
    for signals, snapshot_every in phases:
        async with agent.session(id="big", store=url, durability="batched", snapshot_every=snapshot_every) as session:
            while total < signals:
                n += 1
                await session.run(f"question {n}")
                total = session.statistics().signals_reduced  # counted from the session's first signal
    return total


async def time_restore(url: str) -> tuple[float, float, int, int]:
    """Seconds to open the session (store + restore) and to restore only; the snapshot seq; the tail."""
    agent = restore_agent(0)
    gc.collect()
    start = time.perf_counter()
    session = agent.session(id="big", store=url)
    await session.__aenter__()
    opened = time.perf_counter() - start
    restored = session.nucleus.restored
    assert restored is not None
    await session.__aexit__(None, None, None)
    async with SQLiteStore(url.removeprefix("sqlite://")) as store:
        journal = Journal(store, "big", agent_codec())
        reducer = TurnReducer(agent.turn_config)
        gc.collect()
        start = time.perf_counter()
        await journal.restore(reducer, reducer.initial(), now=time.time())
        alone = time.perf_counter() - start
        await store.release("big", journal.owner)
    return opened, alone, restored.snapshot_seq, restored.replayed


# -- the reference turn, persisted -----------------------------------------------------------------


async def reference_turn(store: SQLiteStore | None, sid: str) -> tuple[float, float]:
    """Seconds from ``send`` to ``turn_finished`` received (what bench_turn times), and to every record committed."""
    agent = oturn.Agent(fake_model(False), tools=[oturn.tool(lookup)])
    async with agent.session(id=sid, store=store, durability="effects") as session:
        async with session.subscribe(policy="block", buffer=4096) as sub:

            async def drain() -> None:
                async for envelope in sub:
                    if isinstance(envelope.event, TurnFinished):
                        return
                    assert not isinstance(envelope.event, ApprovalRequest)

            gc.collect()
            start = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(drain())
                await session.send("go")
            finished = time.perf_counter() - start
            journal = session.nucleus._journal
            if journal is not None:
                await journal.flush()  # the turn's last records, written in the background
            durable = time.perf_counter() - start
        assert session.state.phase == "idle", session.state.phase
    return finished, durable


async def measure_turns(path: Path, repeat: int) -> tuple[float, float, float]:
    async with SQLiteStore(path) as store:
        await reference_turn(store, "warm")
        await reference_turn(None, "warm")
        persisted = [await reference_turn(store, f"turn-{i}") for i in range(repeat)]
        memory = [await reference_turn(None, f"mem-{i}") for i in range(repeat)]
    return (
        statistics.median(p[0] for p in persisted),
        statistics.median(p[1] for p in persisted),
        statistics.median(m[0] for m in memory),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    signals = agent_signals(SIGNALS)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        appends = []
        raws = []
        for i in range(5):  # alternated, so that both see the same machine
            appends.append(asyncio.run(journal_append(d / f"journal{i}.db", signals)))
            raws.append(asyncio.run(raw_executemany(d / f"raw{i}.db", signals)))
        append, raw = statistics.median(appends), statistics.median(raws)

        # the worst case of the default snapshots (every 1,000 signals): the latest one ~1,000 signals back
        url = f"sqlite://{d / 'restore.db'}"
        count = asyncio.run(build_session(url, (RESTORE_SIGNALS - 999, 1000), (RESTORE_SIGNALS, 10**9)))
        restores = [asyncio.run(time_restore(url)) for _ in range(5)]
        opened = statistics.median(r[0] for r in restores)
        alone = statistics.median(r[1] for r in restores)
        snapshot_seq, tail = restores[0][2], restores[0][3]
        url_full = f"sqlite://{d / 'restore_full.db'}"
        asyncio.run(build_session(url_full, (RESTORE_SIGNALS, 10**9)))
        full = [asyncio.run(time_restore(url_full)) for _ in range(3)]
        opened_full = statistics.median(r[0] for r in full)

        turn, durable, memory = asyncio.run(measure_turns(d / "turns.db", args.repeat))

    rows: list[dict[str, Any]] = [
        {"name": "append_batched", "value": round(append), "unit": "signals/s", "target": 50_000, "baseline": None},
        {"name": "append_raw_executemany", "value": round(raw), "unit": "rows/s", "target": None, "baseline": None},
        {
            "name": "append_ratio",
            "value": round(append / raw, 3),
            "unit": "x",
            "target": 0.7,
            "baseline": round(raw),
        },
        {"name": "restore_10k_ms", "value": round(opened * 1e3, 2), "unit": "ms", "target": 150.0, "baseline": None},
        {
            "name": "restore_10k_journal_only_ms",
            "value": round(alone * 1e3, 2),
            "unit": "ms",
            "target": None,
            "baseline": None,
        },
        {
            "name": "restore_10k_no_snapshot_ms",
            "value": round(opened_full * 1e3, 2),
            "unit": "ms",
            "target": None,
            "baseline": None,
        },
        {
            "name": "turn_sqlite_ms",
            "value": round(turn * 1e3, 3),
            "unit": "ms",
            "target": 3.0,
            "baseline": round(memory * 1e3, 3),
        },
        {
            "name": "turn_sqlite_durable_ms",
            "value": round(durable * 1e3, 3),
            "unit": "ms",
            "target": None,
            "baseline": None,
        },
        {"name": "turn_memory_ms", "value": round(memory * 1e3, 3), "unit": "ms", "target": None, "baseline": None},
    ]
    for row in rows:
        target = row["target"]
        if target is None:
            row["ok"] = None
        elif row["name"].startswith("append"):
            row["ok"] = row["value"] >= target
        else:
            row["ok"] = row["value"] <= target
    meta = {"signals": SIGNALS, "restore_signals": count, "restore_snapshot_seq": snapshot_seq, "restore_tail": tail}
    if args.json:
        print(json.dumps({"benchmark": "store", **meta, "rows": rows}))
    else:
        print(
            f"append: {SIGNALS} signals; restore: a {count}-signal session (snapshot at {snapshot_seq},"
            f" {tail} signals replayed); turn: median of {args.repeat}"
        )
        print(f"{'name':30} {'value':>12} {'unit':>10} {'target':>8}")
        for row in rows:
            mark = "" if row["ok"] is None else ("ok" if row["ok"] else "MISS")
            target = "" if row["target"] is None else row["target"]
            print(f"{row['name']:30} {row['value']:>12} {row['unit']:>10} {target!s:>8} {mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
