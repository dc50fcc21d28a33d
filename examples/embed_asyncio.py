"""An agent inside an existing asyncio application: a tiny streaming chat service.

The application is plain asyncio (``asyncio.run``, ``asyncio.start_server``,
``asyncio.TaskGroup``); oturn needs no runner of its own. The service speaks a line
protocol on 127.0.0.1: the client sends a question as one line and gets the answer
streamed back as JSON lines, one ``{"delta": ...}`` per ``assistant_delta`` event as
it is generated, then ``{"done": <outcome>}``. Each connection owns one agent
session, so a conversation remembers its earlier questions, and connections never
see each other's events. ``main`` starts the service on a free port and runs two
clients against it at once.

    python examples/embed_asyncio.py
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import oturn
from oturn.agent.effects import CallModel
from oturn.agent.events import AssistantDelta
from oturn.testing import FakeModel

QUESTIONS = {
    "alice": ["What is oturn?", "Does it need its own event loop?"],
    "bob": ["How are answers streamed?"],
}
ANSWERS = {
    "What is oturn?": "An embeddable runtime for turn-based agents.",
    "Does it need its own event loop?": "No: it runs on the event loop of the application that embeds it.",
    "How are answers streamed?": "Each assistant_delta event goes to the client as soon as it is published.",
}


def scripted_model(turns: int) -> FakeModel:
    """Answers the last user message from ANSWERS, word by word (``batch=False``: one delta per chunk)."""

    def reply(call: CallModel) -> list[Any]:
        return FakeModel.text(ANSWERS.get(call.messages[-1]["content"], "I don't know."))

    return FakeModel([reply] * turns, batch=False)


class ChatService:
    """The application's connection handler: one agent session per connection."""

    def __init__(self, agent: oturn.Agent, out: Callable[[str], None]) -> None:
        self.agent = agent
        self.out = out
        self.ids = itertools.count(1)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self.agent.session(id=f"conn-{next(self.ids)}") as session:
            self.out(f"[service] new connection: session {session.id}")
            while line := await reader.readline():
                question = line.decode().strip()
                if not question:
                    continue
                # This question's turn only, lossless: a slow client slows only its own session.
                async with session.stream(question, types=[AssistantDelta]) as turn:
                    async for envelope in turn:
                        delta = envelope.event
                        assert isinstance(delta, AssistantDelta)
                        writer.write(json.dumps({"delta": delta.text}).encode() + b"\n")
                        await writer.drain()
                outcome = turn.finished.outcome if turn.finished is not None else "closed"
                writer.write(json.dumps({"done": outcome}).encode() + b"\n")
                await writer.drain()
            self.out(f"[service] connection closed: session {session.id} ran {session.state.turns} turn(s)")
        writer.close()
        await writer.wait_closed()


async def ask(port: int, name: str, questions: Sequence[str], out: Callable[[str], None]) -> list[str]:
    """A client: asks its questions one by one, reading each streamed answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    for question in questions:
        writer.write(question.encode() + b"\n")
        await writer.drain()
        parts = []
        while "done" not in (message := json.loads(await reader.readline())):
            parts.append(message["delta"])
        answers.append("".join(parts))
        out(f"{name}> {question}\n{name}< {answers[-1]}  ({len(parts)} chunks, {message['done']})")
    writer.close()
    await writer.wait_closed()
    return answers


async def main(
    model: oturn.Model | None = None,
    questions: Mapping[str, Sequence[str]] = QUESTIONS,
    out: Callable[[str], None] = print,
) -> dict[str, list[str]]:
    """Start the service, run one client per entry of ``questions`` at once; return their answers."""
    turns = sum(len(q) for q in questions.values())
    agent = oturn.Agent(model or scripted_model(turns), system="You answer in one sentence.")
    service = ChatService(agent, out)
    # The application's task groups: one for the connections (each one a session), one
    # for the clients. Leaving a group waits for its tasks; an error in one cancels all.
    async with asyncio.TaskGroup() as connections:
        server = await asyncio.start_server(
            lambda reader, writer: connections.create_task(service.handle(reader, writer)), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        out(f"[service] listening on 127.0.0.1:{port}")
        async with server, asyncio.TaskGroup() as clients:
            asking = {name: clients.create_task(ask(port, name, qs, out)) for name, qs in questions.items()}
        # The server is closed; leaving `connections` waits until every session has ended.
    return {name: task.result() for name, task in asking.items()}


if __name__ == "__main__":
    asyncio.run(main())
