"""The session commands: ``oturn sessions``, ``replay``, ``export``, ``import``, ``fork`` (and ``demo --store``)."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from oturn import _demo, cli

Capture = pytest.CaptureFixture[str]


def demo(db: Path, session: str = "demo") -> str:
    out = io.StringIO()
    assert _demo.main(["--yes", "--fast", "--store", str(db), "--session", session], out=out) == 0
    return out.getvalue()


def oturn(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.db"
    demo(path)
    return path


def test_the_demo_keeps_its_session_in_a_store_and_replay_prints_and_verifies_it(db: Path, capsys: Capture) -> None:
    text = demo(db, "again")
    assert f"session 'again' saved in sqlite://{db}" in text
    status, out, err = oturn(capsys, "replay", "demo", "--db", str(db), "--verify")
    assert status == 0, err
    for piece in [
        "you> What's the weather and the local time in Tokyo? Save a note for me.",
        "(thinking) The user wants the weather",
        '-> get_weather({"city": "Tokyo"})',
        "<- get_weather: 18 °C, light rain",
        "needs approval [t1.2.0]",
        "[approved: approved]",
        "[turn t1 completed; 3 model call(s), 1533 prompt + 126 completion tokens, $0.00135]",
        "you> And in Paris?",
        "[turn t2 completed",
    ]:
        assert piece in out, piece
    assert "verified: 22 signals replayed reproduce all 68 stored events byte for byte" in err
    # a URL works as well as a path
    assert oturn(capsys, "replay", "demo", "--db", f"sqlite:///{db}", "--quiet")[1] == ""


def test_the_demo_stays_in_memory_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTURN_HOME", str(tmp_path / "home"))
    out = io.StringIO()
    assert _demo.main(["--yes", "--fast"], out=out) == 0
    assert "saved in" not in out.getvalue()
    assert not (tmp_path / "home").exists()


def test_sessions_lists_the_store(db: Path, capsys: Capture) -> None:
    demo(db, "second")
    status, out, _ = oturn(capsys, "sessions", "--db", str(db))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "UPDATED", "SIGNALS", "EVENTS", "PARENT"]
    assert [line.split()[0] for line in lines[1:]] == ["second", "demo"]  # most recent first
    assert lines[2].split()[3:5] == ["22", "68"]


def test_sessions_without_a_store_says_so_and_creates_nothing(
    tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTURN_HOME", str(tmp_path / "home"))
    assert oturn(capsys, "sessions") == (0, "no sessions yet\n", "")
    assert not (tmp_path / "home").exists()
    status, _, err = oturn(capsys, "sessions", "--db", str(tmp_path / "nope.db"))
    assert status == 1
    assert "there is no session store at" in err
    status, _, err = oturn(capsys, "replay", "x", "--db", str(tmp_path / "nope.db"))
    assert status == 1
    assert not (tmp_path / "nope.db").exists()


def test_the_default_store_is_the_default_store_path(
    tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTURN_HOME", str(tmp_path))
    demo(tmp_path / "sessions.db")
    status, out, _ = oturn(capsys, "sessions")
    assert status == 0
    assert out.splitlines()[1].split()[0] == "demo"
    assert oturn(capsys, "replay", "demo", "--verify", "-q")[0] == 0


def test_verify_fails_on_the_first_stored_event_that_the_replay_does_not_reproduce(db: Path, capsys: Capture) -> None:
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE events SET data = CAST(replace(CAST(data AS TEXT), 'Tokyo', 'Kyoto') AS BLOB)"
        " WHERE session = 'demo' AND seq = 1"
    )
    conn.commit()
    conn.close()
    status, _, err = oturn(capsys, "replay", "demo", "--db", str(db), "--verify", "--quiet")
    assert status == 1
    assert "MISMATCH" in err
    assert "session 'demo': event 1: data differs" in err
    assert "Kyoto" in err


def test_export_import_and_fork_round_trip(db: Path, tmp_path: Path, capsys: Capture) -> None:
    bundle = tmp_path / "demo.jsonl"
    status, _, err = oturn(capsys, "export", "demo", "--format", "jsonl", "-o", str(bundle), "--db", str(db))
    assert status == 0, err
    header = json.loads(bundle.read_bytes().splitlines()[0])
    assert (header["format"], header["session"], header["signals"], header["events"]) == (
        "oturn-session",
        "demo",
        22,
        68,
    )

    other = tmp_path / "other.db"
    status, out, err = oturn(capsys, "import", str(bundle), "--id", "copy", "--db", str(other))
    assert status == 0, err
    assert out == "imported copy (22 signals, 68 events)\n"
    assert oturn(capsys, "replay", "copy", "--db", str(other), "--verify", "-q")[0] == 0
    status, again, _ = oturn(capsys, "export", "copy", "--format", "jsonl", "--db", str(other))
    assert again.splitlines()[1:] == bundle.read_text().splitlines()[1:]
    status, _, err = oturn(capsys, "import", str(bundle), "--id", "copy", "--db", str(other))
    assert status == 1
    assert "already exists" in err

    status, out, err = oturn(capsys, "fork", "demo", "--at", "9", "--id", "branch", "--db", str(db))
    assert (status, out) == (0, "forked demo at signal 9 into branch\n"), err
    listing = oturn(capsys, "sessions", "--db", str(db))[1]
    assert any(line.split()[0] == "branch" and line.split()[-1] == "demo@9" for line in listing.splitlines())
    assert oturn(capsys, "replay", "branch", "--db", str(db), "--verify", "-q")[0] == 0
    status, out, _ = oturn(capsys, "fork", "demo", "--at", "3", "--db", str(db))
    assert out.startswith("forked demo at signal 3 into demo-fork-")
    status, _, err = oturn(capsys, "fork", "demo", "--at", "99", "--db", str(db))
    assert status == 1
    assert "cannot fork" in err


def test_import_reads_stdin_and_names_a_bad_line(db: Path, tmp_path: Path, capsys: Capture) -> None:
    status, data, _ = oturn(capsys, "export", "demo", "--format", "jsonl", "--db", str(db))
    lines = data.splitlines()
    lines[5] = lines[5][:40]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    status, _, err = oturn(capsys, "import", str(bad), "--id", "x", "--db", str(db))
    assert status == 1
    assert f"CorruptRecordError: {bad} line 6 is not a session record" in err
    status, _, err = oturn(capsys, "import", str(tmp_path / "missing.jsonl"), "--db", str(db))
    assert status == 1
    assert "cannot read" in err
    done = subprocess.run(
        [sys.executable, "-m", "oturn", "import", "-", "--id", "piped", "--db", str(db)],
        input=data.encode(),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"imported piped (22 signals, 68 events)\n"


def test_export_markdown(db: Path, tmp_path: Path, capsys: Capture) -> None:
    status, out, _ = oturn(capsys, "export", "demo", "--db", str(db))  # md is the default
    assert status == 0
    assert out.startswith("# Session `demo`\n")
    assert "## Turn t1" in out
    assert "<details><summary>Reasoning</summary>" in out
    assert "**Tool call** `save_note` (`call_n1`):" in out
    target = tmp_path / "demo.md"
    assert oturn(capsys, "export", "demo", "-f", "md", "-o", str(target), "--db", str(db))[0] == 0
    assert target.read_text() == out


def test_delete_and_prune(db: Path, capsys: Capture) -> None:
    for name in ("b", "c"):
        demo(db, name)
    assert oturn(capsys, "sessions", "delete", "b", "--db", str(db))[:2] == (0, "deleted b\n")
    status, _, err = oturn(capsys, "sessions", "delete", "b", "--db", str(db))
    assert status == 1
    assert "no session 'b'" in err
    assert oturn(capsys, "sessions", "--db", str(db), "prune", "--older-than", "30d")[1] == "0 session(s) deleted\n"
    status, out, _ = oturn(capsys, "sessions", "prune", "--keep", "1", "--db", str(db))
    assert out == "deleted demo\n1 session(s) deleted\n"
    status, _, err = oturn(capsys, "sessions", "prune", "--db", str(db))
    assert status == 2
    assert "--older-than" in err
    status, _, err = oturn(capsys, "sessions", "prune", "--older-than", "soon", "--db", str(db))
    assert status == 1
    assert "duration" in err


def test_a_damaged_session_is_named_and_salvaged(db: Path, capsys: Capture) -> None:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE signals SET data = X'00FF' WHERE session = 'demo' AND seq = 12")
    conn.commit()
    conn.close()
    status, _, err = oturn(capsys, "replay", "demo", "--db", str(db))
    assert status == 1
    assert "signal record 12" in err
    assert "(session 'demo', seq 12)" in err
    status, out, err = oturn(capsys, "sessions", "salvage", "demo", "--db", str(db))
    assert status == 0, err
    assert "salvaged signals 1..11 of demo into demo-salvaged" in out
    assert oturn(capsys, "replay", "demo-salvaged", "--db", str(db), "--verify", "-q")[0] == 0


def test_replay_without_a_recorded_configuration(tmp_path: Path, capsys: Capture) -> None:
    db = tmp_path / "s.db"
    demo(db)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE sessions SET meta = '{}'")
    conn.commit()
    conn.close()
    status, out, err = oturn(capsys, "replay", "demo", "--db", str(db))
    assert status == 0
    assert "does not record the agent configuration" in err
    assert "you> And in Paris?" in out  # the stored events
    status, _, err = oturn(capsys, "replay", "demo", "--db", str(db), "--verify")
    assert status == 2
    assert "--agent" in err
    # the application names its agent
    status, _, err = oturn(
        capsys, "replay", "demo", "--db", str(db), "--verify", "-q", "--agent", "oturn._demo:build_agent"
    )
    assert status == 0, err
    for bad in ("nope", "no_such_module:x", "oturn._demo:missing", "oturn._demo:_WEATHER"):
        status, _, err = oturn(capsys, "replay", "demo", "--db", str(db), "--agent", bad)
        assert status == 2, bad
        assert "--agent" in err


def test_unknown_sessions_are_named(db: Path, capsys: Capture) -> None:
    for command in (
        ["replay", "nope"],
        ["export", "nope"],
        ["fork", "nope", "--at", "1"],
        ["sessions", "salvage", "nope"],
    ):
        status, _, err = oturn(capsys, *command, "--db", str(db))
        assert status == 1, command
        assert "no session 'nope'" in err


def test_the_help_lists_the_session_commands(capsys: Capture) -> None:
    status, out, _ = oturn(capsys, "--help")
    assert status == 0
    for command in ("sessions", "replay", "export", "import", "fork"):
        assert command in out
    status, out, _ = oturn(capsys, "sessions", "--help")
    for action in ("delete", "prune", "salvage"):
        assert action in out
