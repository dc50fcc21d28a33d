"""Tools that need the user's approval, answered from another task (as a UI would).

The agent edits an in-memory "disk". Approval policy: ``fs_write`` asks (the tool
class declares it), ``fs_delete`` asks (an exact rule), ``shell_*`` is refused without
asking (a glob rule), anything else runs. A "UI" task answers approval requests by
id: it approves the write with *edited* arguments (fixing the model's typos), denies
deleting ``/`` with a message the model reads, and allows deleting under ``tmp/``
"always", so the next delete runs without asking.

    python examples/tool_with_approval.py
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from pydantic import BaseModel, Field

import oturn
from oturn.agent import events as ev  # the typed events a session publishes
from oturn.testing import FakeModel

F = FakeModel
SCRIPT: list[list[Any]] = [  # what the model "says", one list per model call
    [
        F.text("I'll write the file, clear the disk and the cache."),
        F.tool_call("fs_write", {"path": "hello.txt", "text": "Helo, wrld!"}),
        F.tool_call("fs_delete", {"path": "/"}),
        F.tool_call("shell_run", {"command": "rm -rf /tmp/cache"}),
    ],
    [F.tool_call("fs_delete", {"path": "tmp/a.log"})],  # the model takes the hint
    [F.tool_call("fs_delete", {"path": "tmp/b.log"})],  # "always" allowed: no question this time
    [F.text("Done: hello.txt is written and tmp/ is clean.")],
]


class WriteFile(oturn.Tool):
    """Write a text file (asks first: ``approval = "ask"``)."""

    name = "fs_write"
    approval = "ask"

    class Args(BaseModel):
        path: str = Field(description="Where to write, e.g. notes/todo.txt.")
        text: str = Field(description="The whole new content.")

    def __init__(self, disk: dict[str, str]) -> None:
        self.disk = disk

    async def run(self, args: Args, ctx: oturn.ToolContext) -> str:
        self.disk[args.path] = args.text
        return f"wrote {len(args.text)} characters to {args.path}"


def make_tools(disk: dict[str, str]) -> list[Any]:
    @oturn.tool
    async def fs_delete(path: str) -> str:
        """Delete a file, or every file under a directory ("/" is everything)."""
        doomed = [p for p in disk if p == path or p.startswith(path.rstrip("/") + "/") or path == "/"]
        for p in doomed:
            del disk[p]
        return f"deleted {doomed}"

    @oturn.tool
    async def shell_run(command: str) -> str:
        """Run a shell command (never called here: the policy denies shell_*)."""
        return f"ran {command}"

    return [WriteFile(disk), fs_delete, shell_run]


async def ui(session: oturn.Session, requests: oturn.Subscription) -> None:
    """The user's side: answers each approval request by its id (from a task of its own)."""
    async for envelope in requests:
        request = envelope.event
        assert isinstance(request, ev.ApprovalRequest)
        args = json.loads(request.arguments)
        if request.tool == "fs_write":  # approve, but with the typos fixed
            await session.approve(request.id, arguments=json.dumps({**args, "text": "Hello, world!"}))
        elif args["path"].startswith("tmp/"):  # fine, and don't ask again for fs_delete
            await session.approve(request.id, always=True)
        else:
            await session.deny(request.id, "Never delete '/'; only files under tmp/.")


async def main(model: oturn.Model | None = None, out: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one turn; return its ``turn_finished``, the disk, the session history and the decisions."""
    disk = {"readme.md": "# project", "tmp/a.log": "...", "tmp/b.log": "..."}
    model = model or FakeModel(SCRIPT)
    agent = oturn.Agent(
        model,
        tools=make_tools(disk),
        approvals={"fs_delete": "ask", "shell_*": "deny", "*": "auto"},
    )
    decisions: list[ev.ApprovalResolved] = []
    finished: ev.TurnFinished | None = None
    async with agent.session(id="approvals") as session:
        # Subscribe before sending anything, so that no event can be missed.
        requests = session.subscribe(types=[ev.ApprovalRequest])
        transcript = session.subscribe()  # everything, lossless (policy "block")
        async with anyio.create_task_group() as tg:
            tg.start_soon(ui, session, requests)
            out("you> Write hello.txt and clean up.")
            await session.send("Write hello.txt and clean up.")
            async for envelope in transcript:  # print until the turn is over
                e = envelope.event
                if isinstance(e, ev.ToolCall):
                    out(f"  -> {e.name}({e.arguments})")
                elif isinstance(e, ev.ApprovalRequest):
                    out(f"  ?  {e.tool} waits for approval (request {e.id})")
                elif isinstance(e, ev.ApprovalResolved):
                    decisions.append(e)
                    note = f" ({e.message})" if e.message else ""
                    out(f"  {'ok' if e.approved else 'no'} {e.id} {e.how}: {e.arguments}{note}")
                elif isinstance(e, ev.ToolResult):
                    out(f"  {'!!' if e.is_error else '<-'} {e.name}: {e.content}")
                elif isinstance(e, ev.AssistantFinal):
                    out(f"assistant> {e.text}")
                elif isinstance(e, ev.TurnFinished):
                    out(f"[turn {e.outcome} after {e.steps} model calls] disk now: {sorted(disk)}")
                    finished = e
                    break
            tg.cancel_scope.cancel()  # stop the UI
        return {"finished": finished, "disk": disk, "history": session.history, "decisions": decisions}


if __name__ == "__main__":
    oturn.run(main)
