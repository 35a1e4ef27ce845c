"""### flights__daily_ingest

Every day, runs Dagster's `ingest_features_job` (land -> validate -> features -> online store)
for the **simulated day** of the run's logical date, and waits for the Dagster run to finish in
Airflow's triggerer (a deferrable operator: no worker slot is held while Dagster works).

The simulated day is the logical date's day minus `MLOPS_CLOCK_OFFSET_DAYS` (default 0: a 2013
logical date is that day). A day outside the data (2013-01-01 .. 2013-12-31) is a **skipped**
run whose log says why. `flight-mlops clock --today 2013-07-01` prints the offset that makes today
2013-07-01; see docs/airflow.md. Replay days with
`airflow backfill create --dag-id flights__daily_ingest --from-date 2013-01-01 --to-date 2013-01-08`.

The Dagster run is tagged `airflow/dag_id`, `airflow/run_id`, `airflow/try_number` and
`mlops/simulated_day`; a retry follows the earlier try's run instead of launching another.
Param `run_config`: Dagster run config for the run (default: none).
"""

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag
from dagster_trigger.operators import DagsterRunOperator

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
    DagsterRunOperator(
        task_id="ingest_features",
        job_name="ingest_features_job",
        partition="day",
        dagster_timeout=DAGSTER_TIMEOUT_S,
        execution_timeout=timedelta(seconds=DAGSTER_TIMEOUT_S + 300),
    )


flights__daily_ingest()
