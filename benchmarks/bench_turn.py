"""The reference agent turn, end to end, and the longest event-loop stall of a turn.

The reference turn (issue 3): 1,000 text deltas, then 3 tool calls of 50 argument
deltas each, the tools run, a second model call of 20 deltas, the final answer; a
zero-latency model; one subscriber draining every envelope.

The target rows use ``oturn.testing.FakeModel`` as the issue specifies (its deltas
come out normalised). Extra rows show the same turn from OpenAI
``chat.completion.chunk`` payloads (dicts, as parsed from the wire) normalised by
``oturn.llm.normalize_chunk`` as they stream (``chunks``), so the adapter's share is
visible too. Deltas that are ready together travel as one ``ModelStream`` signal
(``ready``); ``per_chunk`` rows send one signal per chunk, as a slow network would,
to show the cost without that batching.

- ``turn_ms``: wall time of the reference turn (target <= 1.5 ms).
- ``chunk_us``: ``turn_ms`` / number of chunks (target <= 1.0 us), so it also carries
  the turn's fixed costs (two model calls, three tool runs).
- ``stall_ms``: the longest time the event loop was blocked during the first two turns
  of a fresh process through the default ``Agent("openai/...")`` backend (LiteLLM in a
  worker process) against a local OpenAI-compatible server (run in a process of its own),
  so the first model call pays LiteLLM's import (target <= 5 ms); the median over
  ``--stall-runs`` fresh processes (3) of each run's longest gap. ``stall_ms_thread``:
  the same with ``llm_process=False`` (LiteLLM imported in a thread of this process).
  ``stall_noise_ms``: the floor of this machine, the same ticker in a process doing
  nothing while another process imports LiteLLM. ``litellm_first_turn_ms`` /
  ``litellm_turn_ms``: wall time of the first turn (the import included) and of the
  second; ``litellm_loop_cpu_us_per_chunk``: the CPU time of the agent's process per
  streamed chunk (LiteLLM's own work counts only in-thread). Needs the ``llm`` and
  ``dev`` extras; skipped otherwise.

    python benchmarks/bench_turn.py [--json] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import oturn
from oturn.agent.deltas import StreamDelta
from oturn.agent.effects import CallModel
from oturn.llm import normalize_chunk
from oturn.testing.fake_model import FakeModel

TEXT_DELTAS = 1_000
TOOL_CALLS = 3
ARGUMENT_DELTAS = 50
SECOND_DELTAS = 20


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def first_response() -> list[dict[str, Any]]:
    chunks = [_chunk({"role": "assistant", "content": "w "}) for _ in range(TEXT_DELTAS)]
    for call in range(TOOL_CALLS):
        args = '{"city": "' + "x" * (ARGUMENT_DELTAS - 2) + '"}'
        pieces = [args[: len(args) - ARGUMENT_DELTAS + 1], *list(args[len(args) - ARGUMENT_DELTAS + 1 :])]
        head = {
            "index": call,
            "id": f"call_{call}",
            "type": "function",
            "function": {"name": "lookup", "arguments": pieces[0]},
        }
        chunks.append(_chunk({"tool_calls": [head]}))
        chunks.extend(_chunk({"tool_calls": [{"index": call, "function": {"arguments": p}}]}) for p in pieces[1:])
    chunks.append(_chunk({}, "tool_calls"))
    chunks.append(
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 50, "completion_tokens": 1150, "total_tokens": 1200},
        }
    )
    return chunks


def second_response() -> list[dict[str, Any]]:
    chunks = [_chunk({"content": "done "}) for _ in range(SECOND_DELTAS)]
    chunks.append(_chunk({}, "stop"))
    return chunks


class ChunkModel:
    """Replays chunk payloads, normalising them as it streams (zero latency)."""

    name = "bench"

    def __init__(self, responses: list[list[dict[str, Any]]], per_chunk: bool) -> None:
        self._responses = responses
        self._next = 0
        self._per_chunk = per_chunk

    async def stream(self, call: CallModel, /) -> AsyncIterator[Sequence[StreamDelta]]:
        chunks = self._responses[self._next]
        self._next += 1
        if self._per_chunk:
            for chunk in chunks:
                yield normalize_chunk(chunk)
        else:
            batch: list[StreamDelta] = []
            for chunk in chunks:
                batch.extend(normalize_chunk(chunk))
            yield batch


async def lookup(city: str) -> str:
    """A trivial tool."""
    return "ok"


def fake_model(per_chunk: bool) -> FakeModel:
    F = FakeModel
    first: list[Any] = [F.text("w " * TEXT_DELTAS, chunks=TEXT_DELTAS)]
    for call in range(TOOL_CALLS):
        args = '{"city": "' + "x" * (ARGUMENT_DELTAS * 2) + '"}'
        first.append(F.tool_call("lookup", args, id=f"call_{call}", fragments=ARGUMENT_DELTAS))
    first.append(F.usage(50, 1150))
    second = [F.text("done " * SECOND_DELTAS, chunks=SECOND_DELTAS)]
    return FakeModel([first, second], batch=not per_chunk)


async def reference_turn(per_chunk: bool, source: str = "fake") -> tuple[float, int, int]:
    responses = [first_response(), second_response()]
    chunks = sum(len(r) for r in responses)
    model: Any = fake_model(per_chunk) if source == "fake" else ChunkModel(responses, per_chunk)
    if source == "fake":
        chunks = TEXT_DELTAS + TOOL_CALLS * ARGUMENT_DELTAS + 1 + SECOND_DELTAS
    agent = oturn.Agent(model, tools=[oturn.tool(lookup)])
    async with agent.session() as session:
        async with session.subscribe(policy="block", buffer=4096) as sub:
            received = 0

            async def drain() -> None:
                nonlocal received
                async for envelope in sub:
                    received += 1
                    if type(envelope.event).__name__ == "TurnFinished":
                        return

            start = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(drain())
                await session.send("go")
            elapsed = time.perf_counter() - start
        assert session.state.phase == "idle", session.state.phase
    return elapsed, chunks, received


def measure_turns(repeat: int, per_chunk: bool, source: str = "fake") -> tuple[float, int, int]:
    times = []
    chunks = received = 0
    for _ in range(repeat):
        gc.collect()
        elapsed, chunks, received = asyncio.run(reference_turn(per_chunk, source))
        times.append(elapsed)
    return statistics.median(times), chunks, received


SERVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from oturn.testing.openai_server import OpenAIServer

    async def main():
        async with OpenAIServer(text="w " * PIECES, piece=2) as server:
            print(server.base_url, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes

    asyncio.run(main())
    """
).replace("PIECES", "100")
"""The fake OpenAI-compatible server, in a process of its own: the measured loop runs only the
agent (and, in-thread, LiteLLM). Its "text" scenario streams ~100 content chunks."""

