"""A tool's parameters: from a Python signature to a pydantic model, a JSON schema, and back.

- :func:`parse_docstring`: the summary and per-parameter descriptions of a docstring
  (Google ``Args:``, Sphinx ``:param x:`` and NumPy ``Parameters`` sections).
- :func:`signature_arguments`: a pydantic model of a function's parameters (the
  :class:`~oturn.tools.ToolContext` parameter left out), and how to call the function
  with a validated instance.
- :func:`parameters_schema`: a model's JSON schema, cleaned for function calling.
- :func:`validate_arguments`: the model's JSON arguments validated, or a
  :class:`~oturn.ToolArgumentsError` whose message tells the model what to fix.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import pydantic
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from oturn._exceptions import ToolArgumentsError, UsageError
from oturn.tools.context import ToolContext

__all__ = [
    "Docstring",
    "SignatureArguments",
    "check_name",
    "forbid_extra",
    "parameters_schema",
    "parse_docstring",
    "signature_arguments",
    "validate_arguments",
]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid tool name (``^[a-zA-Z0-9_-]{1,64}$``); raise :class:`~oturn.UsageError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(
            f"invalid tool name {name!r}: use 1 to 64 letters, digits, '_' or '-' (pass name=... to choose one)"
        )
    return name


# --------------------------------------------------------------------------- docstrings


class Docstring(NamedTuple):
    """What :func:`parse_docstring` found: the first paragraph and the parameter descriptions."""

    summary: str
    params: dict[str, str]


_GOOGLE_PARAMS = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters)\s*:\s*$"
)
_GOOGLE_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|Returns?|Yields?|"
    r"Raises|Examples?|Notes?|Attributes|Warnings?|See Also|Todo|References|Methods)\s*:\s*$"
)
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_FIELD = re.compile(r"^:(\w+)\b[^:]*:")
_SPHINX_PARAM = re.compile(r"^:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:\s*(.*)$")
_NUMPY_RULE = re.compile(r"^-{3,}\s*$")
_NUMPY_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?::.*)?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_section_start(lines: list[str], i: int) -> bool:
    stripped = lines[i].strip()
    if _GOOGLE_SECTION.match(stripped) or _SPHINX_FIELD.match(stripped):
        return True
    return i + 1 < len(lines) and bool(stripped) and bool(_NUMPY_RULE.match(lines[i + 1].strip()))


def parse_docstring(doc: str | None) -> Docstring:
    """Split a docstring into its first paragraph and its parameter descriptions.

    The summary is the first paragraph (up to a blank line or the first section),
    joined into one line. Parameters are read from Google (``Args:``), Sphinx
    (``:param name:``) and NumPy (``Parameters`` + ``----------``) sections;
    continuation lines are joined with spaces.
    """
    if not doc:
        return Docstring("", {})
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for i, line in enumerate(lines):
        if not line.strip() or _is_section_start(lines, i):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    _google_params(lines, params)
    _sphinx_params(lines, params)
    _numpy_params(lines, params)
    return Docstring(" ".join(summary), params)


def _google_params(lines: list[str], params: dict[str, str]) -> None:
    i = 0
    while i < len(lines):
        if not _GOOGLE_PARAMS.match(lines[i].strip()):
            i += 1
            continue
        header_indent = _indent(lines[i])
        entry_indent: int | None = None
        current: str | None = None
        i += 1
        while i < len(lines):
            line = lines[i]
            if line.strip() and _indent(line) <= header_indent:
                break
            if line.strip():
                if entry_indent is None:
                    entry_indent = _indent(line)
                match = _GOOGLE_ENTRY.match(line.strip()) if _indent(line) == entry_indent else None
                if match:
                    current = match.group(1)
                    params[current] = match.group(2).strip()
                elif current is not None:
                    params[current] = f"{params[current]} {line.strip()}".strip()
            i += 1


def _sphinx_params(lines: list[str], params: dict[str, str]) -> None:
    current: str | None = None
    field_indent = 0
    for line in lines:
        stripped = line.strip()
        match = _SPHINX_PARAM.match(stripped)
        if match:
            current = match.group(1)
            field_indent = _indent(line)
            params[current] = match.group(2).strip()
        elif current is not None and stripped and _indent(line) > field_indent and not stripped.startswith(":"):
            params[current] = f"{params[current]} {stripped}".strip()
        else:
            current = None


def _numpy_params(lines: list[str], params: dict[str, str]) -> None:
    for i in range(len(lines) - 1):
        if lines[i].strip() not in ("Parameters", "Other Parameters") or not _NUMPY_RULE.match(lines[i + 1].strip()):
            continue
        base = _indent(lines[i])
        current: str | None = None
        j = i + 2
        while j < len(lines):
            line = lines[j]
            if j + 1 < len(lines) and _NUMPY_RULE.match(lines[j + 1].strip()) and line.strip():
                break  # the next section's header
            if line.strip():
                match = _NUMPY_ENTRY.match(line.strip()) if _indent(line) <= base else None
                if match:
                    current = match.group(1)
                    params[current] = ""
                elif current is not None and _indent(line) > base:
                    params[current] = f"{params[current]} {line.strip()}".strip()
                else:
                    break
            j += 1


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True, slots=True)
class SignatureArguments:
    """A pydantic model of a function's parameters, and how to call the function with one.

    ``fields`` lists ``(model field, parameter name, positional only)`` in signature
    order; ``context`` names the parameter that receives the
    :class:`~oturn.tools.ToolContext` (``None`` if the function takes none).
    """

    model: type[BaseModel]
    fields: tuple[tuple[str, str, bool], ...]
    context: str | None
    context_positional: bool = False

    def call_arguments(self, args: BaseModel, ctx: ToolContext) -> tuple[list[Any], dict[str, Any]]:
        """The positional and keyword arguments to call the function with."""
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        for field, parameter, positional_only in self.fields:
            if positional_only:
                positional.append(getattr(args, field))
            else:
                keywords[parameter] = getattr(args, field)
        if self.context is not None:
            if self.context_positional:
                positional.append(ctx)  # positional-only parameters come first; it is the last of them
            else:
                keywords[self.context] = ctx
        return positional, keywords


def _is_context(annotation: Any) -> bool:
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(members) == 1 and _is_context(members[0])
    return isinstance(annotation, type) and issubclass(annotation, ToolContext)


def _has_description(annotation: Any) -> bool:
    if typing.get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in annotation.__metadata__)


def signature_arguments(
    fn: Callable[..., Any], *, tool_name: str, descriptions: Mapping[str, str] | None = None
) -> SignatureArguments:
    """Build the arguments model of ``fn``; raise :class:`~oturn.UsageError` for what cannot be described.

    Every parameter needs a type annotation; ``*args`` and ``**kwargs`` are refused.
    ``descriptions`` (from the docstring) fill in parameters whose annotation carries no
    ``Field(description=...)``. Model fields are named ``p0``, ``p1``, ... with the
    parameter names as aliases, so any parameter name works (``json``, ``model_id``, ...).
    """
    descriptions = descriptions or {}
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, SyntaxError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot read the signature of tool {tool_name!r}: {exc}") from exc
    definitions: dict[str, Any] = {}
    fields: list[tuple[str, str, bool]] = []
    context: str | None = None
    context_positional = False
    for parameter in signature.parameters.values():
        where = f"parameter {parameter.name!r} of tool {tool_name!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise UsageError(f"{where}: *args and **kwargs cannot be described to a model; name each parameter")
        if parameter.annotation is parameter.empty:
            raise UsageError(f"{where} has no type annotation")
        positional_only = parameter.kind is parameter.POSITIONAL_ONLY
        if _is_context(parameter.annotation):
            if context is not None:
                raise UsageError(f"{where}: tool {tool_name!r} takes more than one ToolContext parameter")
            context, context_positional = parameter.name, positional_only
            continue
        if context_positional and positional_only:
            raise UsageError(f"{where}: a positional-only ToolContext parameter must be the last positional-only one")
        field = f"p{len(fields)}"
        annotation, default = parameter.annotation, parameter.default
        if isinstance(default, FieldInfo):  # def f(x: int = Field(3, description=...))
            annotation, default = Annotated[annotation, default], parameter.empty
        info: dict[str, Any] = {"alias": parameter.name}
        if default is not parameter.empty:
            info["default"] = default
        if descriptions.get(parameter.name) and not _has_description(annotation):
            info["description"] = descriptions[parameter.name]
        definitions[field] = (annotation, pydantic.Field(**info))
        fields.append((field, parameter.name, positional_only))
    try:
        model = pydantic.create_model(tool_name, __config__=ConfigDict(extra="forbid"), **definitions)
        model.model_json_schema()
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot describe the parameters of tool {tool_name!r} as JSON schema: {exc}") from exc
    return SignatureArguments(model, tuple(fields), context, context_positional)


def forbid_extra(model: object) -> type[BaseModel]:
    """``model`` itself if its config says what to do with unknown fields; else a subclass that forbids them."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise UsageError(f"a tool's Args must be a pydantic BaseModel subclass, not {model!r}")
    return _forbid_extra(model)


