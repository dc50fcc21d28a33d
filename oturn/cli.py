"""The ``oturn`` command line.

Kept import-light: ``import oturn.cli`` loads the standard library and
``oturn._version`` only; whatever a subcommand needs is imported when it runs.

- ``oturn --version`` / ``oturn version``: print ``oturn <version>``.
- ``oturn demo``: run the bundled agent demo (``oturn._demo``), offline.
- ``oturn chat --model PROVIDER/MODEL``: the same loop against a real model (``oturn._chat``).
- ``oturn sessions``, ``replay``, ``export``, ``import``, ``fork``: stored sessions
  (:mod:`oturn.cli_sessions`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence

from oturn._version import __version__

__all__ = ["main"]

_DEMO_MODULE = "oturn._demo"


def _version_line() -> str:
    return f"oturn {__version__}"


def _cmd_version(args: argparse.Namespace) -> int:
    print(_version_line())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if importlib.util.find_spec(_DEMO_MODULE) is None:
        print(
            "oturn demo: the agent demo is not available in this version yet.\n"
            "Try the examples instead, e.g.: python examples/traffic_light.py",
            file=sys.stderr,
        )
        return 2
    try:
        module = importlib.import_module(_DEMO_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "oturn":
            raise
        print(
            f"oturn demo: it needs the {exc.name!r} package, which is not installed.\n"
            "Install the extras with: pip install 'oturn[all]'",
            file=sys.stderr,
        )
        return 2
    demo_main: Callable[..., object] | None = getattr(module, "main", None)
    if not callable(demo_main):
        print(f"oturn demo: {_DEMO_MODULE} has no main() function", file=sys.stderr)
        return 2
    result = demo_main(list(args.demo_args)) if args.demo_args else demo_main()
    if inspect.iscoroutine(result):
        from oturn.runtime.run import run

        coroutine = result

        async def _await() -> object:
            return await coroutine

        result = run(_await)
    if isinstance(result, bool):
        return int(not result)
    return result if isinstance(result, int) else 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from oturn._chat import main as chat_main

    try:
        return chat_main(list(args.demo_args))
    except SystemExit as exc:  # argparse: --help and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oturn",
        description="oturn: an embeddable runtime for turn-based LLM agents.",
    )
    parser.add_argument("--version", action="version", version=_version_line())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    version = commands.add_parser("version", help="print the installed version")
    version.set_defaults(func=_cmd_version)

    # Everything after ``demo`` (``--help`` included) is the demo's own command line.
    demo = commands.add_parser("demo", help="run the agent demo (when available)", add_help=False)
    demo.set_defaults(func=_cmd_demo, passes_through=True)

    # ``chat`` works the same way: its own options follow it.
    chat = commands.add_parser(
        "chat", help="chat with a real model through LiteLLM (--model PROVIDER/MODEL)", add_help=False
    )
    chat.set_defaults(func=_cmd_chat, passes_through=True)

    from oturn.cli_sessions import add_commands  # stdlib-only at import, like this module

    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser.parse_known_args(words)
        if getattr(args, "passes_through", False):
            # only what follows the command name goes to the command
            passed = words[words.index(args.command) + 1 :]
            if extra != passed:
                parser.error(f"unrecognized arguments: {' '.join(extra[: len(extra) - len(passed)])}")
            args.demo_args = passed
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version and usage errors exit from argparse
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
