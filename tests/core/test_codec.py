"""oturn.core.codec: a closed, typed wire format with the same bytes in every process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import msgspec
import pytest

from oturn import Codec, Effect, Event, Signal, UsageError
from oturn.core.builtins import EffectFailed, ErrorEvent, ErrorInfo, TimerFired


class Ping(Signal, frozen=True, kw_only=True, tag="cc_ping"):
    n: int


class Pinged(Event, frozen=True, kw_only=True, tag="cc_pinged"):
    n: int
    seen: frozenset[str] = frozenset()


class Fetch(Effect, frozen=True, kw_only=True, tag="cc_fetch"):
    url: str


class Clash(Signal, frozen=True, kw_only=True, tag="cc_ping"):
    other: int


class Box(msgspec.Struct, frozen=True, kw_only=True):
    names: frozenset[str] = frozenset()
    meta: dict[str, int] = {}


def codec() -> Codec[Box]:
    return Codec(signals=[Ping], events=[Pinged], effects=[Fetch], state=Box)


def test_signals_events_and_state_round_trip() -> None:
    c = codec()
    assert c.decode_signal(c.encode(Ping(n=3))) == Ping(n=3)
    assert c.decode_event(c.encode(Pinged(n=1, seen=frozenset({"a"})))) == Pinged(n=1, seen=frozenset({"a"}))
    box = Box(names=frozenset({"x", "y"}), meta={"b": 2, "a": 1})
    assert c.decode_state(c.encode(box)) == box


def test_the_nucleus_outcome_signals_and_error_events_are_always_known() -> None:
    c = codec()
    failed = EffectFailed(effect=Fetch(url="u"), error=ErrorInfo(type="OSError", message="down", kind="tool"))
    assert c.decode_signal(c.encode(failed)) == failed
    assert c.decode_signal(c.encode(TimerFired(key="t"))) == TimerFired(key="t")
    error = ErrorEvent(kind="reducer", message="boom", signal_seq=3, signal_type="Ping", fatal=False)
    assert c.decode_event(c.encode(error)) == error
    assert c.knows("cc_ping")
    assert c.knows("timer_fired")
    assert not c.knows("nope")


def test_a_record_of_an_unknown_type_is_reported_not_guessed() -> None:
    c = codec()
    with pytest.raises(msgspec.ValidationError, match="cc_unknown"):
        c.decode_signal(b'{"type":"cc_unknown","n":1}')
    with pytest.raises(msgspec.DecodeError):
        c.decode_event(b'{"type":"cc_pinged","n":')
    with pytest.raises(msgspec.ValidationError, match="int"):
        c.decode_signal(b'{"type":"cc_ping","n":"three"}')


def test_bad_declarations_raise_usage_error() -> None:
    with pytest.raises(UsageError, match="Signal subclasses"):
        Codec(signals=[Pinged], events=[Pinged])  # type: ignore[list-item]
    with pytest.raises(UsageError, match="Effect subclasses"):
        Codec(signals=[Ping], events=[Pinged], effects=[Ping])  # type: ignore[list-item]
    with pytest.raises(UsageError, match="share the tag"):
        Codec(signals=[Ping, Clash], events=[Pinged])


def test_sets_and_dict_keys_are_written_sorted() -> None:
    c = codec()
    data = c.encode(Box(names=frozenset({"c", "a", "b"}), meta={"z": 1, "a": 2}))
    assert data == b'{"names":["a","b","c"],"meta":{"a":2,"z":1}}'


def test_equal_values_give_the_same_bytes_under_every_hash_seed() -> None:
    script = textwrap.dedent(
        """
        import sys
        from oturn.agent.codec import agent_codec
        from oturn.agent.state import AgentState
        state = AgentState(resolved=frozenset(f"call-{i}" for i in range(50)),
                           always=frozenset({"read", "write", "grep", "ls"}))
        sys.stdout.buffer.write(agent_codec().encode(state))
        """
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=True, timeout=60)
        outputs.add(done.stdout)
    assert len(outputs) == 1
