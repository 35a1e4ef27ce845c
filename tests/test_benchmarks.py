"""Smoke run of the performance suite (`make bench`) at tiny sizes on the session's spine: the
harness works end to end and every figure is a sane number. Not the targets: those need the
full-year run on an idle machine.

``-m slow`` (62 s in the last clean-clone CI run, which is close to its 30-minute budget): the
default suite keeps the quick point-in-time join benchmark (tests/features/test_pit_join_bench.py)
and the 20-second soak of the endpoint."""

import json
import math

import pytest

from benchmarks import suite


@pytest.mark.slow
def test_suite_runs_and_reports_sane_numbers(spine, first_model, tmp_path):
    sections = ("pit_join", "materialization", "training", "serving", "scaling")
    report = suite.run(suite.SMOKE, tmp_path, home=spine.paths.home, sections=sections)
    data = json.loads((tmp_path / "report.json").read_text())
    markdown = (tmp_path / "report.md").read_text()
    assert data["machine"]["cpu_count"] >= 1
    assert data["machine"]["packages"]["feast"] != "-"
    rows = {r["name"]: r for rows in report.sections.values() for r in rows}
    assert len(rows) >= 20
    for name, row in rows.items():
        assert math.isfinite(row["value"]), (name, row)
        assert name in markdown
    # times, rates and ratios are positive; a growth exponent at these sizes is only finite
    positive = [n for n in rows if "exponent" not in n]
    assert [n for n in positive if rows[n]["value"] <= 0] == []
    serving = data["details"]["serving"]
    assert serving["sustained"]["errors"] == 0
    assert serving["sustained"]["requests"] > 0
    assert serving["saturation"]["achieved_rps"] > 0
    assert data["details"]["mlflow_serve"]["saturation"]["errors"] == 0
    assert data["details"]["pit_join"]["mismatched_cells"] == 0  # Feast = merge_asof, cell by cell
    scaling = data["details"]["scaling"]
    assert scaling["flights"][1] == 2 * scaling["flights"][0]
