"""The tools an agent offers the model, by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from oturn._exceptions import UnknownToolError, UsageError
from oturn.tools.approval import Approval
from oturn.tools.tool import Tool, tool

__all__ = ["ToolLike", "ToolRegistry"]

ToolLike = Tool | type[Tool] | Callable[..., Any]
"""A :class:`Tool`, a ``Tool`` subclass (instantiated without arguments), or a function (wrapped by ``tool``)."""


def _as_tool(item: ToolLike) -> Tool:
    if isinstance(item, Tool):
        return item
    if isinstance(item, type):
        if issubclass(item, Tool):
            return item()
        raise UsageError(f"{item.__qualname__} is a class but not a Tool subclass")
    if callable(item):
        return tool(item)
    raise UsageError(f"not a tool: {item!r}")


class ToolRegistry:
    """An immutable, ordered collection of tools with unique names.

    ::

        registry = ToolRegistry([get_weather, RunShell, search])
        registry.schemas()        # for the model call's tools=
        registry.get("run_shell") # the Tool, or None
        "search" in registry      # True

    Plain functions are wrapped with :func:`~oturn.tools.tool`; ``Tool`` subclasses are
    instantiated. Two tools with one name raise :class:`~oturn.UsageError`.
    """

    __slots__ = ("_tools",)

    def __init__(self, tools: Iterable[ToolLike] = ()) -> None:
        if isinstance(tools, Tool) or callable(tools):
            raise UsageError("ToolRegistry takes a list of tools, e.g. ToolRegistry([my_tool])")
        by_name: dict[str, Tool] = {}
        for item in tools:
            entry = _as_tool(item)
            if entry.name in by_name:
                raise UsageError(f"two tools are named {entry.name!r}: {by_name[entry.name]!r} and {entry!r}")
            by_name[entry.name] = entry
        self._tools = by_name

    @property
    def names(self) -> tuple[str, ...]:
        """The tool names, in registration order."""
        return tuple(self._tools)

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        """The tool called ``name``; raises :class:`~oturn.UnknownToolError` (a ``LookupError``)."""
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(name, self.names) from None

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool's :meth:`~oturn.tools.Tool.schema`, in registration order (for ``tools=``)."""
        return [entry.schema() for entry in self._tools.values()]

    def approvals(self) -> dict[str, Approval]:
        """The tools' own approval rules, for those that declare one."""
        return {name: entry.approval for name, entry in self._tools.items() if entry.approval is not None}

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Tool):
            return self._tools.get(item.name) is item
        return isinstance(item, str) and item in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({list(self._tools)!r})"
