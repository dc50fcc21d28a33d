"""Signals, events and effects as tagged, frozen, keyword-only msgspec Structs; the wire
registry (``wire_types``) and typed decoders built from it; envelopes on the wire."""

from __future__ import annotations

from typing import Any, Union

import msgspec
import pytest

from oturn import (
    Effect,
    EffectCompleted,
    Envelope,
    ErrorEvent,
    Event,
    Signal,
    StartTimer,
    TimerFired,
)
from oturn.core import Message, wire_types


class Note(Event, frozen=True, kw_only=True, tag="tm_note"):
    text: str
    tags: tuple[str, ...] = ()


class LoudNote(Note, frozen=True, kw_only=True, tag="tm_loud_note"):
    volume: int = 11


class Untagged(Event, frozen=True, kw_only=True):
    n: int


class UntaggedChild(Untagged, frozen=True, kw_only=True):
    pass


class InheritsTag(Note, frozen=True, kw_only=True):
    """A subclass of a tagged class that names no tag of its own."""


class Poke(Signal, frozen=True, kw_only=True, tag="tm_poke"):
    who: str


class Download(Effect, frozen=True, kw_only=True, tag="tm_download"):
    url: str


CONCRETE: tuple[type[Message], ...] = (Note, LoudNote, Untagged, Poke, Download)


def test_the_tag_is_the_type_field_on_the_wire() -> None:
    assert msgspec.json.encode(Note(text="hi")) == b'{"type":"tm_note","text":"hi","tags":[]}'
    assert msgspec.json.encode(Poke(who="me")) == b'{"type":"tm_poke","who":"me"}'


def test_an_effect_carries_its_key_on_the_wire() -> None:
    assert msgspec.json.encode(Download(url="u")) == b'{"type":"tm_download","key":null,"url":"u"}'
    assert Download(url="u", key="dl-1").key == "dl-1"


def test_the_default_tag_is_the_class_name() -> None:
    assert msgspec.json.encode(Untagged(n=1)) == b'{"type":"Untagged","n":1}'
    assert Untagged.__struct_config__.tag == "Untagged"
    assert UntaggedChild.__struct_config__.tag == "UntaggedChild"
    assert LoudNote.__struct_config__.tag == "tm_loud_note"


def test_a_subclass_of_an_explicitly_tagged_class_inherits_its_tag_unless_it_names_one() -> None:
    # msgspec inherits an explicit tag: InheritsTag would be read back as a Note, so every
    # class that goes on the wire must name its own tag.
    assert InheritsTag.__struct_config__.tag == "tm_note"
    with pytest.raises(TypeError, match="unique `tag` values"):
        msgspec.json.Decoder(Union[Note, InheritsTag])  # noqa: UP007


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Note("hi")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Note()  # type: ignore[call-arg]


def test_messages_are_frozen_and_hashable() -> None:
    note = Note(text="hi", tags=("a",))
    with pytest.raises(AttributeError):
        note.text = "bye"  # type: ignore[misc]
    assert note == Note(text="hi", tags=("a",))
    assert hash(note) == hash(Note(text="hi", tags=("a",)))
    assert note != LoudNote(text="hi", tags=("a",))


def test_signals_events_and_effects_are_separate_kinds() -> None:
    assert isinstance(Poke(who="x"), Signal)
    assert not isinstance(Poke(who="x"), Event | Effect)
    assert isinstance(Note(text="x"), Event)
    assert not isinstance(Note(text="x"), Signal | Effect)
    assert isinstance(Download(url="x"), Effect)
    assert all(issubclass(kind, Message) for kind in (Signal, Event, Effect))


def test_events_do_not_merge_unless_they_say_so() -> None:
    assert Note(text="a").merge(Note(text="b")) is None


def test_wire_types_lists_the_subclasses_of_each_kind() -> None:
    events = wire_types(Event)
    assert {Note, LoudNote, Untagged, InheritsTag, ErrorEvent} <= set(events)
    assert Event not in events
    assert not {Poke, Download} & set(events)
    assert {Poke, TimerFired, EffectCompleted} <= set(wire_types(Signal))
    assert {Download, StartTimer} <= set(wire_types(Effect))
    assert events.index(Note) < events.index(LoudNote)  # in definition order
    assert isinstance(events, tuple)


def test_wire_types_sees_classes_defined_later() -> None:
    before = wire_types(Signal)

    class Late(Signal, frozen=True, kw_only=True, tag="tm_late"):
        pass

    assert Late not in before
    assert wire_types(Signal)[-1] is Late


def test_a_union_decoder_of_concrete_types_round_trips_every_one() -> None:
    decoder = msgspec.json.Decoder(Union[CONCRETE])  # noqa: UP007
    samples: list[Any] = [
        Note(text="n", tags=("x", "y")),
        LoudNote(text="l", volume=3),
        Untagged(n=4),
        Poke(who="p"),
        Download(url="d", key="k"),
    ]
    for sample in samples:
        decoded = decoder.decode(msgspec.json.encode(sample))
        assert decoded == sample
        assert type(decoded) is type(sample)
    with pytest.raises(msgspec.ValidationError, match="tm_unknown"):
        decoder.decode(b'{"type":"tm_unknown"}')


def test_msgpack_round_trips_through_the_same_union() -> None:
    union: Any = Union[CONCRETE]  # noqa: UP007
    for sample in (LoudNote(text="l"), Download(url="d")):
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(sample), type=union) == sample


def test_an_envelope_round_trips_with_its_tagged_event_when_decoded_with_the_concrete_type() -> None:
    class NoteEnvelope(Envelope, frozen=True, kw_only=True):
        event: Note | Untagged

    env = Envelope(seq=3, at=12.5, session="s1", turn="t1", cause=2, event=Note(text="hi"))
    data = msgspec.json.encode(env)
    assert msgspec.json.decode(data) == {
        "seq": 3,
        "at": 12.5,
        "session": "s1",
        "turn": "t1",
        "cause": 2,
        "event": {"type": "tm_note", "text": "hi", "tags": []},
    }
    decoded = msgspec.json.decode(data, type=NoteEnvelope)
    assert msgspec.structs.asdict(decoded) == msgspec.structs.asdict(env)
    assert type(decoded.event) is Note
    none_turn = Envelope(seq=1, at=0.0, session="", turn=None, cause=1, event=Untagged(n=1))
    assert msgspec.json.decode(msgspec.json.encode(none_turn), type=NoteEnvelope).event == Untagged(n=1)


def test_an_envelope_is_frozen() -> None:
    env = Envelope(seq=1, at=0.0, session="", turn=None, cause=1, event=Note(text="x"))
    with pytest.raises(AttributeError):
        env.seq = 2  # type: ignore[misc]
