"""Tools: typed Python functions (``@tool``) or classes (``class X(Tool)``) a model can call.

::

    @tool
    async def get_weather(city: str, units: Literal["c", "f"] = "c") -> str:
        '''Current weather for a city.

        Args:
            city: The city name, e.g. "Paris".
            units: Temperature units.
        '''

    class RunShell(Tool):
        '''Run a shell command.'''

        name = "run_shell"
        approval = "ask"

        class Args(BaseModel):
            command: str = Field(description="The command line.")

        async def run(self, args: Args, ctx: ToolContext) -> str: ...

Both give a :class:`Tool` with a ``name``, a ``description``, a JSON schema of its
parameters (:meth:`Tool.schema`, in the OpenAI function-tool format), a validator for
the model's JSON arguments (:meth:`Tool.parse_arguments`), and ``run(args, ctx)``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import re
from collections.abc import Callable
from typing import Any, ClassVar, Generic, ParamSpec, Self, TypeVar, overload

from pydantic import BaseModel

from oturn._exceptions import UsageError
from oturn.tools.approval import Approval, check_approval
from oturn.tools.context import ToolContext
from oturn.tools.schema import (
    check_name,
    forbid_extra,
    parameters_schema,
    parse_docstring,
    signature_arguments,
    validate_arguments,
)

__all__ = ["FunctionTool", "NoArguments", "Tool", "tool"]

P = ParamSpec("P")
R = TypeVar("R")


class NoArguments(BaseModel, extra="forbid"):
    """The arguments of a tool that takes none."""


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _check_timeout(timeout: object, where: str) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout) or timeout <= 0:
        raise UsageError(f"{where}: timeout must be a positive number of seconds or None, not {timeout!r}")
    return float(timeout)


def _check_flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{where}: sequential must be True or False, not {value!r}")
    return value


def _check_not_generator(fn: Callable[..., Any], where: str) -> None:
    target = fn.func if isinstance(fn, functools.partial) else fn
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        raise UsageError(f"{where} is a generator; return the result instead (stream progress with ctx.progress)")


class Tool:
    """A tool a model can call. Subclass it (the class form) or use :func:`tool` on a function.

    Class attributes of the class form:

    - ``name``: 1 to 64 of ``[a-zA-Z0-9_-]``; defaults to the class name in snake_case
      (``RunShell`` → ``run_shell``), for every class that does not set its own.
    - ``description``: defaults to the first paragraph of the class docstring.
    - ``Args``: a pydantic model of the arguments (none by default). Unless its config
      says otherwise (``extra="allow"``/``"ignore"``), unknown arguments are refused.
    - ``timeout``: seconds, or ``None`` to use the runner's default.
    - ``sequential``: run alone, never beside other calls of the same response.
    - ``approval``: the tool's own approval rule (``"auto"``, ``"ask"``, ``"deny"``),
      overridden by the agent's :class:`~oturn.tools.ApprovalPolicy` mapping.
    - ``run(self, args, ctx)``: sync or async; gets the validated ``Args`` instance and
      a :class:`~oturn.tools.ToolContext`. Sync tools run in a worker thread.

    Everything is checked when the class is defined (:class:`~oturn.UsageError`).
    Intermediate base classes pass ``abstract=True``: ``class Base(Tool, abstract=True)``.
    """

    name: str
    description: str = ""
    timeout: float | None = None
    sequential: bool = False
    approval: Approval | None = None
    Args: ClassVar[type[BaseModel]] = NoArguments

    arguments_model: type[BaseModel]
    """The pydantic model the arguments are validated with."""

    _parameters: dict[str, Any]

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        own = cls.__dict__
        where = f"tool class {cls.__qualname__}"
        cls.name = check_name(own["name"] if "name" in own else _snake_case(cls.__name__))
        if "description" not in own:
            summary = parse_docstring(own.get("__doc__")).summary
            if summary:
                cls.description = summary
        if not isinstance(cls.description, str):
            raise UsageError(f"{where}: description must be a str, not {cls.description!r}")
        cls.timeout = _check_timeout(cls.timeout, where)
        cls.sequential = _check_flag(cls.sequential, where)
        if cls.approval is not None:
            cls.approval = check_approval(cls.approval, where=where)
        if cls.run is Tool.run:
            raise UsageError(f"{where} must define run(self, args, ctx)")
        _check_not_generator(cls.run, f"{where}.run")
        cls.arguments_model = forbid_extra(cls.Args)
        cls._parameters = parameters_schema(cls.arguments_model)

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        concrete = hasattr(cls, "_parameters") or issubclass(cls, FunctionTool)
        if not concrete:
            raise UsageError(f"{cls.__qualname__} is abstract: subclass Tool and define run(), or use @tool")
        return super().__new__(cls)

    @property
    def is_async(self) -> bool:
        """Whether :meth:`run` is a coroutine function (sync tools run in a worker thread)."""
        return inspect.iscoroutinefunction(type(self).run)

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments (a fresh copy)."""
        return copy.deepcopy(self._parameters)

    def schema(self) -> dict[str, Any]:
        """The tool in the OpenAI function-tool format (what LiteLLM takes in ``tools=``)::

        {"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}
        """
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def parse_arguments(self, arguments_json: str) -> BaseModel:
        """Validate the model's JSON arguments (``""`` means ``{}``) into an ``arguments_model`` instance.

        Raises :class:`~oturn.ToolArgumentsError` with a message written for the model.
        """
        return validate_arguments(self.arguments_model, arguments_json, tool_name=self.name)

    def run(self, args: Any, ctx: ToolContext) -> Any:
        """Do the work (override it; ``async def`` or plain ``def``) and return the result."""
        raise NotImplementedError

    def __repr__(self) -> str:
        details = ["async" if self.is_async else "sync"]
        if self.timeout is not None:
            details.append(f"timeout={self.timeout:g}")
        if self.sequential:
            details.append("sequential")
        if self.approval is not None:
            details.append(f"approval={self.approval}")
        return f"<{type(self).__name__} {self.name!r} ({', '.join(details)})>"


