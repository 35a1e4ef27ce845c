"""``DagsterRunOperator``: launch a Dagster job from an Airflow task and wait for its end in the
triggerer (deferrable, the default) or in the task (``deferrable=False``).

The launch runs in the task with the blocking client (idempotent by the task's Airflow tags, no
duplicate after a lost answer, 5xx retried); the wait is ``DagsterRunTrigger``, so no worker slot
is held; the task resumes in ``execute_complete`` and succeeds, or fails with the run's id, URL
and failure reason in the task log.

``partition`` reads the run's logical date on the platform's clock (``clock.py``): ``"day"``
runs the simulated day's partition; ``"week"`` trains on a window ending on the last day of the
simulated week (the seven days before the logical date, as in ``@weekly``'s data interval). A
date outside the data, or a week with too little history to train on, skips the run with the
reason instead of failing it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from dagster_trigger import clock
from dagster_trigger.airflow_task import (
    DEFAULT_CONN_ID,
    airflow_tags,
    connection_settings,
    date_range,
)
from dagster_trigger.client import DagsterClient
from dagster_trigger.graphql import (
    DEFAULT_LOCATION,
    DEFAULT_REPOSITORY,
    SUCCESS,
    DagsterRequestError,
    DagsterTriggerError,
    RunResult,
)
from dagster_trigger.launch import launch_and_wait, start_run
from dagster_trigger.trigger import DagsterRunTrigger

PARTITION_MODES = (None, "day", "week")
# The weekly retrain's window, as the replay's retraining policy (`RetrainPolicy` in
# dagster_project/monitoring/retraining.py; tests/unit/test_loop.py keeps the two equal): the
# last WINDOW_DAYS days up to the simulated week's end, within the data (from January 1), the
# gate's holdout and the validation split at its end.
WINDOW_DAYS = 365
HOLDOUT_DAYS = 14
VALIDATION_DAYS = 14
MIN_HISTORY_DAYS = 42  # holdout + validation + two weeks to train on


def logical_day(context: Any) -> date:
    logical_date = context.get("logical_date")
    if logical_date is None:
        raise AirflowFailException(
            f"{context['ti'].dag_id} was triggered without a logical date, so there is no "
            "partition to run; trigger it with one (e.g. 2013-01-05)"
        )
    return date.fromisoformat(logical_date.astimezone(UTC).date().isoformat())


def on_the_clock(mode: str, real: date) -> tuple[str | None, dict[str, Any], dict[str, str]]:
    """(partition key, run config, tags) for a logical date; raises ``AirflowSkipException``
    with the reason when the simulated date has no data to run on."""
    day = clock.simulated_day(real)
    tags = {
        "mlops/simulated_day": day.isoformat(),
        "mlops/clock_offset_days": str(clock.offset_days()),
    }
    if mode == "day":
        why = clock.outside_data(day)
        if why:
            raise AirflowSkipException(f"logical date {real}: {why}")
        return day.isoformat(), {}, tags
    first, last = day - timedelta(days=7), day - timedelta(days=1)
    why = clock.outside_data(first, last)
    if why:
        raise AirflowSkipException(f"logical date {real}: {why}")
    start = max(clock.DATA_FIRST, last - timedelta(days=WINDOW_DAYS - 1))
    if (last - start).days + 1 < MIN_HISTORY_DAYS:
        raise AirflowSkipException(
            f"logical date {real}: the simulated week {first} .. {last} has only "
            f"{(last - start).days + 1} days of history (from {start}); training needs "
            f"{MIN_HISTORY_DAYS}"
        )
    run_config = {
        "ops": {
            "training_set": {"config": {"start_date": str(start), "end_date": str(last)}},
            "flight_delay_model": {
                "config": {"holdout_days": HOLDOUT_DAYS, "validation_days": VALIDATION_DAYS}
            },
        }
    }
    return None, run_config, {**tags, "mlops/simulated_week": f"{first}..{last}"}


class DagsterRunOperator(BaseOperator):
    """Run a Dagster job for this task. ``run_config`` (or a non-empty ``run_config`` DAG param)
    replaces the clock's run config; ``dagster_timeout`` bounds the run (then it is terminated)."""

    template_fields: Sequence[str] = ("job_name", "location", "partition_range", "dagster_tags")
    ui_color = "#c8c4f7"

    def __init__(
        self,
        *,
        job_name: str,
        partition: str | None = None,
        partition_range: tuple[str, str] | None = None,
        run_config: dict[str, Any] | None = None,
        dagster_tags: dict[str, str] | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        location: str | None = None,
        repository: str | None = None,
        dagster_timeout: float | None = None,
        poll_interval: float | None = None,
        reuse_succeeded: bool = True,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if partition not in PARTITION_MODES:
            raise ValueError(f"partition must be one of {PARTITION_MODES}, got {partition!r}")
        self.job_name = job_name
        self.partition = partition
        self.partition_range = partition_range
        self.run_config = run_config or {}
        self.dagster_tags = dagster_tags or {}
        self.conn_id = conn_id
        self.location = location
        self.repository = repository
        self.dagster_timeout = dagster_timeout
        self.poll_interval = poll_interval
        self.reuse_succeeded = reuse_succeeded
        self.deferrable = deferrable

    def execute(self, context: Any) -> dict[str, Any] | None:
        partition_key, run_config, clock_tags = None, {}, {}
        partition_range = date_range(*self.partition_range) if self.partition_range else None
        if self.partition:
            partition_key, run_config, clock_tags = on_the_clock(
                self.partition, logical_day(context)
            )
            if "mlops/simulated_week" in clock_tags:
                self.log.info("Retraining on the week %s", clock_tags["mlops/simulated_week"])
        params = context.get("params") or {}
        run_config = self.run_config or params.get("run_config") or run_config
        same_every_try, run_tags = airflow_tags(context)
        settings = connection_settings(self.conn_id)
        extra, url = settings.pop("extra"), settings.pop("url")
        timeout = float(self.dagster_timeout or extra.get("timeout", 3600))
        poll = float(self.poll_interval or extra.get("poll_interval", 5))
        launch_args: dict[str, Any] = dict(
            location=self.location or extra.get("location") or DEFAULT_LOCATION,
            repository=self.repository or extra.get("repository") or DEFAULT_REPOSITORY,
            partition_key=partition_key,
            partition_range=partition_range,
            run_config=run_config,
            tags={**self.dagster_tags, **clock_tags, **run_tags},
            idempotency_tags=same_every_try,
            reuse_succeeded=self.reuse_succeeded,
            log=self.log.info,
        )
        try:
            with DagsterClient(url, **settings) as client:
                if not self.deferrable:
                    result = launch_and_wait(
                        client, self.job_name, timeout=timeout, poll_interval=poll, **launch_args
                    )
                    self.log.info("Dagster run %s succeeded: %s", result.run_id, result.url)
                    return result.as_dict()
                run, reused = start_run(client, self.job_name, **launch_args)
        except DagsterRequestError as exc:
            raise AirflowFailException(str(exc)) from exc
        except DagsterTriggerError as exc:
            raise AirflowException(str(exc)) from exc
        self.log.info("Deferring the wait for Dagster run %s to the triggerer", run.run_id)
        auth = settings["auth"]
        self.defer(
            trigger=DagsterRunTrigger(
                run_id=run.run_id,
                job_name=run.job_name,
                url=url,
                deadline=time.time() + timeout,
                poll_interval=poll,
                headers=settings["headers"],
                auth=list(auth) if auth else None,
                request_timeout=settings["timeout"],
                verify=settings["verify"],
                retries=settings["retries"],
                reused=reused,
            ),
            method_name="execute_complete",
        )
        return None  # not reached: defer() raises TaskDeferred

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        status, run_id, url = event["status"], event["run_id"], event["url"]
        what = f"Dagster run {run_id} of job '{event['job_name']}'"
        if status == SUCCESS:
            self.log.info("%s succeeded: %s", what, url)
            reused = bool(event.get("reused"))
            return RunResult(run_id, status, event["job_name"], url, reused).as_dict()
        if status == "TIMEOUT":
            settings = connection_settings(self.conn_id)
            settings.pop("extra")
            with DagsterClient(settings.pop("url"), **settings) as client:
                terminated = client.terminate_run(run_id)
            done = "termination requested" if terminated else "left running"
            message = f"{what} still {event['last_status']} after the timeout; {done} (see {url})"
        elif status == "ERROR":
            message = f"lost track of {what}: {event['error']} (see {url})"
        else:
            message = f"{what} ended {status}: {event.get('reason', '')} (see {url})"
        self.log.error(message)
        raise AirflowException(message)
