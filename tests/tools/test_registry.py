"""ToolRegistry: wrapping, unique names, lookup, schemas."""

from __future__ import annotations

from typing import Any, cast

import pytest

from oturn import UnknownToolError, UsageError
from oturn.tools import FunctionTool, NoArguments, Tool, ToolContext, ToolRegistry, tool


def echo(text: str) -> str:
    """Echo the text."""
    return text


@tool(approval="ask")
def remove(path: str) -> None:
    """Remove a file."""


class Clock(Tool):
    """Tell the time."""

    def run(self, args: NoArguments, ctx: ToolContext) -> str:
        return "noon"


def test_plain_functions_are_wrapped_and_classes_instantiated() -> None:
    registry = ToolRegistry([echo, remove, Clock])
    assert registry.names == ("echo", "remove", "clock")
    assert isinstance(registry["echo"], FunctionTool)
    assert registry["remove"] is remove
    assert isinstance(registry["clock"], Clock)


def test_tool_instances_are_kept_as_they_are() -> None:
    clock = Clock()
    assert ToolRegistry([clock])["clock"] is clock


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(UsageError, match="two tools are named 'echo'"):
        ToolRegistry([echo, tool(name="echo")(remove.fn)])


def test_schemas_are_listed_in_registration_order() -> None:
    schemas = ToolRegistry([remove, echo]).schemas()
    assert [s["function"]["name"] for s in schemas] == ["remove", "echo"]
    assert schemas[1] == tool(echo).schema()


def test_get_returns_none_for_an_unknown_name() -> None:
    registry = ToolRegistry([echo])
    assert registry.get("echo") is registry["echo"]
    assert registry.get("missing") is None


def test_indexing_an_unknown_name_raises_a_lookup_error_listing_the_tools() -> None:
    registry = ToolRegistry([echo, remove])
    with pytest.raises(UnknownToolError, match=r"Unknown tool 'missing'\. Available tools: echo, remove\.") as info:
        registry["missing"]
    assert isinstance(info.value, LookupError)
    assert info.value.available == ("echo", "remove")


def test_contains_accepts_names_and_the_registered_tool_objects() -> None:
    registry = ToolRegistry([remove])
    assert "remove" in registry
    assert remove in registry
    assert "echo" not in registry
    assert tool(name="remove")(remove.fn) not in registry
    assert cast(Any, 3) not in registry


def test_iteration_and_length_follow_registration_order() -> None:
    registry = ToolRegistry([Clock, echo])
    assert [t.name for t in registry] == ["clock", "echo"]
    assert len(registry) == 2
    assert len(ToolRegistry()) == 0


def test_approvals_lists_only_tools_that_declare_one() -> None:
    assert ToolRegistry([echo, remove, Clock]).approvals() == {"remove": "ask"}


def test_a_single_tool_instead_of_a_list_is_refused() -> None:
    with pytest.raises(UsageError, match="takes a list of tools"):
        ToolRegistry(cast(Any, echo))


def test_things_that_are_not_tools_are_refused() -> None:
    with pytest.raises(UsageError, match="not a Tool subclass"):
        ToolRegistry([cast(Any, dict)])
    with pytest.raises(UsageError, match="not a tool"):
        ToolRegistry([cast(Any, 42)])


def test_repr_lists_the_names() -> None:
    assert repr(ToolRegistry([echo, Clock])) == "ToolRegistry(['echo', 'clock'])"
