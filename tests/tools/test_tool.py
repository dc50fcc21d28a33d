"""The @tool decorator, the class form, argument validation and ToolContext."""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Literal, cast

import pytest
from pydantic import BaseModel, ConfigDict, Field

from oturn import InvalidPolicyError, ToolArgumentsError, ToolError, UsageError
from oturn.tools import FunctionTool, NoArguments, Tool, ToolContext, tool


class Unit(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


class Point(BaseModel):
    x: int
    y: int = 0


@tool
def add(a: int, b: int = 1) -> int:
    """Add two numbers."""
    return a + b


@tool
async def shout(text: str) -> str:
    """Shout the text."""
    return text.upper()


@tool(name="weather", description="Look up the weather.", timeout=2.5, sequential=True, approval="ask")
def get_weather(city: str, units: Unit = Unit.CELSIUS) -> str:
    return f"{city}:{units.value}"


@tool
def plot(points: list[Point], label: str | None = None) -> int:
    """Plot points."""
    return len(points)


def strict_ctx() -> ToolContext:
    return ToolContext(tool_call_id="call-1", tool_name="t", session="s")


# --------------------------------------------------------------------------- decorator


def test_bare_decorator_keeps_the_function_callable() -> None:
    assert add(2, 3) == 5
    assert add(a=2) == 3
    assert isinstance(add, FunctionTool)
    assert add.name == "add"
    assert add.description == "Add two numbers."


@pytest.mark.anyio
async def test_decorated_async_function_is_still_awaitable_directly() -> None:
    assert await shout("hi") == "HI"


def test_decorator_keeps_the_function_metadata() -> None:
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 1) -> 'int'"


def test_decorator_options_are_applied() -> None:
    assert get_weather.name == "weather"
    assert get_weather.description == "Look up the weather."
    assert get_weather.timeout == 2.5
    assert get_weather.sequential is True
    assert get_weather.approval == "ask"
    assert get_weather("Oslo") == "Oslo:c"


def test_defaults_are_no_timeout_parallel_and_no_own_approval() -> None:
    assert add.timeout is None
    assert add.sequential is False
    assert add.approval is None


def test_tool_can_be_called_as_a_function_with_options() -> None:
    def double(x: int) -> int:
        return 2 * x

    wrapped = tool(double, name="twice")
    assert wrapped.name == "twice"
    assert wrapped(4) == 8


def test_is_async_tells_sync_and_async_tools_apart() -> None:
    assert shout.is_async is True
    assert add.is_async is False


def test_callable_object_with_async_call_is_async() -> None:
    class Fetcher:
        """Fetch a page."""

        async def __call__(self, url: str) -> str:
            return url

    fetch = tool(Fetcher(), name="fetch")
    assert fetch.is_async is True
    assert fetch.description == "Fetch a page."


def test_partial_takes_its_docstring_from_the_wrapped_function() -> None:
    def greet(greeting: str, name: str) -> str:
        """Greet someone."""
        return f"{greeting} {name}"

    hello = tool(functools.partial(greet, "hello"), name="hello")
    assert hello.description == "Greet someone."
    assert list(hello.parameters["properties"]) == ["name"]
    assert hello(name="Ann") == "hello Ann"


def test_repr_names_the_tool_and_its_options() -> None:
    assert repr(get_weather) == "<FunctionTool 'weather' (sync, timeout=2.5, sequential, approval=ask)>"
    assert repr(shout) == "<FunctionTool 'shout' (async)>"


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "dots.not.allowed", "ünïcode"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="invalid tool name"):
        tool(name=name)(add.fn)


@pytest.mark.parametrize("name", ["a", "A-b_9", "x" * 64])
def test_valid_names_are_accepted(name: str) -> None:
    assert tool(name=name)(add.fn).name == name


def test_lambda_needs_an_explicit_name() -> None:
    square: Callable[[int], int] = lambda x: x * x  # noqa: E731
    with pytest.raises(UsageError, match="pass name="):
        tool(square)


def test_parameter_without_annotation_is_refused() -> None:
    def untyped(x, y: int) -> int:  # type: ignore[no-untyped-def]
        return 0

    with pytest.raises(UsageError, match="'x' of tool 'untyped' has no type annotation"):
        tool(untyped)


def test_star_args_and_kwargs_are_refused() -> None:
    def star(*items: int) -> int:
        return 0

    def double_star(**options: int) -> int:
        return 0

    for fn in (star, double_star):
        with pytest.raises(UsageError, match=r"\*args and \*\*kwargs"):
            tool(fn)


def test_generators_are_refused() -> None:
    def numbers(n: int) -> Iterator[int]:
        yield n

    with pytest.raises(UsageError, match="generator"):
        tool(numbers)


class Opaque:
    pass


