"""Test-only DAG (a second DAG bundle in the tests): one task that runs the trigger for the
Dagster job named in its params, without retries, and records the exception it failed with."""

from pathlib import Path

import pendulum
from airflow.sdk import dag, task
from dagster_trigger.airflow_task import run_dagster_job


def record_failure(context) -> None:
    Path(context["params"]["failure_file"]).write_text(str(context["exception"]))


@dag(
    dag_id="tests__dagster_trigger",
    schedule=None,
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    params={"job_name": "quick_job", "location": "airflow_trigger_tests", "failure_file": ""},
)
def tests__dagster_trigger() -> None:
    @task(retries=0, on_failure_callback=record_failure)
    def trigger(params: dict | None = None) -> dict:
        params = params or {}
        return run_dagster_job(params["job_name"], location=params["location"])

    trigger()


tests__dagster_trigger()
