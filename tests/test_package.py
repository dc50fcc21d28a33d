"""Packaging promises: the public API, lazy imports, the command line, typing, the test harness."""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.machinery
import importlib.metadata
import importlib.resources
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import oturn
from oturn import cli

PACKAGE_DIR = Path(oturn.__file__).resolve().parent
HEAVY = ("litellm", "redis", "aiosqlite", "textual")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL, env=env
    )


def _static_all(path: Path) -> list[str] | None:
    """The literal ``__all__`` list of a module, read without importing it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert value is not None
            names = ast.literal_eval(value)
            assert isinstance(names, list | tuple), f"{path}: __all__ is not a literal list"
            return [str(name) for name in names]
    return None


# -- the public API -----------------------------------------------------------------------


def test_all_is_sorted_and_unique() -> None:
    assert oturn.__all__ == sorted(oturn.__all__)
    assert len(set(oturn.__all__)) == len(oturn.__all__)


def test_every_public_name_resolves() -> None:
    missing = [name for name in oturn.__all__ if not hasattr(oturn, name)]
    assert missing == []


def test_public_classes_are_exported_from_their_home() -> None:
    for name in oturn.__all__:
        value = getattr(oturn, name)
        module = getattr(value, "__module__", None)
        if isinstance(value, type) and module is not None:
            assert module.startswith("oturn."), f"{name} comes from {module}"


def test_subpackage_all_lists_are_sorted_and_resolve() -> None:
    inits = sorted(p for p in PACKAGE_DIR.rglob("__init__.py") if p.parent != PACKAGE_DIR)  # top: tested above
    assert PACKAGE_DIR / "core" / "__init__.py" in inits
    checked = 0
    for init in inits:
        names = _static_all(init)
        if names is None:
            continue
        rel = init.relative_to(PACKAGE_DIR.parent).with_suffix("")
        assert names == sorted(names), f"{rel}: __all__ is not sorted"
        assert len(set(names)) == len(names), f"{rel}: __all__ has duplicates"
        checked += 1
    assert checked >= 2
    for sub in ("oturn.core", "oturn.runtime"):
        module = importlib.import_module(sub)
        assert [n for n in module.__all__ if not hasattr(module, n)] == [], sub


def test_version_matches_the_distribution() -> None:
    assert isinstance(oturn.__version__, str)
    assert importlib.metadata.version("oturn") == oturn.__version__


def test_py_typed_ships() -> None:
    marker = importlib.resources.files("oturn").joinpath("py.typed")
    assert marker.is_file()


# -- import cost ----------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["oturn", "oturn.cli"])
def test_import_does_not_load_heavy_dependencies(module: str) -> None:
    code = (
        f"import sys, json, {module}\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# -- the command line ---------------------------------------------------------------------


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"oturn {oturn.__version__}\n"
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"oturn {oturn.__version__}\n"


def test_cli_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "usage: oturn" in capsys.readouterr().out


def test_cli_rejects_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_cli_demo_without_demo_module(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "_DEMO_MODULE", "oturn._no_such_demo")
    assert cli.main(["demo"]) == 2
    assert "not available" in capsys.readouterr().err


def test_cli_demo_passes_its_arguments_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str] | None] = []

    def fake_main(argv: list[str] | None = None) -> int:
        seen.append(argv)
        return 3

    module = types.ModuleType("oturn_fake_demo")
    module.__spec__ = importlib.machinery.ModuleSpec("oturn_fake_demo", None)
    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "oturn_fake_demo", module)
    monkeypatch.setattr(cli, "_DEMO_MODULE", "oturn_fake_demo")
    assert cli.main(["demo", "--yes", "--fast"]) == 3
    assert cli.main(["demo"]) == 3
    assert seen == [["--yes", "--fast"], None]
    assert cli.main(["--bogus", "demo"]) == 2
    assert len(seen) == 2


def test_python_dash_m_oturn() -> None:
    result = _run(sys.executable, "-m", "oturn", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"oturn {oturn.__version__}\n"


def test_console_script() -> None:
    script = Path(sys.executable).with_name("oturn")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable} (install the package: pip install -e .)")
    result = _run(str(script), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"oturn {oturn.__version__}\n"


# -- the test harness itself (tests/conftest.py) --------------------------------------------


async def test_plain_async_tests_run_on_asyncio() -> None:
    assert isinstance(asyncio.get_running_loop(), asyncio.AbstractEventLoop)


def _running_backend() -> str:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "trio"  # inside an async test and no asyncio loop: trio is running it
    return "asyncio"


@pytest.fixture
async def backend_seen_by_fixture() -> str:
    return _running_backend()


@pytest.mark.anyio
async def test_anyio_tests_run_on_their_backend(anyio_backend: str, backend_seen_by_fixture: str) -> None:
    # pytest-asyncio's auto mode must not take these over (it would run "trio" on asyncio)
    assert _running_backend() == anyio_backend
    assert backend_seen_by_fixture == anyio_backend
