"""Which tool calls run on their own, which wait for the user, and which are refused.

Pure: an :class:`ApprovalPolicy` is configuration, and :meth:`ApprovalPolicy.decide`
is a function of the tool name and the session's "always allow" set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Literal, TypeGuard

from oturn._exceptions import InvalidPolicyError

__all__ = ["APPROVALS", "Approval", "ApprovalPolicy", "check_approval"]

Approval = Literal["auto", "ask", "deny"]
"""``auto``: run without asking; ``ask``: wait for the user's decision; ``deny``: refuse."""

APPROVALS: tuple[Approval, ...] = ("auto", "ask", "deny")

_STRICTNESS: dict[Approval, int] = {"auto": 0, "ask": 1, "deny": 2}
_WILDCARDS = frozenset("*?[")
_CATCH_ALL = "*"


def _is_approval(value: object) -> TypeGuard[Approval]:
    return isinstance(value, str) and value in _STRICTNESS


def check_approval(value: object, *, where: str = "approval") -> Approval:
    """Return ``value`` if it is ``"auto"``, ``"ask"`` or ``"deny"``; raise :class:`~oturn.InvalidPolicyError`."""
    if not _is_approval(value):
        raise InvalidPolicyError(f"{where}: {value!r} is not one of 'auto', 'ask', 'deny'")
    return value


class ApprovalPolicy:
    """Per-tool approval rules, by exact name and by glob pattern (:func:`fnmatch.fnmatchcase`).

    ::

        policy = ApprovalPolicy.from_mapping({"run_shell": "ask", "fs_*": "deny", "*": "auto"})
        policy.decide("fs_write")  # "deny"

    The first of these that applies decides a tool's rule:

    1. the tool's **exact name** in the mapping;
    2. the **longest matching pattern** in the mapping (equal lengths: the stricter
       rule wins, ``deny`` over ``ask`` over ``auto``, so the order of the mapping
       never matters);
    3. the tool's **own** approval (``@tool(approval="ask")``), given with
       :meth:`with_tool_defaults`;
    4. the **default**: the mapping's bare ``"*"`` rule, else ``default=`` (``"auto"``).

    A bare ``"*"`` is thus the fallback for everything nothing more specific names —
    including the tools' own declarations — while any other pattern (``"fs_*"``)
    overrides them.

    :meth:`decide` then applies the session's "always allow" set: a tool in it is
    ``"auto"`` unless its rule is ``"deny"`` (a denial can never be allowed away).
    """

    __slots__ = ("_default", "_exact", "_patterns", "_tool_defaults")

    def __init__(
        self,
        rules: Mapping[str, str] | None = None,
        *,
        default: str | None = None,
        tool_defaults: Mapping[str, str] | None = None,
    ) -> None:
        exact: dict[str, Approval] = {}
        patterns: dict[str, Approval] = {}
        catch_all: Approval | None = None
        for key, value in (rules or {}).items():
            if not isinstance(key, str) or not key:
                raise InvalidPolicyError(f"approval rule names must be non-empty strings, got {key!r}")
            approval = check_approval(value, where=f"approval rule {key!r}")
            if key == _CATCH_ALL:
                catch_all = approval
            elif _WILDCARDS.intersection(key):
                patterns[key] = approval
            else:
                exact[key] = approval
        if catch_all is not None and default is not None:
            raise InvalidPolicyError("give the fallback either as a '*' rule or as default=, not both")
        if catch_all is not None:
            self._default: Approval = catch_all
        else:
            self._default = check_approval("auto" if default is None else default, where="default approval")
        self._exact = exact
        # Longest first; among equal lengths the stricter rule first; then by text (deterministic).
        self._patterns = tuple(sorted(patterns.items(), key=lambda kv: (-len(kv[0]), -_STRICTNESS[kv[1]], kv[0])))
        self._tool_defaults = {
            name: check_approval(value, where=f"approval of tool {name!r}")
            for name, value in (tool_defaults or {}).items()
        }

    @classmethod
    def from_mapping(cls, rules: Mapping[str, str], *, default: str | None = None) -> ApprovalPolicy:
        """Build a policy from ``{name or pattern: "auto" | "ask" | "deny"}``."""
        return cls(rules, default=default)

    @property
    def default(self) -> Approval:
        """The rule for tools that nothing more specific names."""
        return self._default

    def rules(self) -> dict[str, Approval]:
        """The mapping's rules (exact names, patterns, and ``"*"`` for the default)."""
        rules: dict[str, Approval] = {**self._exact, **dict(self._patterns)}
        rules[_CATCH_ALL] = self._default
        return rules

    def with_tool_defaults(self, tool_defaults: Mapping[str, str] | Iterable[tuple[str, str]]) -> ApprovalPolicy:
        """A copy that also knows the tools' own approvals (e.g. ``registry.approvals()``).

        These apply only where the mapping has no exact name or pattern for the tool.
        """
        merged: dict[str, str] = dict(self._tool_defaults)
        merged.update(tool_defaults)
        return ApprovalPolicy(self.rules(), tool_defaults=merged)

    def rule(self, tool_name: str) -> Approval:
        """The rule for ``tool_name``, before the session's "always allow" set is applied."""
        exact = self._exact.get(tool_name)
        if exact is not None:
            return exact
        for pattern, approval in self._patterns:
            if fnmatchcase(tool_name, pattern):
                return approval
        own = self._tool_defaults.get(tool_name)
        if own is not None:
            return own
        return self._default

    def decide(self, tool_name: str, always_allowed: frozenset[str] = frozenset()) -> Approval:
        """Decide a call of ``tool_name``: ``"auto"``, ``"ask"`` or ``"deny"``.

        ``always_allowed`` is the session's set of tools the user chose to always allow;
        it turns ``"ask"`` into ``"auto"`` but never lifts a ``"deny"``.
        """
        rule = self.rule(tool_name)
        if rule == "ask" and tool_name in always_allowed:
            return "auto"
        return rule

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApprovalPolicy):
            return NotImplemented
        return self.rules() == other.rules() and self._tool_defaults == other._tool_defaults

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        extra = f", tool_defaults={self._tool_defaults!r}" if self._tool_defaults else ""
        return f"ApprovalPolicy({self.rules()!r}{extra})"
