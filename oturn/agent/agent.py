"""``oturn.Agent``: the configuration of an LLM agent, and the factory of its sessions."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

from oturn._exceptions import UsageError
from oturn.agent.model import Model
from oturn.agent.session import Session
from oturn.agent.turn import InputPolicy, TimeoutOutcome, TurnConfig
from oturn.runtime.clock import Clock
from oturn.runtime.journal import Durability
from oturn.store.protocol import Store
from oturn.tools.approval import ApprovalPolicy
from oturn.tools.registry import ToolLike, ToolRegistry

__all__ = ["Agent"]


class Agent:
    """An LLM agent: a model, tools, approval rules and limits. Cheap to create; holds no connection.

    ::

        agent = oturn.Agent(
            model="openai/gpt-4o-mini",           # any LiteLLM model, or a Model object
            tools=[get_weather, run_shell],
            system="You are terse.",
            approvals={"run_shell": "ask", "*": "auto"},
            max_steps=50,
        )
        async with agent.session() as session:
            result = await session.run("What's the weather in Tokyo?")

    ``model`` may be a LiteLLM model name (``api_base``, ``api_key`` and
    ``model_timeout`` are passed to LiteLLM; the key is never logged) or any object
    with the :class:`~oturn.agent.model.Model` protocol, such as
    :class:`oturn.testing.FakeModel`.

    - ``llm_process``: where LiteLLM runs for a model name. ``True`` (the default on
      POSIX): in a worker process shared by the event loop's agents
      (:class:`~oturn.llm.process.LiteLLMProcessModel`), so that neither its import nor
      its per-chunk work ever stalls this event loop. ``False`` (the default on
      Windows): in this process (:class:`~oturn.llm.litellm.LiteLLMModel`; imported in
      a thread, but its import still holds the GIL for tens of milliseconds at a time).

    - ``approvals``: tool name or glob pattern → ``auto`` / ``ask`` / ``deny``; it
      overrides what tools declare themselves (``@tool(approval="ask")``).
    - ``input_policy``: input that arrives mid-turn is ``queue``-d, ``interrupt``-s the
      turn, or is ``reject``-ed.
    - ``approval_timeout``: seconds to wait for an answer (``None``: forever), then
      ``approval_timeout_outcome`` (``deny``, ``approve``, ``deny_and_stop``).
    - ``max_parallel_tools``: tool calls of one response run at once (tools declared
      ``sequential=True`` run alone); ``tool_timeout``: default seconds per tool call.
    - ``params``: sampling parameters for every model call (temperature, max_tokens, ...).
    """

    def __init__(
        self,
        model: str | Model,
        *,
        tools: Iterable[ToolLike] = (),
        system: str | None = None,
        approvals: Mapping[str, str] | None = None,
        max_steps: int = 50,
        input_policy: InputPolicy = "queue",
        max_parallel_tools: int = 8,
        tool_timeout: float | None = 60.0,
        approval_timeout: float | None = None,
        approval_timeout_outcome: TimeoutOutcome = "deny",
        params: Mapping[str, Any] | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        model_timeout: float = 120.0,
        llm_process: bool | None = None,
    ) -> None:
        if not isinstance(max_steps, int) or max_steps < 1:
            raise UsageError(f"max_steps is a whole number >= 1; got {max_steps!r}")
        if not isinstance(max_parallel_tools, int) or max_parallel_tools < 1:
            raise UsageError(f"max_parallel_tools is a whole number >= 1; got {max_parallel_tools!r}")
        if input_policy not in ("queue", "interrupt", "reject"):
            raise UsageError(f"input_policy is 'queue', 'interrupt' or 'reject'; got {input_policy!r}")
        if approval_timeout_outcome not in ("deny", "approve", "deny_and_stop"):
            raise UsageError(
                f"approval_timeout_outcome is 'deny', 'approve' or 'deny_and_stop'; got {approval_timeout_outcome!r}"
            )
        if approval_timeout is not None and not approval_timeout > 0:
            raise UsageError(f"approval_timeout is a number of seconds > 0 or None; got {approval_timeout!r}")
        self.registry = ToolRegistry(tools)
        policy = ApprovalPolicy.from_mapping(approvals or {}).with_tool_defaults(self.registry.approvals())
        if isinstance(model, str):
            if llm_process is None:
                llm_process = sys.platform != "win32"
            if llm_process:
                from oturn.llm.process import LiteLLMProcessModel

                self.model: Model = LiteLLMProcessModel(
                    model, api_base=api_base, api_key=api_key, timeout=model_timeout
                )
            else:
                from oturn.llm.litellm import LiteLLMModel

                self.model = LiteLLMModel(model, api_base=api_base, api_key=api_key, timeout=model_timeout)
            model_name = model
        elif isinstance(model, Model):
            given = [k for k, v in (("api_base", api_base), ("api_key", api_key), ("llm_process", llm_process)) if v]
            if given:
                raise UsageError(f"{', '.join(given)} only apply to a model name; set them on the Model object itself")
            self.model = model
            model_name = getattr(model, "name", type(model).__name__)
            if not isinstance(model_name, str) or not model_name:
                raise UsageError(
                    f"{type(model).__name__} has no model name to call: give it one, e.g."
                    f" {type(model).__name__}('openai/gpt-4o-mini', ...)"
                )
        else:
            raise UsageError(f"model is a LiteLLM model name or a Model object; got {model!r}")
        self.policy = policy
        self.tool_timeout = tool_timeout
        self.turn_config = TurnConfig(
            model=model_name,
            system=system,
            tools=tuple(self.registry.schemas()),
            sequential=frozenset(t.name for t in self.registry if t.sequential),
            decide=policy.decide,
            max_steps=max_steps,
            input_policy=input_policy,
            max_parallel_tools=max_parallel_tools,
            approval_timeout=approval_timeout,
            approval_timeout_outcome=approval_timeout_outcome,
            params=dict(params or {}),
        )

    def session(
        self,
        *,
        id: str | None = None,
        store: Store | str | None = None,
        durability: Durability | str = Durability.EFFECTS,
        snapshot_every: int = 1000,
        clock: Clock | None = None,
        inbox: int = 1024,
        history: int = 4096,
    ) -> Session:
        """A session; enter it with ``async with``.

        Without ``store`` it lives in memory only. With a store (a :class:`~oturn.store.Store`
        or a URL: ``"sqlite:///path.db"``, ``"memory://"``, ``"redis://..."``) every signal
        is logged and the session ``id`` can be reopened later, in this process or another:
        the state is restored from the log and whatever was in flight is settled (see
        :class:`~oturn.agent.signals.Resumed`). ``durability`` says when the log is
        written: ``"effects"`` (before any model call or tool starts), ``"every"`` signal,
        or ``"batched"``.
        """
        return Session(
            self,
            id=id,
            clock=clock,
            inbox=inbox,
            history=history,
            store=store,
            durability=durability,
            snapshot_every=snapshot_every,
        )

    def __repr__(self) -> str:
        return f"<Agent model={self.turn_config.model!r} tools={list(self.registry.names)!r}>"
