"""Airflow runs the DAGs with ``dag.test()`` against the live Dagster webserver (see conftest):
the task's outcome is the Dagster run's, the Dagster run carries the Airflow run's tags, and
``flights__daily_ingest`` materializes the logical date's partition end to end."""

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


def _dagster_runs_of(dagster: DagsterServer, dag_id: str, run_id: str) -> list[dict]:
    tags = [{"key": "airflow/dag_id", "value": dag_id}, {"key": "airflow/run_id", "value": run_id}]
    data = dagster.graphql(RUNS_BY_TAG, {"filter": {"tags": tags}})
    return data["runsOrError"]["results"]


def _trigger_test_dag(airflow_env: AirflowEnv, tmp_path: Path, job_name: str):
    dag = _dag(TEST_DAGS_FOLDER, "trigger-tests", "tests__dagster_trigger")
    failure_file = tmp_path / "failure.txt"
    conf = {"job_name": job_name, "failure_file": str(failure_file)}
    run = dag.test(logical_date=pendulum.now("UTC"), run_conf=conf)
    failure = failure_file.read_text() if failure_file.exists() else ""
    return run, failure


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
    run, failure = _trigger_test_dag(airflow_env, tmp_path, "quick_job")
    assert run.state == "success", failure
    [dagster_run] = _dagster_runs_of(airflow_env.dagster, "tests__dagster_trigger", run.run_id)
    tags = {t["key"]: t["value"] for t in dagster_run["tags"]}
    assert dagster_run["status"] == "SUCCESS"
    assert tags["airflow/task_id"] == "trigger"
    assert tags["airflow/try_number"] == "1"


def test_failed_dagster_run_fails_the_task_with_run_id_and_message(
    airflow_env: AirflowEnv, tmp_path: Path
):
    run, failure = _trigger_test_dag(airflow_env, tmp_path, "failing_job")
    assert run.state == "failed"
    [dagster_run] = _dagster_runs_of(airflow_env.dagster, "tests__dagster_trigger", run.run_id)
    assert dagster_run["status"] == "FAILURE"
    assert dagster_run["runId"] in failure
    assert FAILURE_MESSAGE in failure


def test_unknown_job_fails_the_task_with_a_clear_error(airflow_env: AirflowEnv, tmp_path: Path):
    run, failure = _trigger_test_dag(airflow_env, tmp_path, "no_such_job")
    assert run.state == "failed"
    assert "no job 'no_such_job'" in failure
    assert "quick_job" in failure
    assert _dagster_runs_of(airflow_env.dagster, "tests__dagster_trigger", run.run_id) == []


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
def test_daily_ingest_materializes_the_logical_dates_partition(
    airflow_env: AirflowEnv, day: str, run_config: dict
):
    """End to end: Airflow's flights__daily_ingest -> Dagster's ingest_features_job."""
    dag = _dag(DAGS_FOLDER, "dags-folder", "flights__daily_ingest")
    logical_date = pendulum.parse(day, tz="America/New_York")  # midnight, as scheduled
    run = dag.test(logical_date=logical_date, run_conf={"run_config": run_config})
    assert run.state == "success"

    dagster = airflow_env.dagster
    [dagster_run] = _dagster_runs_of(dagster, "flights__daily_ingest", run.run_id)
    tags = {t["key"]: t["value"] for t in dagster_run["tags"]}
    assert dagster_run["jobName"] == "ingest_features_job"
    assert dagster_run["status"] == "SUCCESS"
    assert tags["dagster/partition"] == day
    assert tags["airflow/try_number"] == "1"

    data = dagster.graphql(
        """query($key: AssetKeyInput!, $day: String!) { assetOrError(assetKey: $key) {
             ... on Asset { assetMaterializations(partitions: [$day]) { partition runId } } } }""",
        {"key": {"path": ["validated_flights"]}, "day": day},
    )
    materialized = data["assetOrError"]["assetMaterializations"]
    assert {"partition": day, "runId": dagster_run["runId"]} in materialized
    lake = dagster.mlops_home / "lake"
    assert (lake / "validated_flights" / f"{day}.parquet").exists()
