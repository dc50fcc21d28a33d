"""Export (JSONL, Markdown) and import: byte-exact round trips, and nothing imported that does not decode."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest

from oturn import CorruptRecordError, SchemaVersionError, UsageError
from oturn.agent.agent import Agent
from oturn.agent.codec import agent_codec
from oturn.agent.events import ApprovalRequest, ChoiceRequest, TurnFinished
from oturn.agent.session import Session
from oturn.store.memory import MemoryStore
from oturn.store.protocol import Store
from oturn.store.replay import verify
from oturn.store.sessions import agent_reducer
from oturn.store.sqlite import SQLiteStore
from oturn.store.transfer import (
    export_jsonl,
    export_markdown,
    import_jsonl,
    render_markdown,
    stored_envelopes,
)
from oturn.testing.fake_model import FakeModel
from oturn.tools.tool import tool

F = FakeModel
CODEC = agent_codec()


def make_agent() -> Agent:
    @tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city}: ```sunny```"

    @tool(approval="ask")
    def save(text: str) -> str:
        """Save a note."""
        return "saved"

    model = FakeModel(
        [
            [
                F.reasoning("Let me think.\nTwo lines."),
                F.text("Looking up."),
                F.tool_call("lookup", {"city": "Oslo"}, id="c1", fragments=2),
                F.usage(10, 5, cost=0.25),
            ],
            [F.tool_call("save", {"text": 'é ✓ \u2028 "quoted"'}, id="c2"), F.usage(3, 1)],
            [F.text("Done."), F.usage(4, 2)],
            [F.text("Bye.")],
        ]
    )
    return Agent(model, tools=[lookup, save])


async def converse(session: Session, *inputs: str, deny: bool = False) -> None:
    with anyio.fail_after(10):
        async with session.subscribe(types=[TurnFinished, ApprovalRequest, ChoiceRequest]) as sub:
            for text in inputs:
                await session.send(text)
            finished = 0
            async for envelope in sub:
                event = envelope.event
                if isinstance(event, ApprovalRequest):
                    if deny:
                        await session.deny(event.id, "not today")
                    else:
                        await session.approve(event.id)
                elif isinstance(event, TurnFinished):
                    finished += 1
                    if finished == len(inputs):
                        return


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    async with s:
        yield s


async def recorded(store: Store, sid: str = "s1", *, deny: bool = False) -> None:
    async with make_agent().session(id=sid, store=store, snapshot_every=4) as session:
        await converse(session, "hello", "again", deny=deny)


async def export(store: Store, sid: str, **options: object) -> bytes:
    out = io.BytesIO()
    await export_jsonl(store, sid, CODEC, out, **options)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("snapshots", [False, True])
async def test_an_export_imported_elsewhere_and_exported_again_is_byte_identical(
    store: Store, tmp_path: Path, snapshots: bool
) -> None:
    await recorded(store)
    data = await export(store, "s1", snapshots=snapshots)
    lines = data.splitlines()
    header = json.loads(lines[0])
    info = await store.info("s1")
    assert info is not None
    assert header["format"] == "oturn-session"
    assert header["version"] == 1
    assert (header["session"], header["signals"], header["events"]) == ("s1", info.signals, info.events)
    assert header["meta"] == info.meta
    kinds = [json.loads(line)["kind"] for line in lines[1:]]
    assert kinds.count("signal") == info.signals
    assert kinds.count("event") == info.events
    assert kinds.count("snapshot") == (1 if snapshots else 0)
    assert kinds[0] == "signal"  # each signal comes before the events it caused
    # the stored bytes are inlined verbatim
    first = json.loads(lines[1])
    assert msgspec.json.encode(first["data"]) == (await store.signals("s1", limit=1))[0].data

    for other in (MemoryStore(), SQLiteStore(tmp_path / "other.db")):
        async with other:
            result = await import_jsonl(other, data, CODEC, session="copy")
            assert (result.session, result.source, result.signals, result.events) == (
                "copy",
                "s1",
                info.signals,
                info.events,
            )
            assert result.snapshots == (1 if snapshots else 0)
            again = await export(other, "copy", snapshots=snapshots)
            assert again.splitlines()[1:] == lines[1:]
            assert json.loads(again.splitlines()[0]) == {**header, "session": "copy"}
            assert await other.signals("copy") == await store.signals("s1")
            assert await other.events("copy") == await store.events("s1")
            copied = await other.info("copy")
            assert copied is not None
            assert (copied.meta, copied.created_at) == (info.meta, info.created_at)
            reducer = agent_reducer(copied.meta)
            assert await verify(other, "copy", reducer, reducer.initial(), CODEC) is None


async def test_an_imported_session_opens_and_continues(store: Store) -> None:
    await recorded(store)
    data = await export(store, "s1", snapshots=True)
    other = MemoryStore()
    await import_jsonl(other, data, CODEC)  # under the id in the file
    async with make_agent().session(id="s1", store=other) as session:
        assert session.restored
        async with store:
            original = await store.info("s1")
        assert original is not None
        assert session.nucleus.restored is not None
        assert session.nucleus.restored.signal_seq == original.signals
        assert session.state.turns == 2


async def test_import_refuses_an_existing_session_and_changes_nothing(store: Store) -> None:
    await recorded(store)
    data = await export(store, "s1")
    before = await store.events("s1")
    with pytest.raises(UsageError, match="already exists"):
        await import_jsonl(store, data, CODEC)
    assert await store.events("s1") == before


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines()


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


def _edit(line: bytes, **changes: object) -> bytes:
    value = json.loads(line)
    value.update(changes)
    return json.dumps(value).encode()


async def test_corrupt_or_unknown_records_are_refused_naming_the_line_and_seq() -> None:
    store = MemoryStore()
    await recorded(store)
    data = await export(store, "s1")
    lines = _lines(data)
    signal_line = 1
    event_line = next(i for i, line in enumerate(lines) if json.loads(line).get("kind") == "event")
    second_signal = next(i for i, line in enumerate(lines) if i > 1 and json.loads(line).get("kind") == "signal")
    bad_cases: list[tuple[list[bytes], str, int | None]] = [
        # garbage
        ([*lines[:3], b"\x00\xff garbage", *lines[4:]], "line 4 is not a session record", None),
        # a truncated line
        ([*lines[:signal_line], lines[signal_line][:-15], *lines[signal_line + 1 :]], "line 2", None),
        # a record kind nobody knows
        ([*lines[:2], _edit(lines[2], kind="pickle"), *lines[3:]], "line 3 is not a session record", None),
        # a signal of an unknown type
        (
            [
                lines[0],
                b'{"kind":"signal","seq":1,"at":1.0,"type":"martian","data":{"type":"martian","x":1}}',
                *lines[2:],
            ],
            "line 2: signal record 1 ('martian') is of an unknown type",
            1,
        ),
        # a signal whose data does not fit its type
        (
            [lines[0], b'{"kind":"signal","seq":1,"at":1.0,"type":"user_input","data":{"type":"user_input"}}'],
            "line 2: signal record 1 ('user_input') is unreadable",
            1,
        ),
        # a line typed one way holding another
        (
            [lines[0], b'{"kind":"signal","seq":1,"at":1.0,"type":"approve","data":{"type":"cancel"}}'],
            "typed 'approve' but holds a 'cancel'",
            1,
        ),
        # an event of an unknown type
        (
            [
                *lines[:event_line],
                _edit(lines[event_line], type="boom", data={"type": "boom"}),
                *lines[event_line + 1 :],
            ],
            f"line {event_line + 1}: event record 1 ('boom') is of an unknown type",
            1,
        ),
        # a gap in the signals
        ([*lines[:second_signal], *lines[second_signal + 1 :]], "where signal 2 was due", None),
        # a pickle smuggled in as data: it is only ever decoded as JSON
        (
            [
                lines[0],
                b'{"kind":"signal","seq":1,"at":1.0,"type":"user_input","data":'
                + json.dumps(pickle.dumps(object()).decode("latin-1")).encode()
                + b"}",
            ],
            "line 2: signal record 1 ('user_input') is unreadable",
            1,
        ),
        # the file stops early
        (lines[:-3], "is truncated", None),
    ]
    for bad, message, seq in bad_cases:
        target = MemoryStore()
        with pytest.raises(CorruptRecordError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
            await import_jsonl(target, _join(bad), CODEC, name="bundle.jsonl")
        assert caught.value.session == "s1"
        if seq is not None:
            assert caught.value.seq == seq
        assert "bundle.jsonl" in str(caught.value)
        assert await target.sessions() == []  # nothing written


async def test_the_header_is_checked_first() -> None:
    store = MemoryStore()
    with pytest.raises(CorruptRecordError, match="is empty"):
        await import_jsonl(store, b"", CODEC)
    with pytest.raises(CorruptRecordError, match="not an oturn-session header"):
        await import_jsonl(store, b'{"kind":"signal"}\n', CODEC)
    with pytest.raises(CorruptRecordError, match="not an oturn-session header"):
        await import_jsonl(store, b"[1, 2]\n", CODEC)
    with pytest.raises(SchemaVersionError, match="format version 2") as caught:
        await import_jsonl(store, b'{"format":"oturn-session","version":2,"session":"x"}\n', CODEC)
    assert (caught.value.found, caught.value.supported) == (2, 1)
    with pytest.raises(CorruptRecordError, match="names no session"):
        await import_jsonl(store, b'{"format":"oturn-session","version":1,"session":""}\n', CODEC)
    # a header alone is an empty session
    result = await import_jsonl(store, b'{"format":"oturn-session","version":1,"session":"empty"}\n', CODEC)
    assert (result.session, result.signals, result.events) == ("empty", 0, 0)


async def test_an_import_that_fails_while_writing_leaves_nothing_behind() -> None:
    store = MemoryStore()
    await recorded(store)
    data = await export(store, "s1")

    class Failing(MemoryStore):
        async def append(self, *args: object, **kwargs: object) -> None:
            raise OSError("disk full")

    target = Failing()
    with pytest.raises(OSError, match="disk full"):
        await import_jsonl(target, data, CODEC)
    assert await target.sessions() == []


async def test_export_refuses_a_corrupt_record_and_exports_the_readable_prefix_with_upto() -> None:
    store = MemoryStore()
    await recorded(store)
    signals = await store.signals("s1")
    events = await store.events("s1")
    await store.create("bad", now=0.0)
    broken = msgspec.structs.replace(signals[3], data=signals[3].data[:10])
    await store.append("bad", [*signals[:3], broken, *signals[4:]], events)
    with pytest.raises(CorruptRecordError, match="signal record 4") as caught:
        await export(store, "bad")
    assert (caught.value.session, caught.value.seq) == ("bad", 4)
    prefix = await export(store, "bad", upto=3)
    header = json.loads(prefix.splitlines()[0])
    assert header["signals"] == 3
    assert header["events"] == len([e for e in events if e.cause <= 3])
    target = MemoryStore()
    await import_jsonl(target, prefix, CODEC)
    assert await target.signals("bad") == signals[:3]


async def test_export_of_an_unknown_session_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no session"):
        await export(MemoryStore(), "nope")
    with pytest.raises(UsageError, match="no session"):
        await export_markdown(MemoryStore(), "nope", CODEC)


async def test_the_markdown_transcript_reads_like_a_conversation(store: Store) -> None:
    await recorded(store)
    info = await store.info("s1")
    assert info is not None
    reducer = agent_reducer(info.meta)
    text = await export_markdown(store, "s1", CODEC, reducer=reducer, initial=reducer.initial())
    assert text == await export_markdown(store, "s1", CODEC)  # replayed events = stored events
    assert text.startswith("# Session `s1`\n")
    for piece in [
        "- created: ",
        f"- {info.signals} signals, {info.events} events",
        "## Turn t1",
        "**User:**\n\n> hello\n",
        "<details><summary>Reasoning</summary>\n\n> Let me think.\n> Two lines.\n\n</details>",
        "**Assistant:**\n\nLooking up.",
        '**Tool call** `lookup` (`c1`):\n\n```json\n{\n  "city": "Oslo"\n}\n```',
        "**Tool result** `lookup` (`c1`, ok):\n\n````\nOslo: ```sunny```\n````",  # a longer fence
        "**Approval requested** for `save` (`t1.2.0`)",
        "**Approved** `c2`",
        "_Usage of `t1.1`: 1 model call, 10 prompt + 5 completion tokens, $0.25000_",
        "**Turn t1 completed** — 3 model calls, 17 prompt + 8 completion tokens, $0.25000",
        "## Turn t2",
        "> again",
        "Bye.",
    ]:
        assert piece in text, piece
    assert text.index("## Turn t1") < text.index("> hello") < text.index("## Turn t2") < text.index("> again")


async def test_markdown_shows_denials_forks_restarts_and_errors() -> None:
    store = MemoryStore()
    await recorded(store, deny=True)
    info = await store.info("s1")
    assert info is not None
    await store.fork("s1", "f", at_seq=info.signals, now=0.0)
    text = await export_markdown(store, "f", CODEC)
    assert "- forked from `s1` at signal" in text
    assert "**Denied** `c2`: not today" in text
    assert "is_error" not in text
    envelopes = await stored_envelopes(store, "s1", CODEC)
    assert render_markdown(envelopes) == render_markdown(envelopes, info=None)
    assert render_markdown([]).startswith("# Session `session`")
