"""``oturn demo``: an agent conversation that runs offline on the scripted model.

Two turns: the model reasons, answers, calls two tools in parallel, then asks to save
a note, which needs your approval at the terminal (y / n / always; ``--yes`` approves;
without a terminal it approves and says so). The second turn shows that "always"
lasts for the session. The transcript is printed live from a subscription; the usage
is printed at the end.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio

from oturn.agent.agent import Agent
from oturn.agent.events import (
    ApprovalRequest,
    ApprovalResolved,
    AssistantDelta,
    AssistantReasoningDelta,
    ChoiceRequest,
    Ignored,
    StateChanged,
    ToolCall,
    ToolOutput,
    ToolResult,
    TurnFinished,
)
from oturn.agent.session import Session
from oturn.agent.usage import Usage
from oturn.runtime.run import run
from oturn.testing.fake_model import FakeModel
from oturn.tools.tool import tool

__all__ = ["build_agent", "main", "transcript"]

_WEATHER = {"tokyo": "18 °C, light rain", "paris": "11 °C, clear skies"}
_TIME = {"tokyo": "21:40 (JST)", "paris": "13:40 (CET)"}


def _tools(notes: list[str]) -> list[Any]:
    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
            city: The city's name, e.g. "Tokyo".
        """
        return _WEATHER.get(city.lower(), "no data for that city")

    @tool
    async def get_time(city: str) -> str:
        """The local time in a city.

        Args:
            city: The city's name.
        """
        return _TIME.get(city.lower(), "unknown time zone")

    @tool(approval="ask")
    def save_note(text: str) -> str:
        """Save a note for the user (asks for approval).

        Args:
            text: What to write down.
        """
        notes.append(text)
        return f"saved note #{len(notes)}"

    return [get_weather, get_time, save_note]


