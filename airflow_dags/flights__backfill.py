"""### flights__backfill

Manual: runs Dagster's `ingest_features_job` over the inclusive date range in the params
(`start_date` .. `end_date`, data days, not shifted by the clock) as **one** Dagster run (the
assets' single-run backfill policy), and waits for it in Airflow's triggerer.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag
from dagster_trigger.operators import DagsterRunOperator

DAGSTER_TIMEOUT_S = 6 * 60 * 60


@dag(
    dag_id="flights__backfill",
    schedule=None,
    start_date=pendulum.datetime(2013, 1, 1, tz="America/New_York"),
    catchup=False,
    params={
        "start_date": Param("2013-01-01", type="string", format="date", title="First day"),
        "end_date": Param("2013-01-07", type="string", format="date", title="Last day"),
        "run_config": Param({}, type="object", description="Dagster run config"),
    },
    tags=["flights", "dagster", "backfill"],
    doc_md=__doc__,
)
def flights__backfill() -> None:
    DagsterRunOperator(
        task_id="ingest_range",
        job_name="ingest_features_job",
        partition_range=("{{ params.start_date }}", "{{ params.end_date }}"),
        dagster_timeout=DAGSTER_TIMEOUT_S,
        execution_timeout=timedelta(seconds=DAGSTER_TIMEOUT_S + 300),
    )


flights__backfill()
