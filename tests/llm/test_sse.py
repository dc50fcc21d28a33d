"""The incremental SSE decoder follows the WHATWG event-stream rules, whatever the piece boundaries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oturn.llm.sse import SSEDecoder, SSEEvent, iter_sse


def feed_all(*pieces: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events


def datas(events: list[SSEEvent]) -> list[str]:
    return [e.data for e in events]


def test_events_are_dispatched_on_blank_lines() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\n") == []
    assert decoder.feed(b"\ndata: two\n\n") == [SSEEvent(None, "one"), SSEEvent(None, "two")]


def test_lf_crlf_and_cr_line_ends_give_the_same_events() -> None:
    body = "event: e\ndata: a\ndata: b\n\n: comment\ndata: c\n\n"
    expected = feed_all(body.encode())
    assert expected == [SSEEvent("e", "a\nb"), SSEEvent(None, "c")]
    assert feed_all(body.replace("\n", "\r\n").encode()) == expected
    assert feed_all(body.replace("\n", "\r").encode()) == expected


def test_a_crlf_split_across_pieces_is_one_line_end() -> None:
    assert feed_all(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent(None, "a\nb")]


def test_a_cr_at_the_end_of_a_piece_ends_the_line_even_without_a_following_lf() -> None:
    assert feed_all(b"data: a\r", b"data: b\r\r") == [SSEEvent(None, "a\nb")]


def test_comment_lines_are_ignored() -> None:
    assert feed_all(b": keep-alive\n\n:\ndata: x\n\n") == [SSEEvent(None, "x")]


def test_exactly_one_leading_space_is_stripped_from_a_value() -> None:
    assert datas(feed_all(b"data:x\n\ndata: x\n\ndata:  x\n\n")) == ["x", "x", " x"]


def test_a_line_without_a_colon_is_a_field_with_an_empty_value() -> None:
    assert feed_all(b"data\n\n") == [SSEEvent(None, "")]


def test_an_event_without_data_is_not_dispatched_and_its_type_is_reset() -> None:
    assert feed_all(b"event: ping\n\ndata: x\n\n") == [SSEEvent(None, "x")]


def test_unknown_fields_are_ignored_including_a_first_line_that_starts_with_a_space() -> None:
    body = b' data: {"first": true}\n\nfoo: bar\ndata: second\n\n'
    assert feed_all(body) == [SSEEvent(None, "second")]


def test_the_last_event_id_persists_and_an_id_with_nul_is_ignored() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n")
    assert [(e.data, e.id) for e in events] == [("a", "7"), ("b", "7"), ("c", "7"), ("d", "")]
    assert decoder.last_event_id == ""


def test_retry_is_kept_only_when_it_is_all_ascii_digits() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 1500\n\nretry: 12a\n\nretry: \xd9\xa3\n\n")
    assert decoder.retry == 1500


def test_a_utf8_character_split_across_pieces_is_decoded_whole() -> None:
    raw = "data: caf\u00e9 \U0001f60a\n\n".encode()
    cut = raw.index(b"\xc3") + 1
    emoji = raw.index(b"\xf0") + 2
    assert datas(feed_all(raw[:cut], raw[cut:emoji], raw[emoji:])) == ["caf\u00e9 \U0001f60a"]


def test_invalid_utf8_becomes_the_replacement_character() -> None:
    assert datas(feed_all(b"data: a\xffb\n\n")) == ["a\ufffdb"]
    assert datas(feed_all(b"data: a\xc3")) == ["a\ufffd"]


def test_a_leading_byte_order_mark_is_dropped_once() -> None:
    bom = "\ufeff".encode()
    assert feed_all(bom[:1], bom[1:] + b"data: x\n\n") == [SSEEvent(None, "x")]
    assert datas(feed_all(bom + b"data: " + bom + b"\n\n")) == ["\ufeff"]


def test_close_dispatches_a_last_event_without_a_trailing_blank_line() -> None:
    assert feed_all(b"data: a\n\ndata: b\n") == [SSEEvent(None, "a"), SSEEvent(None, "b")]
    assert feed_all(b"event: e\ndata: unterminated") == [SSEEvent("e", "unterminated")]


def test_close_on_an_empty_or_finished_stream_gives_nothing() -> None:
    assert SSEDecoder().close() == []
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\n")
    assert decoder.close() == []


def test_iter_sse_takes_bytes_or_an_iterable_of_pieces() -> None:
    body = b"data: a\n\ndata: b"
    assert list(iter_sse(body)) == list(iter_sse([body[:3], body[3:9], body[9:]]))
    assert datas(list(iter_sse(body))) == ["a", "b"]


_line = st.one_of(
    # no line breaks (they end a line), no surrogates (not encodable as UTF-8)
    st.builds(
        lambda v: f"data: {v}",
        st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12),
    ),
    st.builds(lambda v: f"event: {v}", st.sampled_from(["error", "message", "x"])),
    st.builds(lambda v: f"id: {v}", st.text(alphabet="abc0123", max_size=3)),
    st.just(": comment"),
    st.just(""),
)


@given(
    lines=st.lists(_line, max_size=30),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_splitting_the_bytes_anywhere_gives_the_same_events(lines: list[str], eol: str, cuts: list[int]) -> None:
    raw = eol.join(lines).encode()
    whole = feed_all(raw)
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert feed_all(*pieces) == whole
    assert feed_all(*[raw[i : i + 1] for i in range(len(raw))]) == whole