def test_parameter_types_without_json_schema_are_refused() -> None:
    def opaque(thing: Opaque) -> None:
        return None

    with pytest.raises(UsageError, match="cannot describe the parameters of tool 'opaque'"):
        tool(opaque)


def test_unresolvable_forward_reference_is_refused() -> None:
    def broken(x: DoesNotExist) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(UsageError, match="cannot read the signature of tool 'broken'"):
        tool(broken)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), True, "5"])
def test_invalid_timeouts_are_refused(timeout: Any) -> None:
    with pytest.raises(UsageError, match="timeout must be a positive number"):
        tool(timeout=timeout)(add.fn)


def test_non_bool_sequential_is_refused() -> None:
    with pytest.raises(UsageError, match="sequential must be True or False"):
        tool(sequential=cast(bool, 1))(add.fn)


def test_unknown_approval_is_refused() -> None:
    with pytest.raises(InvalidPolicyError, match="'maybe' is not one of"):
        tool(approval=cast(Literal["ask"], "maybe"))(add.fn)


def test_decorating_a_tool_again_is_refused() -> None:
    with pytest.raises(UsageError, match="takes a function"):
        tool(cast(Callable[[], None], add))


# --------------------------------------------------------------------------- ToolContext injection


def test_context_parameter_is_injected_and_left_out_of_the_schema() -> None:
    seen: list[ToolContext] = []

    @tool
    def note(text: str, ctx: ToolContext) -> str:
        seen.append(ctx)
        return text

    assert list(note.parameters["properties"]) == ["text"]
    assert note.context_parameter == "ctx"
    ctx = strict_ctx()
    assert note.run(note.parse_arguments('{"text": "hi"}'), ctx) == "hi"
    assert seen == [ctx]


def test_optional_context_parameter_is_injected_too() -> None:
    @tool
    def maybe(ctx: ToolContext | None = None) -> bool:
        return ctx is not None

    assert maybe.parameters["properties"] == {}
    assert maybe.run(maybe.parse_arguments(""), strict_ctx()) is True


def test_positional_only_parameters_and_context_are_passed_positionally() -> None:
    @tool
    def pos(a: int, ctx: ToolContext, /, b: int = 0) -> str:
        return f"{a}-{ctx.tool_call_id}-{b}"

    assert list(pos.parameters["properties"]) == ["a", "b"]
    assert pos.run(pos.parse_arguments('{"a": 1, "b": 2}'), strict_ctx()) == "1-call-1-2"


def test_two_context_parameters_are_refused() -> None:
    def twice(a: ToolContext, b: ToolContext) -> None:
        return None

    with pytest.raises(UsageError, match="more than one ToolContext"):
        tool(twice)


def test_parameters_may_shadow_pydantic_names() -> None:
    @tool
    def odd(json: str, model_config: int, schema: bool = False) -> str:
        return f"{json}{model_config}{schema}"

    args = odd.parse_arguments('{"json": "j", "model_config": 3}')
    assert odd.run(args, strict_ctx()) == "j3False"
    assert list(odd.parameters["properties"]) == ["json", "model_config", "schema"]


# --------------------------------------------------------------------------- class form


class RunShell(Tool):
    """Run a shell command.

    Only in the sandbox.
    """

    name = "run_shell"
    timeout = 10
    approval = "ask"

    class Args(BaseModel):
        command: str = Field(description="The command line.")
        cwd: str = "."

    async def run(self, args: Args, ctx: ToolContext) -> str:
        return f"$ {args.command} (in {args.cwd})"


class ListFiles(Tool):
    description = "List the files of a directory."

    class Args(BaseModel):
        path: str

    def run(self, args: Args, ctx: ToolContext) -> list[str]:
        return [args.path]


class Permissive(Tool):
    class Args(BaseModel):
        model_config = ConfigDict(extra="ignore")
        a: int

    def run(self, args: Args, ctx: ToolContext) -> int:
        return args.a


class Ping(Tool):
    def run(self, args: NoArguments, ctx: ToolContext) -> str:
        return "pong"


def test_class_form_takes_name_description_and_options_from_the_class() -> None:
    shell = RunShell()
    assert shell.name == "run_shell"
    assert shell.description == "Run a shell command."
    assert shell.timeout == 10.0
    assert shell.approval == "ask"
    assert shell.is_async is True
    assert shell.schema()["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "command": {"description": "The command line.", "type": "string"},
            "cwd": {"default": ".", "type": "string"},
        },
        "required": ["command"],
        "additionalProperties": False,
    }


def test_class_form_name_defaults_to_the_snake_cased_class_name() -> None:
    assert ListFiles.name == "list_files"
    assert ListFiles().description == "List the files of a directory."
    assert ListFiles().is_async is False


