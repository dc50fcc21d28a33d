"""What ``import oturn`` costs a fresh interpreter (target: at most 100 ms).

Two measures, each the median of ``--runs`` fresh subprocesses:

- wall time of ``python -c 'import oturn'`` minus the wall time of ``python -c pass``
  (interpreter start-up, measured in the same run, interleaved so drift hits both);
- the cumulative time ``python -X importtime`` reports for the ``oturn`` package.

Before measuring, one run with bytecode writing enabled caches oturn's compiled
modules (``__pycache__``, as an installed package has them), even on machines that set
``PYTHONDONTWRITEBYTECODE``; ``--cold`` skips that and measures whatever is there.

    python benchmarks/bench_import.py            # table
    python benchmarks/bench_import.py --json     # one JSON object with "rows"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

TARGET_MS = 100.0
MODULES = ("oturn", "oturn.cli")


def _env(write_bytecode: bool) -> dict[str, str]:
    env = dict(os.environ)
    if write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _wall(code: str, env: dict[str, str]) -> float:
    """Seconds for a fresh interpreter to run ``code`` and exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def _importtime(module: str, env: dict[str, str]) -> float:
    """Cumulative seconds ``-X importtime`` reports for ``module``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    for line in result.stderr.splitlines():
        # "import time:      self [us] | cumulative | imported package"
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) == 3 and fields[2].strip() == module:
            return int(fields[1]) / 1e6
    raise RuntimeError(f"-X importtime did not report {module!r}:\n{result.stderr[-2000:]}")


def measure(runs: int, cold: bool) -> list[dict[str, Any]]:
    env = _env(write_bytecode=False)
    if not cold:
        for module in MODULES:  # cache bytecode once, then measure as an installed package runs
            subprocess.run([sys.executable, "-c", f"import {module}"], env=_env(True), check=True)
    baseline: list[float] = []
    walls: dict[str, list[float]] = {m: [] for m in MODULES}
    selfs: dict[str, list[float]] = {m: [] for m in MODULES}
    _wall("pass", env)  # warm the OS file cache
    for _ in range(runs):
        baseline.append(_wall("pass", env))
        for module in MODULES:
            walls[module].append(_wall(f"import {module}", env))
            selfs[module].append(_importtime(module, env))
    base = statistics.median(baseline)
    rows: list[dict[str, Any]] = [
        {"name": "python -c pass (baseline)", "value": round(base * 1e3, 2), "unit": "ms", "target": None}
    ]
    for module in MODULES:
        wall = statistics.median(walls[module]) - base
        rows.append(
            {
                "name": f"import {module} (wall - baseline)",
                "value": round(wall * 1e3, 2),
                "unit": "ms",
                "target": TARGET_MS,
            }
        )
        rows.append(
            {
                "name": f"import {module} (-X importtime cumulative)",
                "value": round(statistics.median(selfs[module]) * 1e3, 2),
                "unit": "ms",
                "target": TARGET_MS,
            }
        )
    for row in rows:
        row["ok"] = None if row["target"] is None else row["value"] <= row["target"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=15, help="subprocesses per measure (median kept)")
    parser.add_argument("--cold", action="store_true", help="do not cache bytecode before measuring")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    rows = measure(args.runs, args.cold)
    if args.json:
        print(json.dumps({"benchmark": "import", "python": sys.version.split()[0], "runs": args.runs, "rows": rows}))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'measure':{width}} {'value':>9} {'unit':4} {'target':>7}")
    for r in rows:
        target = "" if r["target"] is None else f"{r['target']:g}"
        mark = "" if r["ok"] is None else "ok" if r["ok"] else "MISS"
        print(f"{r['name']:{width}} {r['value']:>9.2f} {r['unit']:4} {target:>7} {mark}")
    print(f"(median of {args.runs} runs; python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