@functools.cache
def _forbid_extra(model: type[BaseModel]) -> type[BaseModel]:
    if model.model_config.get("extra") is not None:
        return model
    namespace = {
        "model_config": ConfigDict(extra="forbid"),
        "__module__": model.__module__,
        "__qualname__": model.__qualname__,
        "__doc__": model.__doc__,
    }
    return types.new_class(model.__name__, (model,), {}, lambda ns: ns.update(namespace))


# --------------------------------------------------------------------------- JSON schema

_DATA_KEYS = frozenset({"default", "enum", "const", "examples"})
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
_FIRST_KEYS = ("type", "properties", "required", "additionalProperties", "$defs")


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _DATA_KEYS:
            cleaned[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            cleaned[key] = {name: _clean(schema) for name, schema in value.items()}
        else:
            cleaned[key] = _clean(value)
    return cleaned


def parameters_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``model`` for a function-calling ``parameters`` field.

    Pydantic's ``title`` keys are removed (property names called ``title`` are kept),
    and so is the model's own docstring (the tool's description says what it does);
    ``type: object`` and ``properties`` are always present, and the usual keys come
    first. ``$defs``/``$ref`` are kept for nested models and enums.
    """
    schema = _clean(model.model_json_schema())
    schema.pop("description", None)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    ordered = {key: schema.pop(key) for key in _FIRST_KEYS if key in schema}
    ordered.update(schema)
    return ordered


# --------------------------------------------------------------------------- validation

_MAX_PROBLEMS = 8
_MAX_SHOWN = 60


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(arguments)"


def _kind(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        return _kind(target, root) if isinstance(target, Mapping) else "object"
    if "enum" in schema:
        return "one of " + ", ".join(_shown(v) for v in schema["enum"])
    if "const" in schema:
        return _shown(schema["const"])
    if isinstance(schema.get("type"), str):
        return str(schema["type"])
    options = [_kind(option, root) for option in schema.get("anyOf", ()) if isinstance(option, Mapping)]
    return " or ".join(o for o in options if o)


def _expected(schema: Mapping[str, Any]) -> str:
    properties: Mapping[str, Any] = schema.get("properties", {})
    if not properties:
        return "Expected an empty JSON object: {}."
    required = set(schema.get("required", ()))
    described = []
    for name, prop in properties.items():
        notes = [n for n in (_kind(prop, schema), "required" if name in required else "") if n]
        described.append(f"{name} ({', '.join(notes)})" if notes else name)
    return "Expected a JSON object with: " + "; ".join(described) + "."


def _problem(error: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = _location(loc)
    kind = error["type"]
    properties: Mapping[str, Any] = schema.get("properties", {})
    if kind == "missing":
        prop = properties.get(loc[0]) if len(loc) == 1 else None
        expected = _kind(prop, schema) if isinstance(prop, Mapping) else ""
        return f"{where}: missing (required{', ' + expected if expected else ''})"
    if kind == "extra_forbidden":
        if len(loc) == 1:
            allowed = ", ".join(properties) or "none"
            return f"{where}: unexpected argument (accepted: {allowed})"
        return f"{where}: unexpected field"
    return f"{where}: {error['msg']} (got {_shown(error.get('input'))})"


def validate_arguments(model: type[BaseModel], arguments_json: str, *, tool_name: str) -> BaseModel:
    """Validate the JSON text ``arguments_json`` against ``model`` (``""`` means ``{}``).

    Raises :class:`~oturn.ToolArgumentsError` for invalid JSON, a JSON value that is
    not an object, and missing, unexpected or mistyped arguments, with a short message
    addressed to the model: which argument, what was wrong, what was expected.
    """
    text = arguments_json.strip() or "{}"
    intro = f"Invalid arguments for tool {tool_name!r}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = f": line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        schema = model.model_json_schema()
        raise ToolArgumentsError(
            f"{intro}: not valid JSON ({reason}{where}). {_expected(schema)}", tool=tool_name
        ) from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        schema = model.model_json_schema()
        raise ToolArgumentsError(f"{intro}: expected a JSON object, got {kind}. {_expected(schema)}", tool=tool_name)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        schema = model.model_json_schema()
        errors = exc.errors(include_url=False)
        problems = [_problem(error, schema) for error in errors[:_MAX_PROBLEMS]]
        if len(errors) > _MAX_PROBLEMS:
            problems.append(f"... and {len(errors) - _MAX_PROBLEMS} more")
        lines = "\n".join(f"- {p}" for p in problems)
        raise ToolArgumentsError(f"{intro}:\n{lines}\nFix these and call the tool again.", tool=tool_name) from None
