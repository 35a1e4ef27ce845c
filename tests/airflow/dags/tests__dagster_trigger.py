"""Test-only DAG (a second DAG bundle in the tests): one task that runs the trigger for the
Dagster job named in its params, without retries, and records the exception it failed with
(in ``<failure_file>.<task_id>``).
``deferrable`` (a param) picks the triggerer wait or the in-task wait."""

from pathlib import Path

import pendulum
from airflow.sdk import dag
from dagster_trigger.operators import DagsterRunOperator


def record_failure(context) -> None:
    path = f"{context['params']['failure_file']}.{context['ti'].task_id}"
    Path(path).write_text(str(context["exception"]))


@dag(
    dag_id="tests__dagster_trigger",
    schedule=None,
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    params={"job_name": "quick_job", "location": "airflow_trigger_tests", "failure_file": ""},
)
def tests__dagster_trigger() -> None:
    DagsterRunOperator(
        task_id="trigger",
        job_name="{{ params.job_name }}",
        location="{{ params.location }}",
        retries=0,
        on_failure_callback=record_failure,
    )
    DagsterRunOperator(
        task_id="trigger_in_task",
        job_name="{{ params.job_name }}",
        location="{{ params.location }}",
        deferrable=False,
        retries=0,
        on_failure_callback=record_failure,
    )


tests__dagster_trigger()
