"""ApprovalPolicy: exact names, glob patterns, the tools' own rules, and "always allow"."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oturn import InvalidPolicyError, UsageError
from oturn.tools import APPROVALS, ApprovalPolicy, ToolRegistry, tool
from oturn.tools.approval import check_approval


def test_nothing_configured_means_auto() -> None:
    assert ApprovalPolicy().decide("anything") == "auto"
    assert ApprovalPolicy.from_mapping({}).decide("anything") == "auto"


def test_the_example_mapping() -> None:
    policy = ApprovalPolicy.from_mapping({"run_shell": "ask", "fs_*": "deny", "*": "auto"})
    assert policy.decide("run_shell") == "ask"
    assert policy.decide("fs_write") == "deny"
    assert policy.decide("search") == "auto"


def test_exact_name_beats_any_pattern() -> None:
    policy = ApprovalPolicy.from_mapping({"fs_read_file_now*": "deny", "fs_read": "auto", "fs_*": "deny"})
    assert policy.decide("fs_read") == "auto"


def test_longest_matching_pattern_wins() -> None:
    policy = ApprovalPolicy.from_mapping({"fs_*": "deny", "fs_read*": "auto", "*_file": "ask"})
    assert policy.decide("fs_read_file") == "auto"
    assert policy.decide("fs_write_file") == "ask"  # "*_file" is longer than "fs_*"
    assert policy.decide("fs_write") == "deny"
    assert policy.decide("open_file") == "ask"


def test_equally_long_patterns_tie_towards_the_stricter_rule() -> None:
    assert ApprovalPolicy.from_mapping({"a_*": "auto", "*_b": "ask"}).decide("a_b") == "ask"
    assert ApprovalPolicy.from_mapping({"*_b": "deny", "a_*": "ask"}).decide("a_b") == "deny"


def test_question_mark_and_character_classes_are_patterns() -> None:
    policy = ApprovalPolicy.from_mapping({"tool_?": "ask", "v[12]": "deny"})
    assert policy.decide("tool_a") == "ask"
    assert policy.decide("tool_ab") == "auto"
    assert policy.decide("v2") == "deny"
    assert policy.decide("v3") == "auto"


def test_patterns_are_case_sensitive() -> None:
    policy = ApprovalPolicy.from_mapping({"FS_*": "deny"})
    assert policy.decide("fs_write") == "auto"


def test_default_can_be_given_as_a_star_rule_or_a_keyword() -> None:
    assert ApprovalPolicy.from_mapping({"*": "ask"}).default == "ask"
    assert ApprovalPolicy.from_mapping({}, default="deny").decide("x") == "deny"
    assert ApprovalPolicy({"*": "ask"}) == ApprovalPolicy(default="ask")


def test_star_rule_and_default_keyword_together_are_refused() -> None:
    with pytest.raises(InvalidPolicyError, match="not both"):
        ApprovalPolicy.from_mapping({"*": "ask"}, default="auto")


@pytest.mark.parametrize("value", ["maybe", "ASK", "", None, 1])
def test_unknown_values_are_refused(value: Any) -> None:
    with pytest.raises(InvalidPolicyError, match="is not one of 'auto', 'ask', 'deny'") as info:
        ApprovalPolicy.from_mapping({"x": value})
    assert isinstance(info.value, UsageError)
    assert isinstance(info.value, ValueError)


def test_unknown_default_is_refused() -> None:
    with pytest.raises(InvalidPolicyError):
        ApprovalPolicy(default="sometimes")


def test_empty_rule_names_are_refused() -> None:
    with pytest.raises(InvalidPolicyError, match="non-empty strings"):
        ApprovalPolicy.from_mapping({"": "ask"})


def test_tool_own_approval_applies_where_the_mapping_is_silent() -> None:
    policy = ApprovalPolicy.from_mapping({"*": "auto"}).with_tool_defaults({"rm": "ask"})
    assert policy.decide("rm") == "ask"
    assert policy.decide("ls") == "auto"


def test_mapping_exact_names_and_patterns_override_the_tool_own_approval() -> None:
    policy = ApprovalPolicy.from_mapping({"rm": "auto", "net_*": "deny"}).with_tool_defaults(
        {"rm": "ask", "net_get": "auto"}
    )
    assert policy.decide("rm") == "auto"
    assert policy.decide("net_get") == "deny"


def test_tool_own_approvals_come_from_the_registry() -> None:
    @tool(approval="deny")
    def drop_database() -> None:
        """Drop it."""

    policy = ApprovalPolicy().with_tool_defaults(ToolRegistry([drop_database]).approvals())
    assert policy.decide("drop_database") == "deny"


def test_with_tool_defaults_keeps_rules_and_default() -> None:
    base = ApprovalPolicy.from_mapping({"a": "ask"}, default="deny")
    derived = base.with_tool_defaults({"b": "auto"})
    assert derived.decide("a") == "ask"
    assert derived.decide("b") == "auto"
    assert derived.decide("c") == "deny"
    assert base.decide("b") == "deny"  # the original is unchanged


def test_invalid_tool_own_approval_is_refused() -> None:
    with pytest.raises(InvalidPolicyError):
        ApprovalPolicy().with_tool_defaults({"x": "perhaps"})


def test_always_allowed_turns_ask_into_auto() -> None:
    policy = ApprovalPolicy.from_mapping({"run_shell": "ask"})
    assert policy.decide("run_shell", frozenset({"run_shell"})) == "auto"
    assert policy.decide("run_shell", frozenset({"other"})) == "ask"


def test_always_allowed_never_lifts_a_deny() -> None:
    policy = ApprovalPolicy.from_mapping({"fs_*": "deny"})
    assert policy.decide("fs_write", frozenset({"fs_write"})) == "deny"
    assert policy.rule("fs_write") == "deny"


def test_rule_ignores_the_always_allowed_set() -> None:
    policy = ApprovalPolicy.from_mapping({"x": "ask"})
    assert policy.rule("x") == "ask"


def test_rules_and_repr_show_the_configuration() -> None:
    policy = ApprovalPolicy.from_mapping({"fs_*": "deny", "run": "ask"})
    assert policy.rules() == {"run": "ask", "fs_*": "deny", "*": "auto"}
    assert repr(policy) == "ApprovalPolicy({'run': 'ask', 'fs_*': 'deny', '*': 'auto'})"
    assert "tool_defaults={'x': 'ask'}" in repr(policy.with_tool_defaults({"x": "ask"}))


def test_policies_compare_by_value_and_are_unhashable() -> None:
    assert ApprovalPolicy.from_mapping({"a": "ask"}) == ApprovalPolicy({"a": "ask"})
    assert ApprovalPolicy.from_mapping({"a": "ask"}) != ApprovalPolicy({"a": "deny"})
    assert ApprovalPolicy() != cast(Any, "auto")
    with pytest.raises(TypeError):
        hash(ApprovalPolicy())


def test_check_approval_returns_valid_values() -> None:
    for value in APPROVALS:
        assert check_approval(value) == value
    with pytest.raises(InvalidPolicyError, match="my rule: 'no'"):
        check_approval("no", where="my rule")


_names = st.text(alphabet="ab_*?", min_size=1, max_size=5)
_rules = st.dictionaries(_names, st.sampled_from(APPROVALS), max_size=8)


@given(rules=_rules, tool_name=st.text(alphabet="ab_", min_size=1, max_size=5), data=st.data())
def test_the_order_of_the_mapping_never_changes_a_decision(
    rules: dict[str, str], tool_name: str, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(list(rules.items())))
    assert ApprovalPolicy(rules).decide(tool_name) == ApprovalPolicy(dict(shuffled)).decide(tool_name)


@given(rules=_rules, tool_name=st.text(alphabet="ab_", min_size=1, max_size=5))
def test_always_allowing_a_tool_gives_auto_unless_it_is_denied(rules: dict[str, str], tool_name: str) -> None:
    policy = ApprovalPolicy(rules)
    allowed = policy.decide(tool_name, frozenset({tool_name}))
    assert allowed == ("deny" if policy.rule(tool_name) == "deny" else "auto")
