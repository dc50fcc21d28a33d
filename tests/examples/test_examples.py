"""Every example in ``examples/`` runs and does what its docstring says; so does ``oturn demo``.

The examples are loaded from their files (``examples/`` is not a package) and their
``main`` is awaited with test-friendly arguments: a :class:`FakeClock` where time
matters (no real sleeping), ``out=`` collecting the printed lines. The LiteLLM example
runs against the fake OpenAI-compatible server (its first run pays LiteLLM's import).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

import oturn
from oturn import _demo
from oturn.agent.effects import CallModel
from oturn.testing import FakeClock, FakeModel, OpenAIServer
from oturn.testing.openai_server import DEFAULT_TEXT, TOOL_ARGUMENTS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TESTED = {
    "embed_asyncio",
    "openai_compatible_endpoint",
    "subscribers",
    "tool_with_approval",
    "traffic_light",
    "ui_and_logger",
}
"""The examples this module runs; a new example must get a test here."""


@functools.cache
def example(name: str) -> ModuleType:
    """The module ``examples/<name>.py``, imported once per test session."""
    spec = importlib.util.spec_from_file_location(f"oturn_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec and dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


# -- every example ---------------------------------------------------------------------------


def test_every_example_has_a_test() -> None:
    assert {path.stem for path in EXAMPLES.glob("*.py")} == TESTED


@pytest.mark.parametrize("name", sorted(TESTED))
def test_example_is_a_documented_script_with_an_async_main(name: str) -> None:
    module = example(name)
    assert f"python examples/{name}.py" in (module.__doc__ or "")
    assert inspect.iscoroutinefunction(module.main)
    assert "out" in inspect.signature(module.main).parameters
    assert 'if __name__ == "__main__":' in (EXAMPLES / f"{name}.py").read_text()


# -- the two original examples ---------------------------------------------------------------


async def test_traffic_light_on_virtual_time() -> None:
    lines: list[str] = []
    async with FakeClock() as clock:
        state = await example("traffic_light").main(clock=clock, out=lines.append)
    assert [line.split("(")[0].split()[1:] for line in lines[:11]] == [
        ["light", "->", "green"],
        ["light", "->", "yellow"],
        ["light", "->", "red"],
        ["walk", "->", "WALK"],
        ["light", "->", "green"],
        ["walk", "->", "DONT", "WALK"],
        ["light", "->", "flashing"],
        ["light", "->", "red"],
        ["walk", "->", "WALK"],
        ["light", "->", "off"],
        ["walk", "->", "DONT", "WALK"],
    ]
    assert "(button, cycle 1)" in lines[1]  # the pedestrian cut the first green short
    assert lines[11] == "display shows: off (it skipped 6 older updates)"
    assert state["light"].light == "off"
    assert dict(state["audit"]) == {
        "PedestrianButton": 1,
        "PowerFault": 1,
        "PowerRestored": 1,
        "Start": 1,
        "TimerFired": 5,
    }
    # green 0.3 (cut short), yellow 0.15, red 0.4, green until the fault at 1.2, flashing
    # until 1.5, red 0.4: the shift ends at 1.9 virtual seconds.
    assert clock.now() == pytest.approx(1.9)


async def test_subscribers_table_accounts_for_every_delta() -> None:
    lines: list[str] = []
    chunks = 200
    results = await example("subscribers").main(out=lines.append, chunks=chunks)
    total_chars = sum(len(f"w{i} ") for i in range(chunks))
    assert lines[0] == f"{chunks} deltas, {total_chars} characters; buffer 16 each (block: 256)"
    assert set(results) == {"block", "drop_oldest", "drop_newest", "coalesce", "latest", "disconnect"}
    block = results["block"]
    assert (block["received"], block["dropped"], block["merged"], block["chars"]) == (chunks, 0, 0, total_chars)
    for policy, r in results.items():
        assert r["received"] + r["dropped"] + r["merged"] + r["resumed"] == chunks, policy
    for policy in ("drop_oldest", "drop_newest", "latest"):
        assert results[policy]["dropped"] > 0, policy  # the burst really overflowed them
        assert results[policy]["chars"] < total_chars, policy
    assert results["coalesce"]["merged"] > 0
    assert results["coalesce"]["dropped"] == 0
    assert results["coalesce"]["chars"] == total_chars  # merged, not lost
    assert results["disconnect"]["resumed"] > 0
    assert results["disconnect"]["chars"] == total_chars  # caught up from its cursor
    assert results["latest"]["received"] <= results["drop_oldest"]["received"]


# -- embed_asyncio ---------------------------------------------------------------------------


async def test_embed_asyncio_serves_two_clients_at_once() -> None:
    m = example("embed_asyncio")
    lines: list[str] = []
    answers = await m.main(out=lines.append)
    assert answers == {name: [m.ANSWERS[q] for q in questions] for name, questions in m.QUESTIONS.items()}
    assert lines[0].startswith("[service] listening on 127.0.0.1:")
    assert sum("new connection" in line for line in lines) == 2
    assert any(line.endswith("(13 chunks, completed)") for line in lines)  # streamed, word by word


async def test_embed_asyncio_keeps_one_session_per_connection() -> None:
    def count_questions(call: CallModel) -> list[Any]:
        asked = sum(message["role"] == "user" for message in call.messages)
        return FakeModel.text(f"question {asked} of this conversation")

    model = FakeModel([count_questions] * 3, batch=False)
    answers = await example("embed_asyncio").main(
        model=model, questions={"a": ["x?", "y?"], "b": ["z?"]}, out=lambda line: None
    )
    assert answers == {
        "a": ["question 1 of this conversation", "question 2 of this conversation"],
        "b": ["question 1 of this conversation"],
    }
    model.assert_complete()
    assert all(call.messages[0] == {"role": "system", "content": "You answer in one sentence."} for call in model.calls)


async def test_embed_asyncio_line_protocol_streams_each_delta() -> None:
    m = example("embed_asyncio")
    lines: list[str] = []
    agent = oturn.Agent(FakeModel([FakeModel.text("one two three")], batch=False))
    service = m.ChatService(agent, lines.append)
    async with asyncio.TaskGroup() as connections:
        server = await asyncio.start_server(lambda r, w: connections.create_task(service.handle(r, w)), "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            writer.write(b"\n   \nhello?\n")  # blank lines are skipped
            await writer.drain()
            messages = [json.loads(await reader.readline()) for _ in range(4)]
            writer.close()
            await writer.wait_closed()
    assert messages == [{"delta": "one"}, {"delta": " two"}, {"delta": " three"}, {"done": "completed"}]
    assert lines == [
        "[service] new connection: session conn-1",
        "[service] connection closed: session conn-1 ran 1 turn(s)",
    ]


# -- tool_with_approval ----------------------------------------------------------------------


async def test_tool_with_approval_applies_every_decision() -> None:
    m = example("tool_with_approval")
    model = FakeModel(m.SCRIPT)
    lines: list[str] = []
    result = await m.main(model=model, out=lines.append)
    finished = result["finished"]
    assert (finished.outcome, finished.steps) == ("completed", 4)
    assert finished.text == "Done: hello.txt is written and tmp/ is clean."
    model.assert_complete()

    # The write ran with the edited arguments; "/" was not deleted; tmp/ was.
    assert result["disk"] == {"readme.md": "# project", "hello.txt": "Hello, world!"}
    assert [(d.id, d.how, d.approved) for d in result["decisions"]] == [
        ("t1.1.0", "approved", True),
        ("t1.1.1", "denied", False),
        ("t1.2.0", "always", True),  # and the delete of step 3 was not even asked
    ]
    assert sum("waits for approval" in line for line in lines) == 3

    history = result["history"]
    first = next(message for message in history if message.get("tool_calls"))
    calls = {call["function"]["name"]: json.loads(call["function"]["arguments"]) for call in first["tool_calls"]}
    assert calls["fs_write"] == {"path": "hello.txt", "text": "Hello, world!"}  # edited in the history too
    tool_messages = [message["content"] for message in history if message["role"] == "tool"]
    assert any("denied by the user. Never delete '/'" in content for content in tool_messages)
    assert any("shell_run is not allowed by the approval policy" in content for content in tool_messages)
    # What the model was sent for its second call: the edited call, the denial message.
    second_call = json.dumps(model.calls[1].messages)
    assert "Hello, world!" in second_call
    assert "Helo, wrld!" not in second_call
    assert "Never delete '/'" in second_call


# -- ui_and_logger ---------------------------------------------------------------------------


async def test_ui_and_logger_on_virtual_time() -> None:
    m = example("ui_and_logger")
    log = io.BytesIO()
    lines: list[str] = []
    async with FakeClock() as clock:
        result = await m.main(clock=clock, log=log, out=lines.append)
    assert clock.now() > 0  # the stream and the UI took (virtual) time
    finished = result["finished"]
    assert (finished.outcome, finished.text) == ("completed", m.ANSWER)

    records = [msgspec.json.decode(line) for line in log.getvalue().splitlines()]
    seqs = [record["seq"] for record in records]
    assert seqs == list(range(1, len(records) + 1)) == result["logger"]["seqs"]
    assert len(records) == result["published"]
    types = [record["event"]["type"] for record in records]
    assert types[0] == "message_sent"
    assert "turn_finished" in types
    published_deltas = [r["event"]["text"] for r in records if r["event"]["type"] == "assistant_delta"]
    assert "".join(published_deltas) == m.ANSWER

    ui = result["ui"]
    ui_stats = ui["statistics"]
    assert "".join(ui["updates"]) == ui["text"] == m.ANSWER
    assert (ui_stats.policy, ui_stats.dropped) == ("coalesce", 0)
    assert 1 < len(ui["updates"]) < len(published_deltas)  # slow: it got fewer, merged deltas
    assert len(ui["updates"]) + ui_stats.merged == len(published_deltas)
    logger_stats = result["logger"]["statistics"]
    assert (logger_stats.policy, logger_stats.delivered, logger_stats.dropped) == ("block", len(records), 0)
    assert "    merged deltas == final text: True" in lines
    assert any(line.startswith("logger: ") and line.endswith("no gap: True") for line in lines)


# -- openai_compatible_endpoint --------------------------------------------------------------


async def test_openai_compatible_endpoint_through_litellm() -> None:
    m = example("openai_compatible_endpoint")
    # Default: it starts the fake server itself and says so.
    lines: list[str] = []
    finished = await m.main(out=lines.append)
    assert (finished.outcome, finished.text) == ("completed", DEFAULT_TEXT)
    assert "fake OpenAI-compatible server at http://127.0.0.1:" in lines[0]
    assert "sk-fake-key" not in "\n".join(lines)

    # A given endpoint (here a fake server of the test's own), key and model; tool calls.
    key = "sk-example-test-5be1"
    lines = []
    async with OpenAIServer() as server:
        finished = await m.main(
            api_base=server.base_url, model="openai/tool_calls", api_key=key, max_steps=2, out=lines.append
        )
    assert finished.outcome == "max_steps"  # this scenario calls the tool every time
    assert [body["model"] for body in server.requests] == ["tool_calls", "tool_calls"]
    assert server.requests[0]["tools"][0]["function"]["name"] == "get_weather"
    assert all(headers["Authorization"] == f"Bearer {key}" for headers in server.request_headers)
    assert lines.count(f"  -> get_weather({TOOL_ARGUMENTS})") == 2  # assembled from streamed fragments
    assert "  <- Paris: 18 degrees celsius, light rain, for days [1, 2, 3]" in lines
    assert key not in "\n".join(lines)


def test_openai_compatible_endpoint_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = example("openai_compatible_endpoint").parse_args
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert parse([]) == {
        "api_base": None,
        "model": None,
        "api_key": "sk-from-env",
        "question": "What's the weather in Paris for the next three days?",
    }
    given = parse(["--api-base", "http://localhost:8000/v1", "--model", "openai/m", "--api-key", "sk-flag"])
    assert (given["api_base"], given["model"], given["api_key"]) == ("http://localhost:8000/v1", "openai/m", "sk-flag")
    monkeypatch.delenv("OPENAI_API_KEY")
    assert parse([])["api_key"] is None


# -- oturn demo ------------------------------------------------------------------------------


def run_demo(*argv: str, answers: tuple[str, ...] = ()) -> tuple[int, str, list[str]]:
    """Run ``oturn._demo.main``; returns its exit status, its output and the prompts it asked."""
    out = io.StringIO()
    prompts: list[str] = []
    replies: Iterator[str] = iter(answers)

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return next(replies)

    status = _demo.main(list(argv), out=out, read=read)
    assert next(replies, None) is None, "not every answer was used"
    return status, out.getvalue(), prompts


def test_demo_with_yes() -> None:
    status, text, prompts = run_demo("--yes", "--fast")
    assert status == 0
    assert prompts == []
    assert text.count("y (auto)") == 2
    assert "[turn t1 completed; 3 model call(s)" in text
    assert "[turn t2 completed; 3 model call(s)" in text
    assert "notes saved: 2" in text
    assert "No terminal" not in text  # --yes needs no excuse


def oturn_script() -> str:
    script = Path(sys.executable).with_name("oturn")
    return str(script) if script.exists() else shutil.which("oturn") or pytest.fail("no `oturn` console script")


def test_demo_console_script_without_a_terminal() -> None:
    done = subprocess.run(
        [oturn_script(), "demo", "--fast"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "No terminal to ask for approvals: approving them all (as with --yes)." in done.stdout
    assert done.stdout.count("y (auto)") == 2
    assert "notes saved: 2" in done.stdout


def test_demo_console_script_with_stdin_closed() -> None:
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" demo --fast <&-', oturn_script()], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "No terminal to ask for approvals" in done.stdout


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the demo believe it runs at a terminal (its answers come through ``read=``)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)


@pytest.mark.usefixtures("terminal")
def test_demo_interactive_yes() -> None:
    status, text, prompts = run_demo("--fast", answers=("maybe", "y", "yes"))
    assert status == 0
    assert len(prompts) == 3  # "maybe" is asked again
    assert all("save_note(" in prompt and "[y]es / [n]o / [a]lways" in prompt for prompt in prompts)
    assert text.count("[approved: approved]") == 2
    assert "notes saved: 2" in text


@pytest.mark.usefixtures("terminal")
def test_demo_interactive_no() -> None:
    status, text, prompts = run_demo("--fast", answers=("n", "no"))
    assert status == 0
    assert len(prompts) == 2
    assert text.count("[denied: denied]") == 2
    assert text.count("!! save_note: Error: the call was denied by the user. The user said no.") == 2
    assert "notes saved: 0" in text


@pytest.mark.usefixtures("terminal")
def test_demo_interactive_always() -> None:
    status, text, prompts = run_demo("--fast", answers=("always",))
    assert status == 0
    assert len(prompts) == 1  # the second note is allowed without asking
    assert "Tokyo" in prompts[0]
    assert text.count("[approved: always]") == 1
    assert "<- save_note: saved note #2" in text
    assert "notes saved: 2" in text
