"""### models__weekly_retrain

Every week, runs Dagster's training job on the **simulated week** and waits for it in Airflow's
triggerer. The week is the seven simulated days before the logical date (simulated = real -
`MLOPS_CLOCK_OFFSET_DAYS`, see docs/airflow.md); the training set is the 365 days up to its last
day, from January 1 at the earliest (holdout and validation 14 days each). A week outside the
data, or one with under 42 days of history, is a **skipped** run whose log says why.

The job name comes from the `job_name` param, else the Airflow Variable `dagster_training_job`,
else `training_job`; a non-empty `run_config` param replaces the clock's run config.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag
from dagster_trigger.operators import DagsterRunOperator

DAGSTER_TIMEOUT_S = 4 * 60 * 60


@dag(
    dag_id="models__weekly_retrain",
    schedule="@weekly",
    start_date=pendulum.datetime(2013, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "job_name": Param(
            None, type=["null", "string"], description="Dagster job (default: training_job)"
        ),
        "run_config": Param({}, type="object", description="Dagster run config"),
    },
    tags=["models", "dagster"],
    doc_md=__doc__,
)
def models__weekly_retrain() -> None:
    DagsterRunOperator(
        task_id="retrain",
        job_name="{{ params.job_name or var.value.get('dagster_training_job', 'training_job') }}",
        partition="week",
        dagster_timeout=DAGSTER_TIMEOUT_S,
        execution_timeout=timedelta(seconds=DAGSTER_TIMEOUT_S + 300),
    )


models__weekly_retrain()