def test_class_form_without_args_takes_no_arguments() -> None:
    ping = Ping()
    assert ping.parameters == {"type": "object", "properties": {}, "additionalProperties": False}
    assert ping.parse_arguments("") == NoArguments()
    assert ping.run(NoArguments(), strict_ctx()) == "pong"
    with pytest.raises(ToolArgumentsError, match="unexpected argument"):
        ping.parse_arguments('{"x": 1}')


def test_class_form_args_refuse_unknown_fields_unless_configured() -> None:
    with pytest.raises(ToolArgumentsError, match="surprise: unexpected argument"):
        ListFiles().parse_arguments('{"path": ".", "surprise": 1}')
    args = Permissive().parse_arguments('{"a": 1, "surprise": 1}')
    assert args == Permissive.Args(a=1)


def test_class_form_validated_args_are_instances_of_the_declared_args() -> None:
    args = RunShell().parse_arguments('{"command": "ls"}')
    assert isinstance(args, RunShell.Args)
    assert args.command == "ls"


def test_class_without_run_is_refused_when_defined() -> None:
    with pytest.raises(UsageError, match="must define run"):

        class Lazy(Tool):
            pass


def test_class_with_invalid_name_is_refused_when_defined() -> None:
    with pytest.raises(UsageError, match="invalid tool name"):

        class Bad(Tool):
            name = "no spaces please"

            def run(self, args: NoArguments, ctx: ToolContext) -> None:
                return None


@pytest.mark.parametrize("args", [dict, Point(x=1), None])
def test_class_args_must_be_a_pydantic_model(args: Any) -> None:
    with pytest.raises(UsageError, match="must be a pydantic BaseModel"):

        class Bad(Tool):
            Args = args

            def run(self, args: Any, ctx: ToolContext) -> None:
                return None


def test_abstract_base_classes_are_allowed_but_cannot_be_instantiated() -> None:
    class Base(Tool, abstract=True):
        timeout = 3.0

    class Concrete(Base):
        def run(self, args: NoArguments, ctx: ToolContext) -> str:
            return "ok"

    assert Concrete().timeout == 3.0
    assert Concrete.name == "concrete"
    with pytest.raises(UsageError, match="abstract"):
        Base()
    with pytest.raises(UsageError, match="abstract"):
        Tool()


def test_sync_generator_run_is_refused() -> None:
    with pytest.raises(UsageError, match="generator"):

        class Gen(Tool):
            def run(self, args: NoArguments, ctx: ToolContext) -> Iterator[int]:
                yield 1


# --------------------------------------------------------------------------- argument validation


def test_empty_or_blank_arguments_mean_an_empty_object() -> None:
    ping = Ping()
    assert ping.parse_arguments("") == NoArguments()
    assert ping.parse_arguments("  \n") == NoArguments()
    with pytest.raises(ToolArgumentsError, match="a: missing"):
        add.parse_arguments("")


def test_valid_arguments_fill_in_defaults() -> None:
    args = add.parse_arguments('{"a": 2}')
    assert add.run(args, strict_ctx()) == 3


def test_invalid_json_is_reported_with_where_and_what_was_expected() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        add.parse_arguments('{"a": 1,')
    message = str(info.value)
    assert message.startswith("Invalid arguments for tool 'add': not valid JSON (")
    assert "line 1, column" in message
    assert "Expected a JSON object with: a (integer, required); b (integer)." in message
    assert info.value.tool == "add"


@pytest.mark.parametrize(
    ("text", "kind"),
    [("[1, 2]", "an array"), ('"a"', "a string"), ("3", "a number"), ("null", "null"), ("true", "a boolean")],
)
def test_non_object_json_is_reported(text: str, kind: str) -> None:
    with pytest.raises(ToolArgumentsError, match=f"expected a JSON object, got {kind}"):
        add.parse_arguments(text)


def test_missing_argument_names_the_field_and_its_type() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        add.parse_arguments('{"b": 2}')
    assert str(info.value) == (
        "Invalid arguments for tool 'add':\n- a: missing (required, integer)\nFix these and call the tool again."
    )


def test_extra_argument_lists_the_accepted_ones() -> None:
    with pytest.raises(ToolArgumentsError, match=r"- c: unexpected argument \(accepted: a, b\)"):
        add.parse_arguments('{"a": 1, "c": 3}')


def test_mistyped_argument_says_what_was_expected_and_what_came() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        add.parse_arguments('{"a": "three"}')
    assert '- a: Input should be a valid integer, unable to parse string as an integer (got "three")' in str(info.value)


def test_enum_and_literal_errors_list_the_allowed_values() -> None:
    with pytest.raises(ToolArgumentsError, match=r"units: Input should be 'c' or 'f' \(got \"k\"\)"):
        get_weather.parse_arguments('{"city": "x", "units": "k"}')


