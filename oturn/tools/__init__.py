"""Tools and approvals: typed functions and classes a model can call, run safely, approved by policy."""

from oturn.tools.approval import APPROVALS, Approval, ApprovalPolicy
from oturn.tools.context import ChoiceAsker, ProgressSink, ToolContext
from oturn.tools.registry import ToolLike, ToolRegistry
from oturn.tools.runner import (
    DEFAULT_MAX_PARALLEL,
    DEFAULT_TOOL_TIMEOUT,
    ToolCall,
    ToolOutcome,
    ToolStatus,
    render_result,
    run_tool,
    run_tools,
    tool_batches,
)
from oturn.tools.schema import Docstring, parse_docstring
from oturn.tools.tool import FunctionTool, NoArguments, Tool, tool

__all__ = [
    "APPROVALS",
    "Approval",
    "ApprovalPolicy",
    "ChoiceAsker",
    "DEFAULT_MAX_PARALLEL",
    "DEFAULT_TOOL_TIMEOUT",
    "Docstring",
    "FunctionTool",
    "NoArguments",
    "ProgressSink",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolLike",
    "ToolOutcome",
    "ToolRegistry",
    "ToolStatus",
    "parse_docstring",
    "render_result",
    "run_tool",
    "run_tools",
    "tool",
    "tool_batches",
]