STALL_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import oturn

    async def main(backend, base_url):
        gaps = []
        stop = asyncio.Event()

        async def ticker():
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.0005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        agent = oturn.Agent("openai/text", api_base=base_url, api_key="x", llm_process=backend == "process")
        async with agent.session() as session:
            task = asyncio.ensure_future(ticker())
            start = time.perf_counter()
            result = await session.run("hello")
            first = time.perf_counter() - start
            first_gap = max(gaps)
            start = time.perf_counter()
            await session.run("again")
            second = time.perf_counter() - start
            stop.set()
            await task
            walls, cpus = [], []
            for _ in range(3):  # without the ticker: the loop's CPU time per streamed chunk
                start, cpu = time.perf_counter(), time.process_time()
                await session.run("more")
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
        print(json.dumps({"backend": type(agent.model).__name__, "outcome": result.outcome, "max_gap": max(gaps),
                          "first_gap": first_gap, "first": first, "second": second, "wall": min(walls),
                          "cpu": min(cpus), "litellm_here": "litellm" in sys.modules}))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)

NOISE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, subprocess, sys, time

    async def main():
        gaps = []
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS="True")
        other = subprocess.Popen([sys.executable, "-c", "import litellm"], env=env)
        last = time.perf_counter()
        while other.poll() is None:
            await asyncio.sleep(0.0005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        print(json.dumps({"max_gap": max(gaps)}))

    asyncio.run(main())
    """
)
"""The machine's floor: the longest gap of the same ticker in a process doing nothing else while
another, unrelated process imports LiteLLM (the CPU contention the worker process adds)."""

STREAM_CHUNKS = 103  # the "text" scenario above: role, 100 content deltas, finish, usage


def _run_json(script: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"stall measurement failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _median_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [key for key, value in reports[0].items() if isinstance(value, float)]
    return {key: statistics.median(report[key] for report in reports) for key in keys}


def measure_stall(runs: int = 3) -> dict[str, dict[str, Any]] | None:
    """Per backend (``process``: the default, ``thread``) and for ``noise``: the median over ``runs``
    fresh processes of each figure of the scripts' reports (the machine's scheduling noise
    moves a single run's longest gap by a few milliseconds)."""
    if importlib.util.find_spec("litellm") is None or importlib.util.find_spec("aiohttp") is None:
        return None
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    reports: dict[str, list[dict[str, Any]]] = {"process": [], "thread": [], "noise": []}
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        for _ in range(runs):
            for backend in ("process", "thread"):
                reports[backend].append(_run_json(STALL_SCRIPT, backend, base_url))
            reports["noise"].append(_run_json(NOISE_SCRIPT))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    return {name: _median_report(results) for name, results in reports.items()}


def stall_rows(stall: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend, suffix in (("process", ""), ("thread", "_thread")):
        report = stall[backend]
        mode = f"litellm {backend}" + (" (default)" if backend == "process" else "")
        rows += [
            {
                "name": f"stall_ms{suffix}",
                "value": round(report["max_gap"] * 1e3, 3),
                "unit": "ms",
                "target": 5.0 if backend == "process" else None,
                "mode": f"{mode}, first two turns, median of runs",
            },
            {
                "name": f"litellm_first_turn_ms{suffix}",
                "value": round(report["first"] * 1e3, 1),
                "unit": "ms",
                "target": None,
                "mode": mode,
            },
            {
                "name": f"litellm_turn_ms{suffix}",
                "value": round(report["second"] * 1e3, 1),
                "unit": "ms",
                "target": None,
                "mode": f"{mode}, {STREAM_CHUNKS} chunks",
            },
            {
                "name": f"litellm_loop_cpu_us_per_chunk{suffix}",
                "value": round(report["cpu"] / STREAM_CHUNKS * 1e6, 1),
                "unit": "us",
                "target": None,
                "mode": f"{mode}, this process's CPU / chunk",
            },
        ]
    rows.append(
        {
            "name": "stall_noise_ms",
            "value": round(stall["noise"]["max_gap"] * 1e3, 3),
            "unit": "ms",
            "target": None,
            "mode": "idle loop while another process imports litellm",
        }
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-stall", action="store_true", help="skip the LiteLLM stall measurement")
    parser.add_argument("--stall-runs", type=int, default=3, help="fresh processes per backend (median)")
    args = parser.parse_args()

    asyncio.run(reference_turn(False))  # warm up imports and caches
    asyncio.run(reference_turn(False, "chunks"))
    ready, chunks, received = measure_turns(args.repeat, per_chunk=False)
    per_chunk, _, received_per_chunk = measure_turns(max(3, args.repeat // 3), per_chunk=True)
    raw, raw_chunks, _ = measure_turns(args.repeat, per_chunk=False, source="chunks")
    raw_per_chunk, _, _ = measure_turns(max(3, args.repeat // 3), per_chunk=True, source="chunks")
    rows: list[dict[str, Any]] = [
        {"name": "turn_ms", "value": round(ready * 1e3, 3), "unit": "ms", "target": 1.5, "mode": "fake, ready"},
        {
            "name": "chunk_us",
            "value": round(ready / chunks * 1e6, 3),
            "unit": "us",
            "target": 1.0,
            "mode": "fake, ready",
        },
        {
            "name": "turn_ms_per_chunk",
            "value": round(per_chunk * 1e3, 3),
            "unit": "ms",
            "target": None,
            "mode": "fake, per chunk",
        },
        {
            "name": "chunk_us_per_chunk",
            "value": round(per_chunk / chunks * 1e6, 3),
            "unit": "us",
            "target": None,
            "mode": "fake, per chunk",
        },
        {
            "name": "turn_ms_chunks",
            "value": round(raw * 1e3, 3),
            "unit": "ms",
            "target": None,
            "mode": "chunk dicts, ready",
        },
        {
            "name": "chunk_us_chunks",
            "value": round(raw / raw_chunks * 1e6, 3),
            "unit": "us",
            "target": None,
            "mode": "chunk dicts, ready",
        },
        {
            "name": "chunk_us_chunks_per_chunk",
            "value": round(raw_per_chunk / raw_chunks * 1e6, 3),
            "unit": "us",
            "target": None,
            "mode": "chunk dicts, per chunk",
        },
    ]
    if not args.no_stall:
        stall = measure_stall(max(1, args.stall_runs))
        if stall is not None:
            rows.extend(stall_rows(stall))
    for row in rows:
        row["ok"] = None if row["target"] is None else row["value"] <= row["target"]
    meta = {"chunks": chunks, "envelopes": received, "envelopes_per_chunk_mode": received_per_chunk}
    if args.json:
        print(json.dumps({"benchmark": "turn", **meta, "rows": rows}))
    else:
        print(f"reference turn: {chunks} chunks; envelopes delivered: {received} (ready),", end=" ")
        print(f"{received_per_chunk} (per chunk)")
        print(f"{'name':28} {'value':>10} {'unit':>5} {'target':>7}")
        for row in rows:
            mark = "" if row["ok"] is None else ("ok" if row["ok"] else "MISS")
            target = "" if row["target"] is None else row["target"]
            print(f"{row['name']:28} {row['value']:>10} {row['unit']:>5} {target!s:>7} {mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
