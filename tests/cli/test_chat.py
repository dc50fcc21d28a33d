"""``oturn chat``: the interactive loop against an OpenAI-compatible endpoint (the fake server)."""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator

import anyio
import pytest

import oturn._chat as chat
from oturn.cli import main as cli_main
from oturn.testing.openai_server import OpenAIServer


def reader(lines: list[str]) -> tuple[list[str], object]:
    prompts: list[str] = []
    feed: Iterator[str] = iter(lines)

    def read(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    return prompts, read


async def run_chat(argv: list[str], lines: list[str]) -> tuple[int, str, list[str]]:
    out = io.StringIO()
    prompts, read = reader(lines)
    with anyio.fail_after(90):  # a hang fails the test instead of the whole run
        code = await anyio.to_thread.run_sync(
            functools.partial(chat.main, argv, out=out, read=read),  # type: ignore[arg-type]
            abandon_on_cancel=True,
        )
    return code, out.getvalue(), prompts


async def test_chat_streams_answers_until_quit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-printed")
    async with OpenAIServer() as server:
        code, text, prompts = await run_chat(
            ["--model", "openai/text", "--api-base", server.base_url], ["hello", "", "again", "/quit"]
        )
    assert code == 0
    assert text.count("assistant> Hello!") == 2
    assert text.count("completed") == 2
    assert "session usage: 2 call(s)" in text
    assert prompts.count("you> ") == 4
    assert "sk-test-never-printed" not in text


async def test_chat_ends_at_end_of_input_and_reads_the_key_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-from-my-key")
    async with OpenAIServer() as server:
        code, text, _ = await run_chat(
            ["--model", "openai/text", "--api-base", server.base_url, "--api-key-env", "MY_KEY"], ["hi"]
        )
        headers = server.request_headers
    assert code == 0
    assert "assistant> Hello!" in text
    assert any(h.get("Authorization") == "Bearer sk-from-my-key" for h in headers)
    assert "sk-from-my-key" not in text


def test_chat_without_a_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["chat"]) == 2
    assert "--model" in capsys.readouterr().err
