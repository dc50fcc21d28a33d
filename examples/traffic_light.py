"""A traffic light controller on the nucleus: a pure reducer, timers as effects, two subscribers.

The light cycles green → yellow → red. A pedestrian pressing the button during green
shortens it; a power fault switches to flashing yellow until power returns. The
controller is a pure reducer composed with an audit part that counts what happens;
the nucleus runs the timers and fans the events out to a display (``latest``: it
only cares about the newest light) and a log (``block``: it must see everything).

    python examples/traffic_light.py          # about two seconds of real time
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import anyio
import msgspec
from msgspec.structs import replace

import oturn
from oturn import Clock, Event, Signal, StartTimer, TimerFired, Transition

Light = Literal["off", "green", "yellow", "red", "flashing"]

DURATIONS: dict[str, float] = {"green": 0.5, "yellow": 0.15, "red": 0.4}  # seconds
SHORT_GREEN = 0.1
NEXT: dict[str, Light] = {"off": "green", "green": "yellow", "yellow": "red", "red": "green"}


class PedestrianButton(Signal, frozen=True, kw_only=True, tag="pedestrian_button"):
    """Someone wants to cross."""


class PowerFault(Signal, frozen=True, kw_only=True, tag="power_fault"):
    """Mains power lost: flash yellow."""


class PowerRestored(Signal, frozen=True, kw_only=True, tag="power_restored"):
    """Mains power is back: restart at red."""


class Start(Signal, frozen=True, kw_only=True, tag="start"):
    """Switch the light on."""


class LightChanged(Event, frozen=True, kw_only=True, tag="light_changed"):
    light: str
    reason: str
    cycle: int


class Walk(Event, frozen=True, kw_only=True, tag="walk"):
    allowed: bool


class State(msgspec.Struct, frozen=True, kw_only=True):
    light: Light = "off"
    cycle: int = 0
    waiting: bool = False


class Controller:
    """The light itself (a compose() part): phases, the phase timer, the button. Pure."""

    def __init__(self, cycles: int) -> None:
        self.cycles = cycles

    def initial(self) -> State:
        return State()

    def reduce(self, s: State, signal: Signal) -> Transition[State]:
        if isinstance(signal, Start) and s.light == "off":
            return self._go(s, "green", "switched on")
        if isinstance(signal, PowerFault):
            return self._go(s, "flashing", "power fault")
        if isinstance(signal, PowerRestored) and s.light == "flashing":
            return self._go(s, "red", "power restored")
        if isinstance(signal, PedestrianButton) and s.light == "green" and not s.waiting:
            # Restarting the phase timer with a shorter delay cuts green short.
            return Transition(replace(s, waiting=True), effects=[StartTimer(key="phase", delay=SHORT_GREEN)])
        if isinstance(signal, TimerFired) and signal.key == "phase" and s.light in NEXT:
            reason = "button" if s.light == "green" and s.waiting else "timer"
            return self._go(s, NEXT[s.light], reason)
        return Transition(s)

    def _go(self, s: State, light: Light, reason: str) -> Transition[State]:
        cycle = s.cycle + 1 if light == "green" else s.cycle
        if cycle > self.cycles:
            events: list[Event] = [LightChanged(light="off", reason="shift over", cycle=s.cycle)]
            if s.light == "red":
                events.append(Walk(allowed=False))
            return Transition(replace(s, light="off", waiting=False), events, terminal=True)
        events = [LightChanged(light=light, reason=reason, cycle=cycle)]
        if light == "red":
            events.append(Walk(allowed=True))
        elif s.light == "red":
            events.append(Walk(allowed=False))
        effects = [StartTimer(key="phase", delay=DURATIONS[light])] if light in DURATIONS else []
        return Transition(replace(s, light=light, cycle=cycle, waiting=False), events, effects=effects)


class Audit:
    """A second part with its own slice: counts signals by type (what a metrics part would do)."""

    def initial(self) -> tuple[tuple[str, int], ...]:
        return ()

    def reduce(self, counts: tuple[tuple[str, int], ...], signal: Signal) -> Transition[tuple[tuple[str, int], ...]]:
        seen = dict(counts)
        name = type(signal).__name__
        seen[name] = seen.get(name, 0) + 1
        return Transition(tuple(sorted(seen.items())))


async def main(clock: Clock | None = None, cycles: int = 2, out: Callable[[str], None] = print) -> oturn.ComposedState:
    """Run the light for ``cycles`` cycles, pressing the button once and cutting the power once."""
    reducer = oturn.compose(light=Controller(cycles), audit=Audit())
    clock = clock or oturn.SystemClock()
    async with oturn.Nucleus(reducer, reducer.initial(), clock=clock, session="crossing-1") as nucleus:
        display = nucleus.subscribe(policy="latest", types=[LightChanged])
        log = nucleus.subscribe(policy="block")

        async def write_log() -> None:
            async for envelope in log:
                event = envelope.event
                if isinstance(event, LightChanged):
                    out(f"{envelope.seq:3}  light -> {event.light:8} ({event.reason}, cycle {event.cycle})")
                elif isinstance(event, Walk):
                    out(f"{envelope.seq:3}  walk  -> {'WALK' if event.allowed else 'DONT WALK'}")

        async def traffic() -> None:
            await nucleus.send(Start())
            await clock.sleep(0.2)
            await nucleus.send(PedestrianButton())
            await clock.sleep(1.0)
            await nucleus.send(PowerFault())
            await clock.sleep(0.3)
            await nucleus.send(PowerRestored())

        async with anyio.create_task_group() as tg:
            tg.start_soon(write_log)
            tg.start_soon(traffic)
            await nucleus.wait_closed()
            tg.cancel_scope.cancel()
        last = display.get_nowait() if display.statistics().depth else None
        if last is not None and isinstance(last.event, LightChanged):
            out(f"display shows: {last.event.light} (it skipped {display.statistics().dropped} older updates)")
        out(f"signals seen: {dict(nucleus.state['audit'])}")
        return nucleus.state


if __name__ == "__main__":
    oturn.run(main)