def _script(pause: float) -> list[list[Any]]:
    F = FakeModel

    def live(*items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for group in items:
            for delta in group:
                out.append(delta)
                if pause:
                    out.append(F.delay(pause))
        return out

    return [
        live(
            F.reasoning("The user wants the weather and the local time in Tokyo. Both lookups are independent,"),
            F.reasoning(" so I can run them in parallel."),
            F.text("Let me look both up at once."),
            F.tool_call("get_weather", {"city": "Tokyo"}, id="call_w1", fragments=4),
            F.tool_call("get_time", {"city": "Tokyo"}, id="call_t1", fragments=3),
            F.usage(412, 61, cost=0.00041),
        ),
        live(
            F.text("I'll save that as a note for you."),
            F.tool_call("save_note", {"text": "Tokyo: 18 °C, light rain at 21:40 JST"}, id="call_n1", fragments=4),
            F.usage(520, 38, cost=0.00045),
        ),
        live(
            F.text("In Tokyo it is 21:40 and 18 °C with light rain; bring an umbrella. I saved a note."),
            F.usage(601, 27, cost=0.00049),
        ),
        live(
            F.reasoning("Same two lookups for Paris, then a note."),
            F.tool_call("get_weather", {"city": "Paris"}, id="call_w2", fragments=3),
            F.tool_call("get_time", {"city": "Paris"}, id="call_t2", fragments=2),
            F.usage(655, 40, cost=0.00052),
        ),
        live(
            F.tool_call("save_note", {"text": "Paris: 11 °C, clear skies at 13:40 CET"}, id="call_n2", fragments=3),
            F.usage(720, 30, cost=0.00055),
        ),
        live(
            F.text("Paris: 13:40 and 11 °C under clear skies. Noted as well."),
            F.usage(790, 22, cost=0.00058),
        ),
    ]


def build_agent(pause: float = 0.0, notes: list[str] | None = None) -> tuple[Agent, FakeModel]:
    """The demo agent on its scripted model (``pause`` seconds between streamed pieces)."""
    model = FakeModel(_script(pause), batch=pause == 0, name="scripted-demo-model")
    agent = Agent(
        model,
        tools=_tools(notes if notes is not None else []),
        system="You are a concise travel assistant.",
        approvals={"*": "auto"},
    )
    return agent, model


Answer = Callable[[ApprovalRequest], "anyio.abc.ObjectReceiveStream[str] | Any"]


async def transcript(
    session: Session,
    ask: Callable[[ApprovalRequest], Any],
    out: TextIO,
    color: bool = False,
) -> None:
    """Print the session's events as a live transcript; ``ask(request)`` answers approvals."""
    dim, bold, reset = ("\033[2m", "\033[1m", "\033[0m") if color else ("", "", "")
    at_line_start = True
    mode = ""

    def write(text: str) -> None:
        nonlocal at_line_start
        out.write(text)
        out.flush()
        if text:
            at_line_start = text.endswith("\n")

    def newline() -> None:
        nonlocal mode
        if not at_line_start:
            write("\n")
        mode = ""

    async with session.subscribe(policy="block") as events:
        async for envelope in events:
            event = envelope.event
            if isinstance(event, AssistantReasoningDelta):
                if mode != "reasoning":
                    newline()
                    write(f"{dim}  (thinking) ")
                    mode = "reasoning"
                write(event.text)
            elif isinstance(event, AssistantDelta):
                if mode != "text":
                    newline()
                    write(f"{reset}{bold}assistant>{reset} ")
                    mode = "text"
                write(event.text)
            elif isinstance(event, ToolCall):
                newline()
                write(f"  -> {event.name}({event.arguments})\n")
            elif isinstance(event, ToolOutput):
                newline()
                write(f"     {event.text}\n")
            elif isinstance(event, ToolResult):
                newline()
                mark = "!!" if event.is_error else "<-"
                write(f"  {mark} {event.name}: {event.content}\n")
            elif isinstance(event, ApprovalRequest):
                newline()
                await ask(event)
            elif isinstance(event, ApprovalResolved):
                newline()
                verdict = "approved" if event.approved else "denied"
                write(f"  {dim}[{verdict}: {event.how}]{reset}\n")
            elif isinstance(event, ChoiceRequest):
                newline()
                write(f"  ? {event.prompt} {list(event.options)}\n")
            elif isinstance(event, Ignored):
                newline()
                write(f"  {dim}[ignored {event.signal} {event.id}: {event.reason}]{reset}\n")
            elif isinstance(event, StateChanged) and event.phase == "error":
                newline()
            elif isinstance(event, TurnFinished):
                newline()
                if dim:
                    write(reset)
                detail = f" ({event.error.message})" if event.error else ""
                write(f"{dim}[turn {event.turn} {event.outcome}{detail}; {_usage_line(event.usage)}]{reset}\n\n")


def _usage_line(usage: Usage) -> str:
    cost = f", ${usage.cost:.5f}" if usage.cost is not None else ""
    return (
        f"{usage.calls} model call(s), {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens{cost}"
    )


async def _run(args: argparse.Namespace, out: TextIO, read: Callable[[str], str]) -> int:
    interactive = not args.yes and sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()
    notes: list[str] = []
    agent, model = build_agent(0.0 if args.fast else 0.015, notes)
    out.write("oturn demo: offline, on a scripted model (no key, no network).\n")
    if not interactive and not args.yes:
        out.write("No terminal to ask for approvals: approving them all (as with --yes).\n")
    out.write("\n")
    async with agent.session(id=args.session, store=args.store) as session:

        async def ask(request: ApprovalRequest) -> None:
            prompt = f"  ? {request.tool}({request.arguments}) needs your approval [y]es / [n]o / [a]lways: "
            if not interactive:
                out.write(prompt + "y (auto)\n")
                await session.approve(request.id)
                return
            while True:
                answer = (await anyio.to_thread.run_sync(read, prompt, abandon_on_cancel=True)).strip().lower()
                if answer in ("y", "yes"):
                    await session.approve(request.id)
                elif answer in ("a", "always"):
                    await session.approve(request.id, always=True)
                elif answer in ("n", "no"):
                    await session.deny(request.id, "The user said no.")
                else:
                    continue
                return

        async with anyio.create_task_group() as tg:
            tg.start_soon(transcript, session, ask, out, out.isatty())
            for question in (
                "What's the weather and the local time in Tokyo? Save a note for me.",
                "And in Paris?",
            ):
                out.write(f"you> {question}\n")
                await session.run(question)
            tg.cancel_scope.cancel()
        total = session.state.session_usage
        out.write(f"session usage: {_usage_line(total)}\n")
        out.write(f"notes saved: {len(notes)}\n")
    if args.store is not None:
        out.write(f"session {args.session!r} saved in {args.store}: oturn replay {args.session} --db {args.store}\n")
    model.assert_complete()
    return 0


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, read: Callable[[str], str] = input) -> int:
    """Run the demo; ``argv`` as for ``oturn demo`` (``--yes``, ``--fast``, ``--store URL``, ``--session ID``)."""
    parser = argparse.ArgumentParser(prog="oturn demo", description=__doc__)
    parser.add_argument("--yes", "-y", action="store_true", help="approve every request without asking")
    parser.add_argument("--fast", action="store_true", help="no pauses between streamed pieces")
    parser.add_argument("--store", metavar="URL", help="keep the session in this store (e.g. sqlite:///tmp/demo.db)")
    parser.add_argument("--session", metavar="ID", default="demo", help="the session id (default: demo)")
    args = parser.parse_args(list(argv) if argv is not None else [])
    if args.store is not None and "://" not in args.store:  # a SQLite file path
        args.store = "sqlite://" + str(Path(args.store).expanduser().absolute())
    stream = out if out is not None else sys.stdout

    async def go() -> int:
        return await _run(args, stream, read)

    return run(go)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
