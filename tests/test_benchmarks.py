"""The benchmark scripts run and print what the issues ask for (tiny sizes; no figure is judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_nucleus_json_has_a_row_per_loop_and_subscriber_count() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_nucleus.py"), "--json", "--repeat", "1", "--deliveries", "2000"],
        capture_output=True,
        check=True,
        timeout=120,
        text=True,
    )
    report = json.loads(done.stdout)
    rows = report["rows"]
    loops = {row["loop"] for row in rows}
    assert "asyncio" in loops
    assert [row["subscribers"] for row in rows if row["loop"] == "asyncio"] == [0, 1, 10, 100]
    for row in rows:
        assert {"loop", "subscribers", "oturn_ns", "baseline_ns", "ratio"} <= set(row)
        assert row["oturn_ns"] > 0
        assert row["baseline_ns"] > 0
        assert abs(row["ratio"] - row["oturn_ns"] / row["baseline_ns"]) < 0.01
        assert (row["floor_ns"] is None) == (row["subscribers"] != 0)
