"""### flights__backfill

Manual: runs Dagster's `ingest_features_job` over the inclusive date range in the params
(`start_date` .. `end_date`) as **one** Dagster run (the assets' single-run backfill policy),
and waits for it.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from dagster_trigger.airflow_task import date_range, run_dagster_job

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
    @task(execution_timeout=timedelta(seconds=DAGSTER_TIMEOUT_S + 300))
    def ingest_range(params: dict | None = None) -> dict:
        """Run ingest_features_job in Dagster for start_date..end_date in one run."""
        params = params or {}
        return run_dagster_job(
            "ingest_features_job",
            partition_range=date_range(params["start_date"], params["end_date"]),
            run_config=params.get("run_config") or {},
            timeout=DAGSTER_TIMEOUT_S,
        )

    ingest_range()


flights__backfill()