class FunctionTool(Tool, Generic[P, R], abstract=True):
    """A tool made from a function by :func:`tool`; calling it calls the function.

    The schema comes from the signature: every parameter needs a type annotation
    (defaults, ``Optional``, ``Literal``, enums, lists, nested pydantic models and
    ``Annotated[x, Field(description=...)]`` all work); a parameter annotated
    :class:`~oturn.tools.ToolContext` is injected at run time and left out of the
    schema. The description is the docstring's first paragraph; parameter descriptions
    come from its ``Args:`` (Google), ``:param x:`` (Sphinx) or ``Parameters`` (NumPy)
    section, unless the annotation has its own.
    """

    __name__: str  # copied from the function, like __doc__, __module__, __qualname__ and __wrapped__

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        sequential: bool = False,
        approval: Approval | None = None,
    ) -> None:
        if isinstance(fn, Tool) or not callable(fn):
            raise UsageError(f"@tool takes a function, not {fn!r}")
        functools.update_wrapper(self, fn)
        self.fn: Callable[P, R] = fn
        self.name = check_name(name if name is not None else getattr(fn, "__name__", None))
        where = f"tool {self.name!r}"
        _check_not_generator(fn, where)
        target = fn.func if isinstance(fn, functools.partial) else fn
        doc = parse_docstring(inspect.getdoc(target))
        self.description = doc.summary if description is None else description
        if not isinstance(self.description, str):
            raise UsageError(f"{where}: description must be a str, not {self.description!r}")
        self.timeout = _check_timeout(timeout, where)
        self.sequential = _check_flag(sequential, where)
        self.approval = None if approval is None else check_approval(approval, where=where)
        self._signature = signature_arguments(fn, tool_name=self.name, descriptions=doc.params)
        self.arguments_model = self._signature.model
        self._parameters = parameters_schema(self.arguments_model)
        call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__ is async too
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)

    @property
    def is_async(self) -> bool:
        """Whether the function is a coroutine function (sync ones run in a worker thread)."""
        return self._is_async

    @property
    def context_parameter(self) -> str | None:
        """The name of the parameter that receives the :class:`~oturn.tools.ToolContext`, if any."""
        return self._signature.context

    def run(self, args: Any, ctx: ToolContext) -> Any:
        """Call the function with the validated ``args`` (and ``ctx`` where it asks for it)."""
        positional, keywords = self._signature.call_arguments(args, ctx)
        return self.fn(*positional, **keywords)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the original function directly."""
        return self.fn(*args, **kwargs)


@overload
def tool(
    fn: Callable[P, R],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    sequential: bool = False,
    approval: Approval | None = None,
) -> FunctionTool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    sequential: bool = False,
    approval: Approval | None = None,
) -> Callable[[Callable[P, R]], FunctionTool[P, R]]: ...


def tool(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    sequential: bool = False,
    approval: Approval | None = None,
) -> FunctionTool[P, R] | Callable[[Callable[P, R]], FunctionTool[P, R]]:
    """Make a :class:`FunctionTool` from a typed function, sync or async.

    Use it bare (``@tool``) or with options (``@tool(name="search", timeout=30.0)``):

    - ``name``: defaults to the function's name.
    - ``description``: defaults to the docstring's first paragraph.
    - ``timeout``: seconds; ``None`` uses the runner's default.
    - ``sequential``: run alone, never beside other calls of the same response.
    - ``approval``: the tool's own rule (``"auto"``/``"ask"``/``"deny"``); the agent's
      :class:`~oturn.tools.ApprovalPolicy` mapping overrides it.

    The result is still callable like the function. Raises :class:`~oturn.UsageError`
    when the name is invalid or a parameter cannot be described as JSON schema.
    """

    def decorate(function: Callable[P, R]) -> FunctionTool[P, R]:
        return FunctionTool(
            function, name=name, description=description, timeout=timeout, sequential=sequential, approval=approval
        )

    if fn is None:
        return decorate
    return decorate(fn)
