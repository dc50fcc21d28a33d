"""``oturn chat --model PROVIDER/MODEL``: the demo's loop against a real model, through LiteLLM.

The provider's key comes from the environment as LiteLLM expects it (``OPENAI_API_KEY``,
``ANTHROPIC_API_KEY``, ...) or from ``--api-key-env NAME``; it is never printed. Type a
message and press Enter; ``/quit`` (or end of input) leaves; ``/cancel`` is not needed —
press Ctrl-C during a turn to cancel it. Tool calls that need approval are asked at the
terminal (y / n / always), or approved with ``--yes``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import zoneinfo
from collections.abc import Callable, Sequence
from typing import TextIO

import anyio

from oturn.agent.agent import Agent
from oturn.agent.events import ApprovalRequest
from oturn.runtime.run import run
from oturn.tools.tool import tool

__all__ = ["main"]


@tool
def current_time(timezone: str = "UTC") -> str:
    """The current date and time in a time zone.

    Args:
        timezone: An IANA time zone name such as "Europe/Paris" or "Asia/Tokyo".
    """
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {timezone!r}"
    return datetime.datetime.now(zone).isoformat(timespec="seconds")


async def _chat(args: argparse.Namespace, out: TextIO, read: Callable[[str], str]) -> int:
    from oturn._demo import transcript

    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    agent = Agent(
        args.model,
        tools=[current_time],
        system=args.system,
        api_base=args.api_base,
        api_key=api_key,
        max_steps=args.max_steps,
    )
    interactive = sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()
    out.write(f"oturn chat with {args.model} (Ctrl-C cancels a turn; /quit leaves)\n")
    async with agent.session(id=args.session, store=args.store) as session:

        async def ask(request: ApprovalRequest) -> None:
            if args.yes or not interactive:
                out.write(f"  ? {request.tool}({request.arguments}): approved (--yes)\n")
                await session.approve(request.id)
                return
            prompt = f"  ? {request.tool}({request.arguments}) needs your approval [y]es / [n]o / [a]lways: "
            while True:
                answer = (await anyio.to_thread.run_sync(read, prompt, abandon_on_cancel=True)).strip().lower()
                if answer in ("y", "yes", "a", "always"):
                    await session.approve(request.id, always=answer.startswith("a"))
                    return
                if answer in ("n", "no"):
                    await session.deny(request.id, "The user said no.")
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(transcript, session, ask, out, out.isatty())
            while True:
                try:
                    line = await anyio.to_thread.run_sync(read, "you> ", abandon_on_cancel=True)
                except EOFError:
                    break
                text = line.strip()
                if not text:
                    continue
                if text in ("/quit", "/exit"):
                    break
                try:
                    await session.run(text)
                except KeyboardInterrupt:
                    await session.cancel()
            tg.cancel_scope.cancel()
        usage = session.state.session_usage
        out.write(f"session usage: {usage.calls} call(s), {usage.prompt_tokens} + {usage.completion_tokens} tokens\n")
    return 0


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, read: Callable[[str], str] = input) -> int:
    """Run ``oturn chat``; ``argv`` as for the command line."""
    parser = argparse.ArgumentParser(prog="oturn chat", description=__doc__)
    parser.add_argument("--model", required=True, help="a LiteLLM model name, e.g. openai/gpt-4o-mini")
    parser.add_argument("--api-base", default=None, help="an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    parser.add_argument("--api-key-env", default=None, help="read the key from this environment variable")
    parser.add_argument("--system", default="You are a helpful, concise assistant.")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--yes", "-y", action="store_true", help="approve every tool call without asking")
    parser.add_argument("--store", default=None, help="keep the session in a store (e.g. sqlite:///chat.db)")
    parser.add_argument("--session", default=None, help="the session id (to continue a stored session)")
    args = parser.parse_args(list(argv) if argv is not None else [])
    stream = out if out is not None else sys.stdout

    async def go() -> int:
        return await _chat(args, stream, read)

    return run(go)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
