"""The agent against an OpenAI-compatible endpoint, through LiteLLM.

Any server that speaks the OpenAI chat-completions API (vLLM, llama.cpp's server,
Ollama, LM Studio, a corporate gateway, ...) is reached with an ``openai/<model>``
model name and ``api_base``. Without ``--api-base`` this starts oturn's fake
OpenAI-compatible server (``oturn.testing.OpenAIServer``) on 127.0.0.1 and talks to
it, so it runs offline with no key. LiteLLM runs on asyncio only (``oturn.run``'s
default); its import takes seconds, so ``prewarm()`` does it in a worker thread.

    python examples/openai_compatible_endpoint.py
    python examples/openai_compatible_endpoint.py --api-base http://localhost:8000/v1 --model openai/qwen3-8b
    OPENAI_API_KEY=... python examples/openai_compatible_endpoint.py --api-base https://... --model openai/...

The key comes from ``--api-key`` or the environment variable ``OPENAI_API_KEY``; it
is never printed.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import oturn
from oturn.agent.events import AssistantDelta, ToolCall, ToolResult, TurnFinished
from oturn.llm import prewarm
from oturn.testing import OpenAIServer


@oturn.tool
def get_weather(city: str, units: str = "celsius", days: list[int] | None = None) -> str:
    """The weather forecast for a city.

    Args:
        city: The city's name.
        units: "celsius" or "fahrenheit".
        days: Which days ahead (1 = tomorrow).
    """
    return f"{city}: 18 degrees {units}, light rain, for days {days or [1]}"


async def main(
    api_base: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    question: str = "What's the weather in Paris for the next three days?",
    max_steps: int = 4,
    out: Callable[[str], None] = print,
) -> TurnFinished:
    """Ask ``question`` at ``api_base`` (default: a fake server started here); return the ``turn_finished``."""
    if api_base is not None:
        return await ask(api_base, model or "openai/gpt-4o-mini", api_key, question, max_steps, out)
    async with OpenAIServer() as server:
        out(f"No --api-base: using oturn's fake OpenAI-compatible server at {server.base_url} (offline).")
        # The fake server plays the scenario named by the model: text, tool_calls, rate_limit, ...
        return await ask(server.base_url, model or "openai/text", "sk-fake-key", question, max_steps, out)


async def ask(
    api_base: str, model: str, api_key: str | None, question: str, max_steps: int, out: Callable[[str], None]
) -> TurnFinished:
    out(f"model {model} at {api_base}, API key {'given' if api_key else 'not set'}")
    await prewarm()  # import LiteLLM now, in a worker thread: the event loop never stalls on it
    agent = oturn.Agent(model, api_base=api_base, api_key=api_key, tools=[get_weather], max_steps=max_steps)
    async with agent.session() as session:
        events = session.subscribe(types=[AssistantDelta, ToolCall, ToolResult, TurnFinished])
        out(f"you> {question}")
        await session.send(question)
        parts: list[str] = []
        async for envelope in events:
            event = envelope.event
            if isinstance(event, AssistantDelta):
                parts.append(event.text)
            elif isinstance(event, ToolCall):
                out(f"  -> {event.name}({event.arguments})")
            elif isinstance(event, ToolResult):
                out(f"  <- {event.content}")
            elif isinstance(event, TurnFinished):
                out(f"assistant> {''.join(parts)}  ({len(parts)} deltas)")
                detail = f": {event.error.message}" if event.error else ""
                out(f"[{event.outcome}{detail}; {event.usage.total_tokens} tokens in {event.usage.calls} call(s)]")
                return event
    raise oturn.ClosedError("the session ended before the turn did")


def parse_args(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-base", help="the endpoint, e.g. http://localhost:8000/v1 (default: a fake server)")
    parser.add_argument("--model", help="openai/<model name at the endpoint>")
    parser.add_argument("--api-key", help="default: $OPENAI_API_KEY")
    parser.add_argument("--question", default="What's the weather in Paris for the next three days?")
    args = parser.parse_args(argv)
    key = args.api_key or os.environ.get("OPENAI_API_KEY")
    return {"api_base": args.api_base, "model": args.model, "api_key": key, "question": args.question}


if __name__ == "__main__":
    oturn.run(functools.partial(main, **parse_args()))
