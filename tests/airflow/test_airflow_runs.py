"""Airflow runs the DAGs with ``dag.test()`` against the live Dagster webserver (see conftest):
the task's outcome is the Dagster run's, whether it waits in the triggerer (deferred, run
inline by ``dag.test()``) or in the task; the Dagster run carries the Airflow run's tags;
``flights__daily_ingest`` materializes the simulated day's partition end to end, and a logical
date outside the data is a skipped run with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pendulum
import pytest

from tests.airflow.conftest import DAGS_FOLDER, TEST_DAGS_FOLDER, AirflowEnv, DagsterServer
from tests.airflow.dagster_test_location import FAILURE_MESSAGE

RUNS_BY_TAG = """
query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId jobName status tags { key value } } } } }
"""


def _dag(folder: Path, bundle: str, dag_id: str):
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name=bundle)
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def _dagster_runs_of(
    dagster: DagsterServer, dag_id: str, run_id: str, task_id: str | None = None
) -> list[dict]:
    tags = [{"key": "airflow/dag_id", "value": dag_id}, {"key": "airflow/run_id", "value": run_id}]
    if task_id:
        tags.append({"key": "airflow/task_id", "value": task_id})
    data = dagster.graphql(RUNS_BY_TAG, {"filter": {"tags": tags}})
    return data["runsOrError"]["results"]


def _trigger_test_dag(airflow_env: AirflowEnv, tmp_path: Path, job_name: str):
    dag = _dag(TEST_DAGS_FOLDER, "trigger-tests", "tests__dagster_trigger")
    failure_file = tmp_path / "failure.txt"
    conf = {"job_name": job_name, "failure_file": str(failure_file)}
    run = dag.test(logical_date=pendulum.now("UTC"), run_conf=conf)
    failures = {}
    for task_id in TASKS:
        path = Path(f"{failure_file}.{task_id}")
        failures[task_id] = path.read_text() if path.exists() else ""
    return run, failures


TASKS = ("trigger", "trigger_in_task")  # deferred to the triggerer / waiting in the task


def _task_states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_connection_forms_give_the_webserver_url(airflow_home: Path):
    from airflow.sdk import Connection
    from dagster_trigger.airflow_task import base_url

    def url(**fields) -> str:
        return base_url(Connection(conn_id="dagster_default", conn_type="http", **fields))

    assert url(host="127.0.0.1", port=3000) == "http://127.0.0.1:3000"
    assert url(host="dagster.internal", schema="https") == "https://dagster.internal"
    assert url(host="https://example.org/") == "https://example.org"
    extra = json.dumps({"path_prefix": "/dagster/"})
    assert url(host="h", port=80, extra=extra) == "http://h:80/dagster"


def test_success_tags_the_dagster_run_with_the_airflow_run(airflow_env: AirflowEnv, tmp_path: Path):
    run, failures = _trigger_test_dag(airflow_env, tmp_path, "quick_job")
    assert run.state == "success", failures
    assert _task_states(run) == dict.fromkeys(TASKS, "success")
    for task_id in TASKS:
        [dagster_run] = _dagster_runs_of(
            airflow_env.dagster, "tests__dagster_trigger", run.run_id, task_id
        )
        tags = {t["key"]: t["value"] for t in dagster_run["tags"]}
        assert dagster_run["status"] == "SUCCESS"
        assert tags["airflow/try_number"] == "1"


def test_failed_dagster_run_fails_the_task_with_run_id_and_message(
    airflow_env: AirflowEnv, tmp_path: Path
):
    run, failures = _trigger_test_dag(airflow_env, tmp_path, "failing_job")
    assert run.state == "failed"
    assert _task_states(run) == dict.fromkeys(TASKS, "failed")
    for task_id in TASKS:
        [dagster_run] = _dagster_runs_of(
            airflow_env.dagster, "tests__dagster_trigger", run.run_id, task_id
        )
        assert dagster_run["status"] == "FAILURE"
        assert dagster_run["runId"] in failures[task_id]
        assert FAILURE_MESSAGE in failures[task_id]
        assert "fail_deliberately" in failures[task_id]


def test_unknown_job_fails_the_task_with_a_clear_error(airflow_env: AirflowEnv, tmp_path: Path):
    run, failures = _trigger_test_dag(airflow_env, tmp_path, "no_such_job")
    assert run.state == "failed"
    for task_id in TASKS:
        assert "no job 'no_such_job'" in failures[task_id]
        assert "quick_job" in failures[task_id]
    assert _dagster_runs_of(airflow_env.dagster, "tests__dagster_trigger", run.run_id) == []


def test_logical_date_outside_the_data_is_a_skipped_run(airflow_env: AirflowEnv):
    """Today's real date (offset 0): no Dagster run, the task skipped, not failed."""
    dag = _dag(DAGS_FOLDER, "dags-folder", "flights__daily_ingest")
    run = dag.test(logical_date=pendulum.datetime(2026, 12, 1, tz="America/New_York"))
    assert run.state == "success"
    assert _task_states(run) == {"ingest_features": "skipped"}
    assert _dagster_runs_of(airflow_env.dagster, "flights__daily_ingest", run.run_id) == []


@pytest.mark.parametrize(
    ("day", "run_config"),
    [
        # The local tier's executor: one process for the whole run (~20 s on two cores).
        pytest.param("2013-01-05", {}, id="default-executor"),
        # With a run config passed through the DAG param (here: no step retries).
        pytest.param(
            "2013-01-06",
            {"execution": {"config": {"retries": {"disabled": {}}}}},
            id="with-run-config",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_daily_ingest_materializes_the_simulated_days_partition(
    airflow_env: AirflowEnv, day: str, run_config: dict, monkeypatch: pytest.MonkeyPatch
):
    """End to end: Airflow's flights__daily_ingest -> Dagster's ingest_features_job, on a
    clock whose offset maps the real logical date 2026-MM-DD onto the data's 2013-MM-DD."""
    dag = _dag(DAGS_FOLDER, "dags-folder", "flights__daily_ingest")
    real_day = pendulum.parse(day).add(years=13)  # the same day in 2026
    offset = (real_day.date() - pendulum.parse(day).date()).days
    monkeypatch.setenv("MLOPS_CLOCK_OFFSET_DAYS", str(offset))
    logical_date = pendulum.datetime(
        real_day.year, real_day.month, real_day.day, tz="America/New_York"
    )
    run = dag.test(logical_date=logical_date, run_conf={"run_config": run_config})
    assert run.state == "success"

    dagster = airflow_env.dagster
    [dagster_run] = _dagster_runs_of(dagster, "flights__daily_ingest", run.run_id)
    tags = {t["key"]: t["value"] for t in dagster_run["tags"]}
    assert dagster_run["jobName"] == "ingest_features_job"
    assert dagster_run["status"] == "SUCCESS"
    assert tags["dagster/partition"] == day
    assert tags["airflow/try_number"] == "1"
    assert tags["mlops/simulated_day"] == day
    assert tags["mlops/clock_offset_days"] == str(offset)

    data = dagster.graphql(
        """query($key: AssetKeyInput!, $day: String!) { assetOrError(assetKey: $key) {
             ... on Asset { assetMaterializations(partitions: [$day]) { partition runId } } } }""",
        {"key": {"path": ["validated_flights"]}, "day": day},
    )
    materialized = data["assetOrError"]["assetMaterializations"]
    assert {"partition": day, "runId": dagster_run["runId"]} in materialized
    lake = dagster.mlops_home / "lake"
    assert (lake / "validated_flights" / f"{day}.parquet").exists()