def test_nested_errors_give_the_path_inside_the_argument() -> None:
    with pytest.raises(ToolArgumentsError, match=r"- points\[1\]\.x: Input should be a valid integer"):
        plot.parse_arguments('{"points": [{"x": 1}, {"x": "no"}]}')
    with pytest.raises(ToolArgumentsError, match=r"- points\[0\]\.x: missing \(required\)"):
        plot.parse_arguments('{"points": [{}]}')


def test_long_inputs_are_shortened_in_messages() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        add.parse_arguments('{"a": "' + "x" * 500 + '"}')
    assert "…" in str(info.value)
    assert len(str(info.value)) < 250


def test_many_errors_are_capped() -> None:
    many = ", ".join(f'"extra{i}": {i}' for i in range(12))
    with pytest.raises(ToolArgumentsError, match=r"\.\.\. and 5 more"):
        add.parse_arguments("{" + many + "}")


def test_numbers_in_strings_are_accepted_as_models_often_send_them() -> None:
    assert add.run(add.parse_arguments('{"a": "2", "b": 3}'), strict_ctx()) == 5


def test_nested_models_are_passed_as_model_instances() -> None:
    args = plot.parse_arguments('{"points": [{"x": 1, "y": 2}]}')
    captured: list[Any] = []

    @tool
    def keep(points: list[Point]) -> None:
        captured.extend(points)

    keep.run(keep.parse_arguments('{"points": [{"x": 1, "y": 2}]}'), strict_ctx())
    assert captured == [Point(x=1, y=2)]
    assert plot.run(args, strict_ctx()) == 1


# --------------------------------------------------------------------------- ToolContext


@pytest.mark.anyio
async def test_context_progress_goes_to_the_sink() -> None:
    chunks: list[str] = []

    async def sink(text: str) -> None:
        chunks.append(text)

    ctx = ToolContext(tool_call_id="c", progress=sink)
    await ctx.progress("one")
    await ctx.progress("two")

    assert chunks == ["one", "two"]


@pytest.mark.anyio
async def test_context_progress_without_a_sink_is_discarded() -> None:
    await ToolContext(tool_call_id="c").progress("nobody listens")


@pytest.mark.anyio
async def test_context_choose_passes_a_sequence_as_value_to_value() -> None:
    asked: list[tuple[str, Mapping[str, str]]] = []

    async def ask(prompt: str, options: Mapping[str, str]) -> str:
        asked.append((prompt, dict(options)))
        return "b"

    ctx = ToolContext(tool_call_id="c", choose=ask)
    assert await ctx.choose("Pick one", ["a", "b"]) == "b"
    assert await ctx.choose("Pick", {"b": "Bee", "c": "Sea"}) == "b"

    assert asked == [("Pick one", {"a": "a", "b": "b"}), ("Pick", {"b": "Bee", "c": "Sea"})]


@pytest.mark.anyio
async def test_context_choose_without_a_user_raises_tool_error() -> None:
    with pytest.raises(ToolError, match="no user is attached"):
        await ToolContext(tool_call_id="c").choose("Pick", ["a"])


@pytest.mark.anyio
async def test_context_choose_rejects_an_answer_outside_the_options() -> None:
    async def ask(prompt: str, options: Mapping[str, str]) -> str:
        return "z"

    with pytest.raises(ToolError, match="'z' is not one of the options"):
        await ToolContext(tool_call_id="c", choose=ask).choose("Pick", ["a"])


@pytest.mark.parametrize("options", [[], "ab", ["a", "a"], [1], {"a": 2}])
@pytest.mark.anyio
async def test_context_choose_rejects_bad_options(options: Any) -> None:
    async def ask(prompt: str, options: Mapping[str, str]) -> str:
        raise AssertionError("must not be asked")

    with pytest.raises(UsageError):
        await ToolContext(tool_call_id="c", choose=ask).choose("Pick", options)


@pytest.mark.anyio
async def test_context_progress_rejects_non_text() -> None:
    with pytest.raises(UsageError, match="takes a str"):
        await ToolContext(tool_call_id="c").progress(cast(str, 42))


def test_context_repr_names_tool_call_and_session() -> None:
    assert repr(strict_ctx()) == "<ToolContext t call='call-1' session='s'>"


def test_annotated_field_constraints_are_enforced() -> None:
    @tool
    def limited(n: Annotated[int, Field(gt=0, le=10)]) -> int:
        return n

    assert limited.run(limited.parse_arguments('{"n": 10}'), strict_ctx()) == 10
    with pytest.raises(ToolArgumentsError, match="n: Input should be greater than 0"):
        limited.parse_arguments('{"n": 0}')
