"""The DAGs folder parses as Airflow's dag-processor parses it, and the DAG files stay thin."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import pytest

from tests.airflow.conftest import DAGS_FOLDER

DAG_IDS = {"flights__daily_ingest", "models__weekly_retrain", "flights__backfill"}


@pytest.fixture(scope="module")
def dagbag(airflow_home: Path):
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=DAGS_FOLDER, bundle_path=DAGS_FOLDER, bundle_name="dags-folder")


def test_dagbag_imports_every_dag_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == DAG_IDS
    parsed = {Path(stat.file).name for stat in dagbag.dagbag_stats}
    assert parsed == {f"{dag_id}.py" for dag_id in DAG_IDS}  # .airflowignore skips the library


def test_schedules_and_params(dagbag):
    daily = dagbag.get_dag("flights__daily_ingest")
    assert daily.timetable.expression == "0 0 * * *"  # midnight in New York, like the partitions
    assert daily.timetable.timezone.name == "America/New_York"
    assert not daily.catchup
    assert dagbag.get_dag("models__weekly_retrain").timetable.expression == "0 0 * * 0"
    backfill = dagbag.get_dag("flights__backfill")
    assert backfill.schedule is None
    assert {"start_date", "end_date"} <= set(backfill.params.keys())
    for dag_id in DAG_IDS:
        dag = dagbag.get_dag(dag_id)
        assert len(dag.tasks) == 1, "one task: launch the Dagster run and wait for it"
        assert "dagster" in dag.tags


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize(
    "path", sorted(DAGS_FOLDER.rglob("*.py")), ids=lambda p: str(p.relative_to(DAGS_FOLDER))
)
def test_no_dagster_import_in_dag_files_or_trigger(path: Path):
    dagster_imports = {
        m
        for m in _imports(path)
        if m.split(".")[0].startswith("dagster") and m != "dagster_trigger"
    }
    dagster_imports = {m for m in dagster_imports if not m.startswith("dagster_trigger.")}
    assert not dagster_imports, f"{path.name} imports {dagster_imports}"


@pytest.mark.parametrize(
    ("logical", "offset", "expected"),
    [
        # offset 0: a 2013 logical date is that day
        ("2013-03-10", "0", ("2013-03-10", "2013-03-03..2013-03-09")),
        # today's real date mapped onto the data (leap days included in the offset)
        ("2026-12-01", str((date(2026, 12, 1) - date(2013, 7, 1)).days), None),
    ],
)
def test_the_clock_maps_logical_dates_onto_the_data(
    airflow_home: Path, monkeypatch: pytest.MonkeyPatch, logical: str, offset: str, expected
):
    from dagster_trigger.operators import on_the_clock

    monkeypatch.setenv("MLOPS_CLOCK_OFFSET_DAYS", offset)
    day, _config, tags = on_the_clock("day", date.fromisoformat(logical))
    _key, config, week_tags = on_the_clock("week", date.fromisoformat(logical))
    window = config["ops"]["training_set"]["config"]
    if expected:
        assert (day, week_tags["mlops/simulated_week"]) == expected[:2]
        assert window == {"start_date": "2013-01-01", "end_date": "2013-03-09"}
    else:
        assert day == tags["mlops/simulated_day"] == "2013-07-01"
        assert week_tags["mlops/simulated_week"] == "2013-06-24..2013-06-30"
        assert window == {"start_date": "2013-01-01", "end_date": "2013-06-30"}  # from January 1


@pytest.mark.parametrize(
    ("mode", "logical", "reason"),
    [
        ("day", "2026-12-01", "simulated 2026-12-01 is outside the data"),
        ("day", "2012-12-31", "simulated 2012-12-31 is outside the data"),
        ("week", "2014-01-03", "simulated 2013-12-27 .. 2014-01-02 is outside the data"),
        ("week", "2013-01-20", "has only 19 days of history"),
    ],
)
def test_dates_without_data_skip_the_run_with_the_reason(
    airflow_home: Path, monkeypatch: pytest.MonkeyPatch, mode: str, logical: str, reason: str
):
    from airflow.sdk.exceptions import AirflowSkipException
    from dagster_trigger.operators import on_the_clock

    monkeypatch.setenv("MLOPS_CLOCK_OFFSET_DAYS", "0")
    with pytest.raises(AirflowSkipException, match=reason):
        on_the_clock(mode, date.fromisoformat(logical))
