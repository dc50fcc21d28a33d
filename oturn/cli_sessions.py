"""The session commands of the ``oturn`` command line (registered by :mod:`oturn.cli`).

::

    oturn sessions [--db URL]                       list the sessions (id, updated, signals, events, parent)
    oturn sessions delete ID [--db URL]             delete a session
    oturn sessions prune [--older-than 30d] [--keep N] [--db URL]
    oturn sessions salvage ID [--id NEW] [--db URL] fork the readable prefix of a damaged session
    oturn replay SESSION [--db URL] [--verify] [--agent MODULE:NAME]
    oturn export SESSION --format md|jsonl [-o FILE] [--snapshots] [--upto SEQ] [--db URL]
    oturn import FILE [--id NEW] [--db URL]         (FILE "-" reads stdin)
    oturn fork SESSION --at SEQ [--id NEW] [--db URL]

``--db`` is a store URL (``sqlite:///path.db``, ``redis://...``) or a file path; the
default is the SQLite file at :func:`oturn.store.url.default_store_path`.

Import-light like :mod:`oturn.cli`: only the standard library is imported here; the
stores, codecs and reducers are imported when a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from oturn.store.protocol import Store

__all__ = ["add_commands"]

T = TypeVar("T")

_EXIT_OK, _EXIT_FAILED, _EXIT_USAGE = 0, 1, 2


class _CommandError(Exception):
    """A command cannot go on: print the message and exit with ``code``."""

    def __init__(self, message: str, code: int = _EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# -- registration ------------------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sessions``, ``replay``, ``export``, ``import`` and ``fork`` to the ``oturn`` parser."""

    def db(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
        parser.add_argument(
            "--db",
            metavar="URL",
            default=None if top else argparse.SUPPRESS,
            help="the session store: a URL (sqlite:///path.db, redis://...) or a SQLite file path"
            " (default: the file at default_store_path(), $OTURN_HOME/sessions.db if set)",
        )

    sessions = commands.add_parser("sessions", help="list, delete, prune or salvage stored sessions")
    db(sessions)
    sessions.set_defaults(func=_run(_cmd_list), action=None)
    actions = sessions.add_subparsers(dest="action", metavar="ACTION")
    delete = actions.add_parser("delete", help="delete a session and everything it holds")
    delete.add_argument("session", metavar="ID")
    db(delete, top=False)
    delete.set_defaults(func=_run(_cmd_delete))
    prune = actions.add_parser("prune", help="delete old sessions (by age and/or count)")
    prune.add_argument("--older-than", metavar="AGE", help="delete sessions not updated for AGE (e.g. 30d, 12h, 90m)")
    prune.add_argument("--keep", metavar="N", type=_whole, help="keep only the N most recently updated sessions")
    db(prune, top=False)
    prune.set_defaults(func=_run(_cmd_prune))
    salvage = actions.add_parser(
        "salvage", help="fork the readable part of a damaged session into a new one (the damaged one is kept)"
    )
    salvage.add_argument("session", metavar="ID")
    salvage.add_argument("--id", dest="new", metavar="NEW", help="the new session's id (default: ID-salvaged)")
    db(salvage, top=False)
    salvage.set_defaults(func=_run(_cmd_salvage))

    replay = commands.add_parser("replay", help="replay a stored session through its reducer and print it")
    replay.add_argument("session", metavar="SESSION")
    replay.add_argument(
        "--verify", action="store_true", help="check that the replay reproduces every stored event byte for byte"
    )
    replay.add_argument(
        "--agent",
        metavar="MODULE:NAME",
        help="the Agent (or a function returning one) whose reducer to replay with"
        " (default: the configuration the session recorded)",
    )
    replay.add_argument("--quiet", "-q", action="store_true", help="print no transcript (with --verify)")
    db(replay)
    replay.set_defaults(func=_run(_cmd_replay))

    export = commands.add_parser("export", help="export a session as Markdown or JSONL")
    export.add_argument("session", metavar="SESSION")
    export.add_argument("--format", "-f", choices=("md", "jsonl"), default="md", help="md (default) or jsonl")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
    export.add_argument("--snapshots", action="store_true", help="jsonl: include the latest snapshot")
    export.add_argument("--upto", metavar="SEQ", type=_whole, help="jsonl: only signals 1..SEQ and their events")
    db(export)
    export.set_defaults(func=_run(_cmd_export))

    imp = commands.add_parser("import", help="import a JSONL export (as written by 'oturn export --format jsonl')")
    imp.add_argument("file", metavar="FILE", help="the JSONL file ('-': standard input)")
    imp.add_argument("--id", dest="new", metavar="NEW", help="import under this id (default: the id in the file)")
    db(imp)
    imp.set_defaults(func=_run(_cmd_import))

    fork = commands.add_parser("fork", help="copy a session up to a signal into a new session")
    fork.add_argument("session", metavar="SESSION")
    fork.add_argument("--at", metavar="SEQ", type=_whole, required=True, help="the last signal to keep")
    fork.add_argument("--id", dest="new", metavar="NEW", help="the new session's id (default: SESSION-fork-XXXXXX)")
    db(fork)
    fork.set_defaults(func=_run(_cmd_fork))


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _run(command: Callable[[argparse.Namespace], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    """A synchronous entry point for an async command, printing its errors as ``oturn CMD: message``."""

    def entry(args: argparse.Namespace) -> int:
        from oturn._exceptions import OturnError, UsageError
        from oturn.runtime.run import run

        name = args.command if getattr(args, "action", None) is None else f"{args.command} {args.action}"

        async def main() -> int:
            return await command(args)

        try:
            return run(main)
        except _CommandError as exc:
            print(f"oturn {name}: {exc}", file=sys.stderr)
            return exc.code
        except UsageError as exc:
            print(f"oturn {name}: {exc}", file=sys.stderr)
            return _EXIT_FAILED
        except OturnError as exc:
            print(f"oturn {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return _EXIT_FAILED

    return entry


# -- the store ---------------------------------------------------------------------------------


def _open(args: argparse.Namespace, *, create: bool = False) -> Store:
    """The store ``--db`` names (unopened); refuses to create a SQLite file unless ``create``."""
    from oturn.store.sqlite import SQLiteStore
    from oturn.store.url import default_store_path, open_store

    value: str | None = getattr(args, "db", None)
    store: Store
    if value is None:
        store = SQLiteStore(default_store_path())
    elif "://" in value:
        store = open_store(value)
    else:
        store = SQLiteStore(os.path.expanduser(value))
    if not create and isinstance(store, SQLiteStore) and store.path != ":memory:" and not os.path.exists(store.path):
        raise _CommandError(f"there is no session store at {store.path} (give one with --db)")
    return store


async def _known(store: Store, session: str) -> Any:
    info = await store.info(session)
    if info is None:
        raise _CommandError(f"there is no session {session!r} in this store ('oturn sessions' lists them)")
    return info


# -- commands ----------------------------------------------------------------------------------


def _when(at: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")


async def _cmd_list(args: argparse.Namespace) -> int:
    from oturn.store.sessions import list_sessions

    try:
        store = _open(args)
    except _CommandError:
        if getattr(args, "db", None) is None:
            print("no sessions yet")
            return _EXIT_OK
        raise
    async with store:
        infos = await list_sessions(store)
    if not infos:
        print("no sessions")
        return _EXIT_OK
    rows = [("ID", "UPDATED", "SIGNALS", "EVENTS", "PARENT")]
    for info in infos:
        parent = "" if info.parent is None else f"{info.parent}@{info.fork_seq}"
        rows.append((info.id, _when(info.updated_at), str(info.signals), str(info.events), parent))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].rjust(widths[2]),
            row[3].rjust(widths[3]),
            row[4],
        ]
        print("  ".join(cells).rstrip())
    return _EXIT_OK


async def _cmd_delete(args: argparse.Namespace) -> int:
    from oturn.store.sessions import delete

    async with _open(args) as store:
        if not await delete(store, args.session):
            raise _CommandError(f"there is no session {args.session!r} in this store")
    print(f"deleted {args.session}")
    return _EXIT_OK


async def _cmd_prune(args: argparse.Namespace) -> int:
    from oturn.store.sessions import parse_duration, prune

    if args.older_than is None and args.keep is None:
        raise _CommandError("say what to prune: --older-than AGE and/or --keep N", _EXIT_USAGE)
    older_than = parse_duration(args.older_than) if args.older_than is not None else None
    async with _open(args) as store:
        deleted = await prune(store, older_than=older_than, keep=args.keep)
    for session in deleted:
        print(f"deleted {session}")
    print(f"{len(deleted)} session(s) deleted")
    return _EXIT_OK


async def _cmd_salvage(args: argparse.Namespace) -> int:
    from oturn.agent.codec import agent_codec
    from oturn.store.sessions import salvage

    async with _open(args) as store:
        await _known(store, args.session)
        result = await salvage(store, args.session, agent_codec(), new=args.new)
    if result.problem is not None:
        print(f"{args.session}: {result.problem}")
    print(f"salvaged signals 1..{result.upto} of {result.source} into {result.session}")
    return _EXIT_OK


def _load_agent_reducer(spec: str) -> Any:
    """The turn reducer of the Agent named by ``MODULE:NAME`` (the attribute, or what calling it returns)."""
    from oturn.agent.agent import Agent
    from oturn.agent.turn import TurnReducer

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _CommandError(f"--agent takes MODULE:NAME (e.g. myapp.agents:build); got {spec!r}", _EXIT_USAGE)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _CommandError(f"--agent: cannot import {module_name!r}: {exc}", _EXIT_USAGE) from exc
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise _CommandError(f"--agent: {module_name!r} has no attribute {attr!r}", _EXIT_USAGE) from None
    if not isinstance(value, Agent) and callable(value):
        value = value()
    if isinstance(value, tuple):
        value = next((item for item in value if isinstance(item, Agent)), value)
    if not isinstance(value, Agent):
        raise _CommandError(f"--agent: {spec} is not an Agent (nor a function returning one)", _EXIT_USAGE)
    return TurnReducer(value.turn_config)


async def _cmd_replay(args: argparse.Namespace) -> int:
    from oturn._exceptions import UsageError
    from oturn.agent.codec import agent_codec
    from oturn.store.replay import render_transcript, replay, verify
    from oturn.store.sessions import agent_reducer
    from oturn.store.transfer import stored_envelopes

    codec = agent_codec()
    out = sys.stdout
    color = out.isatty() and not os.environ.get("NO_COLOR")
    async with _open(args) as store:
        info = await _known(store, args.session)
        if args.agent is not None:
            reducer = _load_agent_reducer(args.agent)
        else:
            try:
                reducer = agent_reducer(info.meta)
            except UsageError as exc:
                if args.verify:
                    raise _CommandError(f"{exc}: name its agent with --agent MODULE:NAME", _EXIT_USAGE) from None
                print(
                    f"oturn replay: {exc}; printing the stored events (--agent MODULE:NAME replays them)",
                    file=sys.stderr,
                )
                if not args.quiet:
                    for piece in render_transcript(await stored_envelopes(store, args.session, codec), color=color):
                        out.write(piece)
                return _EXIT_OK
        result = await replay(store, args.session, reducer, reducer.initial(), codec)
        if not args.quiet:
            for piece in render_transcript(result.envelopes, color=color):
                out.write(piece)
            out.flush()
        if not args.verify:
            return _EXIT_OK
        mismatch = await verify(store, args.session, reducer, reducer.initial(), codec, result=result)
    if mismatch is not None:
        print(f"oturn replay: MISMATCH\n{mismatch}", file=sys.stderr)
        return _EXIT_FAILED
    print(
        f"verified: {result.signals} signals replayed reproduce all {len(result.records)} stored events byte for byte",
        file=sys.stderr,
    )
    return _EXIT_OK


async def _cmd_export(args: argparse.Namespace) -> int:
    import io

    import anyio

    from oturn._exceptions import UsageError
    from oturn.agent.codec import agent_codec
    from oturn.store.sessions import agent_reducer
    from oturn.store.transfer import export_jsonl, export_markdown

    codec = agent_codec()
    async with _open(args) as store:
        info = await _known(store, args.session)
        if args.format == "jsonl":
            buffer = io.BytesIO()
            await export_jsonl(store, args.session, codec, buffer, snapshots=args.snapshots, upto=args.upto)
            data = buffer.getvalue()
        else:
            try:
                reducer: Any = agent_reducer(info.meta)
            except UsageError:
                reducer = None  # the stored events are the transcript
            text = await export_markdown(
                store,
                args.session,
                codec,
                reducer=reducer,
                initial=reducer.initial() if reducer is not None else None,
            )
            data = text.encode("utf-8")
    if args.output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return _EXIT_OK
    try:
        await anyio.Path(args.output).write_bytes(data)
    except OSError as exc:
        raise _CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    print(f"exported {args.session} to {args.output}", file=sys.stderr)
    return _EXIT_OK


async def _cmd_import(args: argparse.Namespace) -> int:
    import anyio

    from oturn.agent.codec import agent_codec
    from oturn.store.transfer import import_jsonl

    if args.file == "-":
        data = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        try:
            data = await anyio.Path(args.file).read_bytes()
        except OSError as exc:
            raise _CommandError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
        name = args.file
    async with _open(args, create=True) as store:
        result = await import_jsonl(store, data, agent_codec(), session=args.new, name=name)
    print(
        f"imported {result.session} ({result.signals} signals, {result.events} events"
        f"{f', {result.snapshots} snapshot(s)' if result.snapshots else ''})"
    )
    return _EXIT_OK


async def _cmd_fork(args: argparse.Namespace) -> int:
    from oturn.store.sessions import fork

    async with _open(args) as store:
        await _known(store, args.session)
        new = await fork(store, args.session, at_seq=args.at, new=args.new)
    print(f"forked {args.session} at signal {args.at} into {new}")
    return _EXIT_OK
