"""Crash recovery: a child process running an agent session on a SQLite file is killed with SIGKILL
at random points of its turns, many times; after each kill the store is reopened and checked.

The child (``CHILD`` below) runs turns against a scripted model that streams slowly, calls a tool
that runs at once, one that needs approval, and (every other turn) one that waits forever. It
reports every event on its stdout, so the parent can kill it in a chosen phase (thinking,
attention, running, idle) after a random delay. After each kill the parent reduces the durable
log itself and checks that the next child restores exactly that state; at the end it checks what
became of everything that was in flight: model calls made again, tools reported ``interrupted``
and never run twice, approvals answered after the restart, a provider-valid history, and a log
that replays to its stored events byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from oturn.agent.agent import Agent
from oturn.agent.codec import agent_codec
from oturn.agent.events import ApprovalResolved, SessionResumed, ToolExit, ToolResult, TurnFinished
from oturn.agent.signals import ModelDone
from oturn.agent.state import AgentState
from oturn.agent.turn import TurnReducer
from oturn.core.messages import Signal
from oturn.store.replay import verify
from oturn.store.sqlite import SQLiteStore
from oturn.tools.tool import tool

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and /proc are POSIX")

CODEC = agent_codec()
KILLS = 20
SEED = 20240611
PHASES = ("thinking", "attention", "running", "idle")

CHILD = textwrap.dedent(
    r'''
    import hashlib, sys
    import anyio, msgspec
    from oturn import SessionLockedError
    from oturn.agent.agent import Agent
    from oturn.agent.codec import agent_codec
    from oturn.agent.deltas import ReasoningDelta, TextDelta, ToolCallDelta, UsageDelta
    from oturn.agent.events import ApprovalRequest, StateChanged
    from oturn.agent.usage import Usage
    from oturn.tools.context import ToolContext
    from oturn.tools.tool import tool

    db, log_path, sid, mode, target = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    codec = agent_codec()

    def say(*parts):
        print(*parts, flush=True)

    def ran(name, key):
        with open(log_path, "a") as f:
            f.write(f"{name} {key}\n")

    @tool
    async def fetch(item: str, ctx: ToolContext) -> str:
        """Fetch an item (quick)."""
        ran("fetch", ctx.tool_call_id)
        await anyio.sleep(0.004)
        return f"fetched {item}"

    @tool
    async def hang(ctx: ToolContext) -> str:
        """Wait forever."""
        ran("hang", ctx.tool_call_id)
        await anyio.Event().wait()
        return "never"

    @tool(approval="ask")
    async def write(text: str, ctx: ToolContext) -> str:
        """Write (asks first)."""
        ran("write", ctx.tool_call_id)
        return "written"

    class Model:
        name = "crashy"

        async def stream(self, call):
            turn, step = (int(part) for part in call.key[1:].split("."))
            for i in range(6):  # thinking takes a while
                await anyio.sleep(0.003)
                yield [ReasoningDelta(text=f"r{i} "), TextDelta(text=f"w{i} ")]
            if step == 1:
                yield [
                    ToolCallDelta(index=0, id=f"{call.key}-f", name="fetch", arguments='{"item": '),
                    ToolCallDelta(index=0, arguments=f'"i{turn}"}}'),
                    ToolCallDelta(index=1, id=f"{call.key}-w", name="write", arguments='{"text": "x"}'),
                ]
            elif step == 2 and turn % 2 == 0 and mode != "final":
                yield [ToolCallDelta(index=0, id=f"{call.key}-h", name="hang", arguments="{}")]
            else:
                yield [TextDelta(text=f"answer {turn}")]
            yield [UsageDelta(usage=Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5))]

    async def approve_later(session, request):
        await anyio.sleep(0.015)  # the user takes a moment: the session waits in "attention"
        await session.approve(request)

    async def main():
        agent = Agent(Model(), tools=[fetch, hang, write])
        session = agent.session(id=sid, store=f"sqlite:///{db}", durability="effects", snapshot_every=7)
        try:
            await session.__aenter__()
        except SessionLockedError as exc:
            say("locked", exc.holder)
            return 3
        try:
            r = session.nucleus.restored
            digest = hashlib.sha256(msgspec.json.encode(r.state, order="deterministic")).hexdigest()
            say("restored", r.signal_seq, r.event_seq, digest)
            async with anyio.create_task_group() as tg, session.subscribe(buffer=100_000) as sub:
                for call in r.state.calls:
                    if call.status == "approval":
                        tg.start_soon(approve_later, session, call.key)
                if r.state.turn is None and not r.state.queue:
                    if r.state.turns >= target:
                        say("done", r.state.turns)
                        tg.cancel_scope.cancel()
                        return 0
                    await session.send(f"task {r.state.turns + 1}")
                async for envelope in sub:
                    event = envelope.event
                    phase = event.phase if isinstance(event, StateChanged) else "-"
                    say("ev", envelope.seq, type(event).__name__, phase)
                    if isinstance(event, ApprovalRequest):
                        tg.start_soon(approve_later, session, event.id)
                    elif isinstance(event, StateChanged) and event.phase == "idle":  # after turn_finished
                        if session.state.turns >= target:
                            say("done", session.state.turns)
                            tg.cancel_scope.cancel()
                            return 0
                        await anyio.sleep(0.015)  # idle between turns
                        await session.send(f"task {session.state.turns + 1}")
        finally:
            await session.__aexit__(None, None, None)

    sys.exit(anyio.run(main))
    '''
)


class Child:
    """A child process running ``CHILD``, its stdout read line by line by a thread."""

    def __init__(self, db: Path, log: Path, mode: str = "normal", target: int = 1000, sid: str = "s1") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(log), sid, mode, str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float) -> str | None:
        """The next line; ``""`` if none came within ``timeout``; ``None`` at the end of the output."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return ""

    def expect(self, word: str, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.line(deadline - time.monotonic())
            if line is None:
                break
            if line.split(" ", 1)[0] == word:
                return line.split(" ")
        self.kill()
        raise AssertionError(f"the child never said {word!r}; stderr:\n{self.stderr()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.proc.stderr.read()

    def close(self) -> None:
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.thread.join(timeout=5)


def reducer() -> TurnReducer:
    """The child's reducer (the tools' schemas and approvals are what its decisions depend on)."""

    @tool
    async def fetch(item: str) -> str:
        """Fetch an item (quick)."""
        return item

    @tool
    async def hang() -> str:
        """Wait forever."""
        return ""

    @tool(approval="ask")
    async def write(text: str) -> str:
        """Write (asks first)."""
        return text

    class Model:
        name = "crashy"

        def stream(self, call: Any) -> Any:  # never called
            raise AssertionError("no model here")

    return TurnReducer(Agent(Model(), tools=[fetch, hang, write]).turn_config)


def durable_log(db: Path) -> list[tuple[int, Signal]]:
    """The signals on disk, read with plain sqlite3 and decoded."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT seq, data FROM signals WHERE session = 's1' ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1)), "the log has a gap"
    return [(seq, CODEC.decode_signal(data)) for seq, data in rows]


def pure_state(db: Path) -> tuple[AgentState, int]:
    """The pure reduction of the durable prefix, and its length."""
    r = reducer()
    state = r.initial()
    log = durable_log(db)
    for _, sig in log:
        state = r(state, sig).state
    return state, len(log)


def canonical_digest(state: AgentState) -> str:
    """A digest of the state that does not depend on the process.

    ``codec.encode`` writes a frozenset (``resolved``, ``always``) in its iteration order,
    which follows the process's hash seed: two processes may encode equal states
    differently. ``order="deterministic"`` sorts sets (and dict keys).
    """
    return hashlib.sha256(msgspec.json.encode(state, order="deterministic")).hexdigest()


def tool_runs(log: Path) -> Counter[str]:
    return Counter(line.split(" ")[1] for line in log.read_text().splitlines()) if log.exists() else Counter()


def kill_in_phase(child: Child, phase: str, rng: random.Random) -> str:
    """Kill ``child`` a random moment after it entered ``phase`` (or went quiet); return the last phase it reported."""
    skip = rng.randint(0, 1)  # sometimes the second time it enters the phase
    last = "?"
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        line = child.line(0.3)
        if line is None:
            raise AssertionError(f"the child ended before it was killed; stderr:\n{child.stderr()}")
        if line == "":  # quiet: a tool waiting forever, or an approval being thought over
            break
        parts = line.split(" ")
        if parts[0] == "ev" and parts[2] == "StateChanged":
            last = parts[3]
            if last == phase:
                if not skip:
                    break
                skip -= 1
    time.sleep(rng.uniform(0.0, 0.012))
    child.kill()
    return last


def test_a_session_killed_at_random_points_restores_its_durable_prefix_and_continues(tmp_path: Path) -> None:
    start = time.monotonic()
    db = tmp_path / "sessions.db"
    log = tmp_path / "tools.log"
    rng = random.Random(SEED)
    interrupted_tools: dict[str, str] = {}  # key -> provider id of tools running at a kill
    model_calls: set[str] = set()  # model calls in flight at a kill
    approvals: dict[str, int] = {}  # approval requests pending at a kill -> durable signals then
    phases_seen: Counter[str] = Counter()
    expected: tuple[int, str] | None = None  # what the next child must restore

    for kill in range(KILLS):
        child = Child(db, log)
        try:
            restored = child.expect("restored")
            if expected is None:
                assert restored[1:3] == ["0", "0"]
            else:
                # (a) the child restored exactly the pure reduction of the durable prefix
                assert (int(restored[1]), restored[3]) == expected, f"kill {kill}"
            last = kill_in_phase(child, PHASES[kill % len(PHASES)], rng)
        finally:
            child.close()
        state, durable = pure_state(db)
        expected = (durable, canonical_digest(state))
        phases_seen[state.phase] += 1
        for call in state.calls:
            if call.status == "running":
                interrupted_tools[call.key] = call.id
            elif call.status == "approval":
                approvals.setdefault(call.key, durable)
        if state.call is not None:
            model_calls.add(state.call)
        runs = tool_runs(log)
        assert all(n == 1 for n in runs.values()), f"a tool ran twice after kill {kill} (last phase {last}): {runs}"

    # the kills landed in every phase of a turn
    assert {p for p in PHASES if phases_seen[p]} == set(PHASES), phases_seen
    assert interrupted_tools
    assert model_calls
    assert approvals

    # a last child, not killed, finishes the work (no more waiting-forever tools)
    state, _ = pure_state(db)
    child = Child(db, log, mode="final", target=state.turns + 1)
    try:
        restored = child.expect("restored")
        assert (int(restored[1]), restored[3]) == expected
        child.expect("done", timeout=15.0)
        assert child.proc.wait(timeout=10) == 0, child.stderr()
    finally:
        child.close()

    state, _ = pure_state(db)
    assert state.phase == "idle"
    assert state.turn is None
    _assert_history_valid(state.history)
    runs = tool_runs(log)
    assert all(n == 1 for n in runs.values()), runs  # (b) no tool ever ran twice
    assert all(runs[key] <= 1 for key in interrupted_tools)

    events = asyncio.run(_events(db))
    finished = [e for e in events if isinstance(e, TurnFinished)]
    assert [e.turn for e in finished] == [f"t{n}" for n in range(1, state.turns + 1)]  # one per turn
    assert {e.outcome for e in finished} == {"completed"}  # every turn went on to its end
    exits = {e.id: e.status for e in events if isinstance(e, ToolExit)}
    results = {e.id: e for e in events if isinstance(e, ToolResult)}
    for key, call_id in interrupted_tools.items():
        assert exits[call_id] == "interrupted", (key, exits.get(call_id))
        assert results[call_id].is_error
        assert "not run again" in results[call_id].content
    resumed = [e for e in events if isinstance(e, SessionResumed)]
    assert {e.model_call for e in resumed if e.model_call} >= model_calls  # said in the event...
    done = {sig.call for _, sig in durable_log(db) if isinstance(sig, ModelDone)}
    assert model_calls <= done  # ...and the call was made again, to the end
    answered = {e.id for e in events if isinstance(e, ApprovalResolved) and e.approved and e.how == "approved"}
    assert set(approvals) <= answered  # pending approvals were answered after the restart
    assert {p for e in resumed for p in e.pending} >= set(approvals)

    # the whole log, crashes and restarts included, replays to its stored events byte for byte
    assert asyncio.run(_verify(db)) is None
    assert time.monotonic() - start < 30


async def _events(db: Path) -> list[Any]:
    async with SQLiteStore(db) as store:
        return [CODEC.decode_event(r.data) for r in await store.events("s1")]


async def _verify(db: Path) -> Any:
    async with SQLiteStore(db) as store:
        r = reducer()
        return await verify(store, "s1", r, r.initial(), CODEC)


def _assert_history_valid(history: Any) -> None:
    """Every assistant message with tool calls is followed by one tool message per call id."""
    i = 0
    while i < len(history):
        message = history[i]
        assert message["role"] != "tool", f"message {i} answers no call"
        calls = message.get("tool_calls") if message["role"] == "assistant" else None
        if not calls:
            i += 1
            continue
        ids = sorted(call["id"] for call in calls)
        answers = history[i + 1 : i + 1 + len(ids)]
        assert [m["role"] for m in answers] == ["tool"] * len(ids), f"message {i}: {answers}"
        assert sorted(m["tool_call_id"] for m in answers) == ids
        i += 1 + len(ids)


def test_a_second_process_cannot_open_a_live_session_but_takes_over_a_killed_one(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    log = tmp_path / "tools.log"
    first = Child(db, log)
    try:
        first.expect("restored")
        second = Child(db, log)
        try:
            locked = second.expect("locked")
            assert locked[1].split(":")[1] == str(first.proc.pid)  # it names the holder
            assert second.proc.wait(timeout=10) == 3
        finally:
            second.close()
        assert first.proc.poll() is None  # the first one went on untroubled
    finally:
        first.close()  # SIGKILL: its lease is never released
    third = Child(db, log)
    try:
        assert third.expect("restored")[0] == "restored"  # the holder's pid is dead: taken over at once
    finally:
        third.close()
