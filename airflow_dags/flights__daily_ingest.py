"""### flights__daily_ingest

Every day, runs Dagster's `ingest_features_job` (land -> validate -> features -> online store)
for the partition of the run's **logical date** (`{{ ds }}`, e.g. `2013-01-05`), and waits for
the Dagster run to finish. The Dagster run is tagged `airflow/dag_id`, `airflow/run_id`,
`airflow/try_number`; a retry follows the earlier try's run instead of launching another.
Param `run_config`: Dagster run config for the run (default: none).

The data is the year 2013: trigger with a 2013 logical date, or replay days on this schedule with
`airflow backfill create --dag-id flights__daily_ingest --from-date 2013-01-01 --to-date 2013-01-08`
(midnight in New York is 05:00 UTC, so that is 2013-01-01 .. 2013-01-07). A day outside 2013
fails at once, without retries, with "... is not a partition of Dagster job ...".
"""

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from dagster_trigger.airflow_task import logical_date_partition, run_dagster_job

DAGSTER_TIMEOUT_S = 2 * 60 * 60


@dag(
    dag_id="flights__daily_ingest",
    schedule="@daily",
    start_date=pendulum.datetime(2013, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={"run_config": Param({}, type="object", description="Dagster run config")},
    tags=["flights", "dagster"],
    doc_md=__doc__,
)
def flights__daily_ingest() -> None:
    @task(execution_timeout=timedelta(seconds=DAGSTER_TIMEOUT_S + 300))
    def ingest_features(params: dict | None = None) -> dict:
        """Run ingest_features_job in Dagster for the logical date's partition."""
        return run_dagster_job(
            "ingest_features_job",
            partition_key=logical_date_partition(),
            run_config=(params or {}).get("run_config") or {},
            timeout=DAGSTER_TIMEOUT_S,
        )

    ingest_features()


flights__daily_ingest()
