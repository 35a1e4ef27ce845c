"""Smoke run of `python -m benchmarks.pit_join --quick --json`: one JSON object with every
figure, and the ASOF store equal to the merge_asof floor and to Feast's store cell by cell."""

import json
import math
import os
import subprocess
import sys

from tests.paths import REPO_ROOT


def test_quick_benchmark_prints_the_figures():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.pit_join", "--quick", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    for key in (
        "rows",
        "seconds",
        "floor_seconds",
        "ratio_to_floor",
        "growth_exponent",
        "peak_mib",
        "floor_peak_mib",
        "cells_compared",
        "cells_differing",
    ):
        assert key in data, key
    assert data["rows"] > 1000
    assert data["seconds"] > 0
    assert data["floor_seconds"] > 0
    assert math.isfinite(data["growth_exponent"])
    assert data["cells_compared"] > 4 * data["rows"]
    assert data["cells_differing"] == 0
    assert [r["scale"] for r in data["runs"]] == [1, 1, 2, 2]
