"""A running agent session: the turn reducer on a nucleus, with the model and tool handlers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio

from oturn._exceptions import ClosedError, InputRejectedError, ToolError, UsageError
from oturn.agent.codec import agent_codec
from oturn.agent.deltas import AnyDelta
from oturn.agent.effects import CallModel, DeliverChoice, RunTool
from oturn.agent.events import TurnFinished
from oturn.agent.signals import (
    Approve,
    Cancel,
    CancelMode,
    ChoiceAsked,
    Choose,
    Deny,
    ModelDone,
    ModelStream,
    Resumed,
    ToolFinished,
    ToolProgress,
    UserInput,
)
from oturn.agent.state import AgentState
from oturn.agent.turn import TurnReducer
from oturn.agent.turn_stream import TurnStream
from oturn.core.messages import Event, Signal
from oturn.runtime.clock import Clock
from oturn.runtime.effects import EffectContext
from oturn.runtime.journal import Durability, Journal
from oturn.runtime.nucleus import Nucleus
from oturn.runtime.policy import Policy
from oturn.runtime.statistics import NucleusStatistics
from oturn.runtime.subscription import Subscription
from oturn.store.protocol import Store
from oturn.tools.context import ToolContext
from oturn.tools.runner import run_tool

if TYPE_CHECKING:
    from oturn.agent.agent import Agent

__all__ = ["InputRejectedError", "Session"]


class _Choice:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: str | None = None


class Session:
    """One conversation with an :class:`~oturn.Agent`; use it as ``async with agent.session() as session``.

    Everything it does goes through signals, so everything can be logged, replayed and
    answered from elsewhere: ``send`` (a :class:`~oturn.agent.signals.UserInput`),
    ``approve`` / ``deny`` / ``choose`` (answers to requests, by id), ``cancel``.
    ``subscribe`` gives the typed events in envelopes; ``run`` sends and waits for the
    turn's ``turn_finished``.
    """

    def __init__(
        self,
        agent: Agent,
        *,
        id: str | None = None,
        clock: Clock | None = None,
        inbox: int = 1024,
        history: int = 4096,
        store: Store | str | None = None,
        durability: Durability | str = Durability.EFFECTS,
        snapshot_every: int = 1000,
    ) -> None:
        self._agent = agent
        self._id = id or uuid.uuid4().hex[:12]
        self._reducer = TurnReducer(agent.turn_config)
        self._choices: dict[str, _Choice] = {}
        self._inputs = 0
        # Unique per Session object, so ids never collide with a restored log's.
        self._input_prefix = f"{self._id}-{uuid.uuid4().hex[:6]}-in"
        self._owned_store: Store | None = None
        journal: Journal[AgentState] | None = None
        if store is not None:
            if isinstance(store, str):
                from oturn.store.url import open_store

                store = self._owned_store = open_store(store)
            from oturn.store.sessions import agent_meta

            journal = Journal(
                store,
                self._id,
                agent_codec(),
                durability=durability,
                snapshot_every=snapshot_every,
                meta=agent_meta(agent),  # lets `oturn replay` rebuild this session's reducer
            )
        self._nucleus: Nucleus[AgentState] = Nucleus(
            self._reducer,
            self._reducer.initial(),
            handlers={CallModel: self._call_model, RunTool: self._run_tool, DeliverChoice: self._deliver_choice},
            clock=clock,
            session=self._id,
            inbox=inbox,
            history=history,
            journal=journal,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        if self._owned_store is not None:
            await self._owned_store.__aenter__()
        try:
            await self._nucleus.__aenter__()
        except BaseException:
            if self._owned_store is not None:
                with anyio.CancelScope(shield=True):
                    await self._owned_store.__aexit__(None, None, None)
            raise
        restored = self._nucleus.restored
        if restored is not None and not restored.fresh:
            state = self._nucleus.state
            if state.turn is not None or state.queue:
                await self._nucleus.send(Resumed())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        state = self._nucleus.state
        if exc_type is None and state.turn is not None and self._nucleus._journal is None and not self._nucleus.closed:
            # An in-memory session ends its running turn (one turn_finished per turn, always);
            # a stored one leaves it to be resumed when the session is opened again.
            await self._nucleus.send(Cancel(mode="immediate", turn=state.turn))
        try:
            return await self._nucleus.__aexit__(exc_type, exc, tb)
        finally:
            if self._owned_store is not None:
                with anyio.CancelScope(shield=True):
                    await self._owned_store.__aexit__(None, None, None)

    @property
    def restored(self) -> bool:
        """True when this session continued a log found in its store (not a new session)."""
        restored = self._nucleus.restored
        return restored is not None and not restored.fresh

    # -- what users do ------------------------------------------------------------------

    async def send(self, text: str, *, id: str | None = None) -> str:
        """Send a user message; returns its input id (echoed by ``message_sent``, ``turn_started``, ...)."""
        if not isinstance(text, str):
            raise UsageError(f"send() takes the message text (str); got {type(text).__name__}")
        input_id = id or self._next_input_id()
        await self._nucleus.send(UserInput(id=input_id, text=text))
        return input_id

    async def run(self, text: str, *, timeout: float | None = None) -> TurnFinished:  # noqa: ASYNC109
        """Send ``text`` and wait for its turn to finish; returns the ``turn_finished`` event.

        Raises :class:`InputRejectedError` if the input was not accepted and
        :class:`TimeoutError` when ``timeout`` seconds pass first (the wait stops; the
        turn goes on: use :meth:`cancel` to stop it).
        """
        with anyio.fail_after(timeout):
            async with self.stream(text, types=(TurnFinished,)) as turn:
                async for _ in turn:
                    pass
        if turn.finished is None:  # not reached: the stream ends at turn_finished or raises
            raise ClosedError("the session ended before the turn finished")
        return turn.finished

    def stream(
        self, text: str, *, types: Iterable[type[Event]] | None = None, buffer: int = 1024, id: str | None = None
    ) -> TurnStream:
        """Send ``text`` and iterate the envelopes of the turn it starts, up to its ``turn_finished``.

        ``async with session.stream("hi") as turn: async for envelope in turn: ...`` —
        see :class:`~oturn.agent.TurnStream`. The message is sent on entering the block;
        ``types=`` keeps only those event classes; ``buffer`` bounds the subscription
        (policy ``block``: nothing is lost, the session waits for a full reader).
        """
        if not isinstance(text, str):
            raise UsageError(f"stream() takes the message text (str); got {type(text).__name__}")
        input_id = id or self._next_input_id()

        def subscribe(kinds: tuple[type[Event], ...] | None) -> Subscription:
            return self._nucleus.subscribe(types=kinds, policy=Policy.BLOCK, buffer=buffer)

        async def send() -> None:
            await self.send(text, id=input_id)

        return TurnStream(subscribe, send, input_id, types)

    async def approve(self, request_id: str, *, arguments: str | None = None, always: bool = False) -> None:
        """Approve a pending request.

        ``arguments`` (a JSON object as text) replaces the call's arguments; ``always``
        allows the tool without asking for the rest of the session.
        """
        await self._nucleus.send(Approve(id=request_id, arguments=arguments, always=always))

    async def deny(self, request_id: str, message: str = "", *, stop: bool = False) -> None:
        """Deny a pending request; ``message`` goes to the model; ``stop`` ends the turn as ``denied``."""
        await self._nucleus.send(Deny(id=request_id, message=message, stop=stop))

    async def choose(self, request_id: str, value: str) -> None:
        """Answer a choice request with one of its option values."""
        await self._nucleus.send(Choose(id=request_id, value=value))

    async def cancel(self, mode: CancelMode = "immediate") -> bool:
        """Cancel the turn running now; returns False (and sends nothing) when no turn is running.

        The cancel names the turn, so it can never reach a turn that starts later (input
        queued behind it, or sent after this call).
        """
        if mode not in ("immediate", "after_step"):
            raise UsageError(f"cancel mode is 'immediate' or 'after_step'; got {mode!r}")
        turn = self._nucleus.state.turn
        if turn is None:
            return False
        await self._nucleus.send(Cancel(mode=mode, turn=turn))
        return True

    async def signal(self, signal: Signal) -> None:
        """Send any signal (e.g. one received from another process)."""
        await self._nucleus.send(signal)

    def subscribe(
        self,
        *,
        policy: Policy | str = Policy.BLOCK,
        buffer: int = 1024,
        types: Iterable[type[Event]] | None = None,
        from_seq: int | None = None,
    ) -> Subscription:
        """Subscribe to this session's envelopes (see :meth:`oturn.Nucleus.subscribe`)."""
        return self._nucleus.subscribe(policy=policy, buffer=buffer, types=types, from_seq=from_seq)

    # -- introspection ------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id (stamped on every envelope)."""
        return self._id

    @property
    def state(self) -> AgentState:
        """The reduced state (phase, history, pending calls, usage, ...)."""
        return self._nucleus.state

    @property
    def history(self) -> tuple[dict[str, Any], ...]:
        """The conversation in the OpenAI chat format."""
        return self._nucleus.state.history

    @property
    def nucleus(self) -> Nucleus[AgentState]:
        """The nucleus underneath (for statistics, history, advanced subscriptions)."""
        return self._nucleus

    def statistics(self) -> NucleusStatistics:
        """The nucleus counters."""
        return self._nucleus.statistics()

    def __repr__(self) -> str:
        state = self._nucleus.state
        return f"<Session {self._id} {state.phase} turns={state.turns} history={len(state.history)}>"

    def _next_input_id(self) -> str:
        self._inputs += 1
        return f"{self._input_prefix}{self._inputs}"

    # -- effect handlers ----------------------------------------------------------------

    async def _call_model(self, effect: CallModel, ctx: EffectContext[CallModel]) -> Signal:
        async for batch in self._agent.model.stream(effect):
            if batch:
                # Model.stream yields the concrete delta types (the AnyDelta union).
                await ctx.send(ModelStream(call=effect.key, deltas=cast("tuple[AnyDelta, ...]", tuple(batch))))
        return ModelDone(call=effect.key)

    async def _run_tool(self, effect: RunTool, ctx: EffectContext[RunTool]) -> Signal:
        asked = 0

        async def progress(text: str) -> None:
            await ctx.send(ToolProgress(call=effect.key, text=text))

        async def choose(prompt: str, options: Mapping[str, str]) -> str:
            nonlocal asked
            asked += 1
            request = f"{effect.key}.c{asked}"
            waiter = self._choices[request] = _Choice()
            try:
                await ctx.send(ChoiceAsked(id=request, call=effect.key, prompt=prompt, options=dict(options)))
                await waiter.event.wait()
            finally:
                self._choices.pop(request, None)
            if waiter.value is None:
                raise ToolError("the user did not answer the choice (the turn was cancelled)")
            return waiter.value

        tool_ctx = ToolContext(
            tool_call_id=effect.key, tool_name=effect.name, session=self._id, progress=progress, choose=choose
        )
        outcome = await run_tool(
            self._agent.registry, effect.name, effect.arguments, tool_ctx, default_timeout=self._agent.tool_timeout
        )
        return ToolFinished(
            call=effect.key, content=outcome.content, status=outcome.status, error_type=outcome.error_type
        )

    async def _deliver_choice(self, effect: DeliverChoice, ctx: EffectContext[DeliverChoice]) -> None:
        waiter = self._choices.get(effect.id)
        if waiter is not None:
            waiter.value = effect.value
            waiter.event.set()
