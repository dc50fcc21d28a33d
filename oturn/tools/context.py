"""What a running tool may use: its call id, the session, progress output and user choices.

A :class:`ToolContext` is built by whoever runs the tool (the agent's tool handler, a
test, your own loop) over two plain async callables, so this module knows nothing of
the nucleus: ``progress(text)`` publishes a ``tool_output`` chunk, and
``choose(prompt, options)`` asks the user and returns the chosen value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from oturn._exceptions import ToolError, UsageError

__all__ = ["ChoiceAsker", "ProgressSink", "ToolContext"]

ProgressSink = Callable[[str], Awaitable[None]]
"""``async def progress(text) -> None``: streams one chunk of a tool's output to subscribers."""

ChoiceAsker = Callable[[str, Mapping[str, str]], Awaitable[str]]
"""``async def choose(prompt, options) -> value``: ``options`` maps each value to its label."""


class ToolContext:
    """Handed to a tool that declares a parameter annotated ``ToolContext``.

    - ``tool_call_id``: the id of the call being run (the model's tool call id).
    - ``tool_name``: the name of the tool being run.
    - ``session``: the session (workstream) id.
    - ``await ctx.progress(text)``: stream a chunk of output (a ``tool_output`` event).
    - ``await ctx.choose(prompt, options)``: ask the user to pick one option; returns it.

    Both methods are async. A sync tool (which runs in a worker thread) calls them with
    ``anyio.from_thread.run(ctx.progress, "50%")``.

    Without a ``progress`` callable, progress is discarded; without a ``choose``
    callable, :meth:`choose` raises :class:`~oturn.ToolError` (nobody can answer).
    """

    __slots__ = ("_choose", "_progress", "session", "tool_call_id", "tool_name")

    def __init__(
        self,
        *,
        tool_call_id: str,
        tool_name: str = "",
        session: str = "",
        progress: ProgressSink | None = None,
        choose: ChoiceAsker | None = None,
    ) -> None:
        self.tool_call_id = tool_call_id
        self.tool_name = tool_name
        self.session = session
        self._progress = progress
        self._choose = choose

    async def progress(self, text: str) -> None:
        """Stream ``text`` as a chunk of this call's output (a ``tool_output`` event)."""
        if not isinstance(text, str):
            raise UsageError(f"progress() takes a str, not {type(text).__name__}")
        if self._progress is not None:
            await self._progress(text)

    async def choose(self, prompt: str, options: Sequence[str] | Mapping[str, str]) -> str:
        """Ask the user to choose one of ``options`` and wait for the answer.

        ``options`` is a sequence of values (each shown as itself) or a mapping of
        value → label. Returns the chosen value. Raises :class:`~oturn.UsageError` for
        empty, duplicate or non-string options and :class:`~oturn.ToolError` when no
        user is attached or the answer is not one of the options.
        """
        normalised = _normalise_options(options)
        if self._choose is None:
            raise ToolError("this tool asked the user to choose, but no user is attached to answer")
        answer = await self._choose(prompt, normalised)
        if answer not in normalised:
            raise ToolError(f"the answer {answer!r} is not one of the options {list(normalised)!r}")
        return answer

    def __repr__(self) -> str:
        return f"<ToolContext {self.tool_name or '?'} call={self.tool_call_id!r} session={self.session!r}>"


def _normalise_options(options: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(options, str):
        raise UsageError("choose() options must be a sequence or mapping of strings, not one string")
    if isinstance(options, Mapping):
        pairs = list(options.items())
    else:
        pairs = [(option, option) for option in options]
    if not pairs:
        raise UsageError("choose() needs at least one option")
    result: dict[str, str] = {}
    for value, label in pairs:
        if not isinstance(value, str) or not isinstance(label, str):
            raise UsageError(f"choose() options must be strings, got {value!r}: {label!r}")
        if value in result:
            raise UsageError(f"choose() got the option {value!r} twice")
        result[value] = label
    return result
