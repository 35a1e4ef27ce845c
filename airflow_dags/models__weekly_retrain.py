"""### models__weekly_retrain

Every week, runs Dagster's training job and waits for it. The job name comes from the
`job_name` param, else the Airflow Variable `dagster_training_job`, else `training_job`;
`run_config` is passed to Dagster as the run's config.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import Param, Variable, dag, task
from dagster_trigger.airflow_task import run_dagster_job

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
    @task(execution_timeout=timedelta(seconds=DAGSTER_TIMEOUT_S + 300))
    def retrain(params: dict | None = None) -> dict:
        """Run the Dagster training job."""
        params = params or {}
        job_name = params.get("job_name") or Variable.get(
            "dagster_training_job", default="training_job"
        )
        return run_dagster_job(
            job_name, run_config=params.get("run_config") or {}, timeout=DAGSTER_TIMEOUT_S
        )

    retrain()


models__weekly_retrain()
