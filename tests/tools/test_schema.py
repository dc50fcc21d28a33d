"""Schemas generated from signatures (snapshots) and docstring parsing."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from oturn import UsageError
from oturn.tools import Tool, ToolContext, parse_docstring, tool
from oturn.tools.schema import check_name, parameters_schema


class Unit(enum.Enum):
    """Temperature units."""

    CELSIUS = "c"
    FAHRENHEIT = "f"


class Address(BaseModel):
    street: str
    number: int | None = None


class Book(BaseModel):
    title: str = Field(description="The book's title.")
    tags: list[str] = []


# --------------------------------------------------------------------------- snapshots


def test_schema_snapshot_of_a_simple_function() -> None:
    @tool
    def get_weather(city: str, days: int = 1) -> str:
        """Current weather for a city.

        Uses the public forecast service.

        Args:
            city: The city name, e.g. "Paris".
            days: How many days to forecast.
        """
        return city

    assert get_weather.schema() == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"description": 'The city name, e.g. "Paris".', "type": "string"},
                    "days": {"default": 1, "description": "How many days to forecast.", "type": "integer"},
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }


def test_schema_snapshot_of_optional_literal_enum_list_and_nested_model() -> None:
    @tool
    def deliver(
        to: Address,
        items: list[str],
        unit: Unit = Unit.CELSIUS,
        speed: Literal["slow", "fast"] = "slow",
        note: Optional[str] = None,  # noqa: UP045 - Optional is part of what is tested
        ctx: ToolContext | None = None,
    ) -> None:
        """Deliver items."""

    assert deliver.parameters == {
        "type": "object",
        "properties": {
            "to": {"$ref": "#/$defs/Address"},
            "items": {"items": {"type": "string"}, "type": "array"},
            "unit": {"$ref": "#/$defs/Unit", "default": "c"},
            "speed": {"default": "slow", "enum": ["slow", "fast"], "type": "string"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["to", "items"],
        "additionalProperties": False,
        "$defs": {
            "Address": {
                "properties": {
                    "street": {"type": "string"},
                    "number": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
                },
                "required": ["street"],
                "type": "object",
            },
            "Unit": {"description": "Temperature units.", "enum": ["c", "f"], "type": "string"},
        },
    }


def test_schema_snapshot_of_a_function_without_parameters() -> None:
    @tool
    def now() -> str:
        """The current time."""
        return ""

    assert now.schema() == {
        "type": "function",
        "function": {
            "name": "now",
            "description": "The current time.",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    }


def test_schema_snapshot_of_the_class_form() -> None:
    class SearchBooks(Tool):
        """Search the catalogue."""

        class Args(BaseModel):
            """Not part of the schema: the tool description says what it does."""

            query: str = Field(description="Words to look for.")
            limit: int = Field(10, ge=1, le=100)
            like: Book | None = None

        def run(self, args: Args, ctx: ToolContext) -> list[str]:
            return []

    assert SearchBooks().schema() == {
        "type": "function",
        "function": {
            "name": "search_books",
            "description": "Search the catalogue.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"description": "Words to look for.", "type": "string"},
                    "limit": {"default": 10, "maximum": 100, "minimum": 1, "type": "integer"},
                    "like": {"anyOf": [{"$ref": "#/$defs/Book"}, {"type": "null"}], "default": None},
                },
                "required": ["query"],
                "additionalProperties": False,
                "$defs": {
                    "Book": {
                        "properties": {
                            "title": {"description": "The book's title.", "type": "string"},
                            "tags": {"default": [], "items": {"type": "string"}, "type": "array"},
                        },
                        "required": ["title"],
                        "type": "object",
                    }
                },
            },
        },
    }


def test_annotated_description_beats_the_docstring() -> None:
    @tool
    def pick(n: Annotated[int, Field(description="From the annotation.")], m: int = 0) -> int:
        """Pick.

        Args:
            n: From the docstring.
            m: Only in the docstring.
        """
        return n

    assert pick.parameters["properties"]["n"]["description"] == "From the annotation."
    assert pick.parameters["properties"]["m"]["description"] == "Only in the docstring."


def test_field_used_as_a_default_gives_default_and_description() -> None:
    @tool
    def paginate(
        size: int = Field(20, ge=1, description="Page size."), cursor: str = Field(description="Where.")
    ) -> int:
        """Paginate.

        Args:
            size: Overridden by the Field's own description.
        """
        return 0

    assert paginate.parameters == {
        "type": "object",
        "properties": {
            "size": {"default": 20, "description": "Page size.", "minimum": 1, "type": "integer"},
            "cursor": {"description": "Where.", "type": "string"},
        },
        "required": ["cursor"],
        "additionalProperties": False,
    }
    assert paginate.run(paginate.parse_arguments('{"cursor": "c"}'), ToolContext(tool_call_id="x")) == 0


def test_properties_named_title_and_defaults_holding_title_are_kept() -> None:
    @tool
    def publish(title: str, meta: dict[str, Any] = {"title": "x"}) -> None:  # noqa: B006 - never mutated
        """Publish."""

    properties = publish.parameters["properties"]
    assert properties["title"] == {"type": "string"}
    assert properties["meta"] == {"additionalProperties": True, "default": {"title": "x"}, "type": "object"}


def test_explicit_description_overrides_the_docstring() -> None:
    @tool(description="Explicit.")
    def f() -> None:
        """From the docstring."""

    assert f.description == "Explicit."


def test_function_without_docstring_has_an_empty_description() -> None:
    @tool
    def bare(x: int) -> int:
        return x

    assert bare.schema()["function"]["description"] == ""


def test_schema_returns_a_fresh_copy_each_time() -> None:
    @tool
    def f(x: int) -> int:
        return x

    first = f.schema()
    first["function"]["parameters"]["properties"]["x"]["type"] = "string"
    assert f.schema()["function"]["parameters"]["properties"]["x"]["type"] == "integer"


def test_parameters_schema_of_a_model_without_fields_still_has_properties() -> None:
    class Empty(BaseModel):
        pass

    assert parameters_schema(Empty) == {"type": "object", "properties": {}}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a", "get_weather", "run-shell", "X9", "_"])
def test_check_name_accepts_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "a.b", "a/b", "x" * 65, None, 3])
def test_check_name_refuses_invalid_names(name: object) -> None:
    with pytest.raises(UsageError, match="invalid tool name"):
        check_name(name)


# --------------------------------------------------------------------------- docstrings


def test_docstring_summary_is_the_first_paragraph_joined() -> None:
    doc = parse_docstring(
        """Fetch a page
        over HTTP.

        Follows redirects.
        """
    )
    assert doc.summary == "Fetch a page over HTTP."
    assert doc.params == {}


def test_empty_or_missing_docstring_gives_nothing() -> None:
    assert parse_docstring(None) == ("", {})
    assert parse_docstring("") == ("", {})


def test_google_args_with_types_and_continuation_lines() -> None:
    doc = parse_docstring(
        """Search.

        Args:
            query (str): What to look for;
                may span lines.
            limit: At most this many.
            *args: Ignored extras.

        Returns:
            The hits.
        """
    )
    assert doc.summary == "Search."
    assert doc.params == {
        "query": "What to look for; may span lines.",
        "limit": "At most this many.",
        "args": "Ignored extras.",
    }


def test_google_section_right_after_the_summary_ends_it() -> None:
    doc = parse_docstring(
        """Search the web.
        Args:
            q: The query.
        """
    )
    assert doc.summary == "Search the web."
    assert doc.params == {"q": "The query."}


def test_google_entries_may_contain_colons() -> None:
    doc = parse_docstring(
        """Open.

        Arguments:
            url: A URL such as https://example.com: any scheme.
        """
    )
    assert doc.params == {"url": "A URL such as https://example.com: any scheme."}


def test_sphinx_params_with_types_and_continuations() -> None:
    doc = parse_docstring(
        """Move a file.

        :param src: Where from.
        :param str dst: Where to,
            created if missing.
        :type dst: str
        :returns: Nothing.
        """
    )
    assert doc.summary == "Move a file."
    assert doc.params == {"src": "Where from.", "dst": "Where to, created if missing."}


def test_sphinx_field_right_after_the_summary_ends_it() -> None:
    doc = parse_docstring(
        """Delete.
        :param path: The file.
        """
    )
    assert doc.summary == "Delete."
    assert doc.params == {"path": "The file."}


def test_numpy_parameters_section() -> None:
    doc = parse_docstring(
        """Resize an image.

        Parameters
        ----------
        width : int
            New width in pixels.
        height : int, optional
            New height; keeps the
            aspect ratio when omitted.

        Returns
        -------
        bytes
        """
    )
    assert doc.summary == "Resize an image."
    assert doc.params == {"width": "New width in pixels.", "height": "New height; keeps the aspect ratio when omitted."}


def test_docstring_params_reach_the_schema_for_every_style() -> None:
    @tool
    def sphinx(a: int) -> int:
        """Do it.

        :param a: Sphinx says.
        """
        return a

    @tool
    def numpy(a: int) -> int:
        """Do it.

        Parameters
        ----------
        a : int
            NumPy says.
        """
        return a

    assert sphinx.parameters["properties"]["a"]["description"] == "Sphinx says."
    assert numpy.parameters["properties"]["a"]["description"] == "NumPy says."
