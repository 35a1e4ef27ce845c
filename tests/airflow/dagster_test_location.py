"""A tiny Dagster code location for the Airflow trigger tests: jobs that succeed, fail for real,
or take a few seconds, and a daily-partitioned asset. Loaded by the test webserver only."""

import time

import dagster as dg

FAILURE_MESSAGE = "deliberate failure: flights file for the day is missing"


@dg.op
def say_hello(context: dg.OpExecutionContext) -> None:
    context.log.info("hello from the Airflow trigger tests")


@dg.op
def fail_deliberately() -> None:
    raise RuntimeError(FAILURE_MESSAGE)


class SleepConfig(dg.Config):
    seconds: float = 6.0


@dg.op
def sleep_a_while(config: SleepConfig) -> None:
    time.sleep(config.seconds)


@dg.job
def quick_job() -> None:
    say_hello()


@dg.job
def failing_job() -> None:
    fail_deliberately()


@dg.job
def slow_job() -> None:
    sleep_a_while()


days = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")


@dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
def daily_marker(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Records the partitions it ran for (one day, or a range in one run)."""
    keys = context.partition_key_range
    return dg.MaterializeResult(metadata={"first": keys.start, "last": keys.end})


daily_marker_job = dg.define_asset_job(
    "daily_marker_job", selection=[daily_marker], partitions_def=days
)

defs = dg.Definitions(
    assets=[daily_marker],
    jobs=[quick_job, failing_job, slow_job, daily_marker_job],
    executor=dg.in_process_executor,  # one process per run, not one more per step: faster tests
)
