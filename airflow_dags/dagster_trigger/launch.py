"""The launch protocol over the blocking client: find the run an earlier try launched (by its
Airflow tags) or launch one, without duplicates after a lost answer; and, for the non-deferrable
path, wait for its end here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dagster_trigger.graphql import (
    ASSET_JOB,
    DEAD_STATUSES,
    DEFAULT_LOCATION,
    DEFAULT_REPOSITORY,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REQUEST_TAG,
    SUCCESS,
    DagsterRunFailedError,
    DagsterRunTimeoutError,
    DagsterUnavailableError,
    RunInfo,
    RunResult,
)

if TYPE_CHECKING:
    from dagster_trigger.client import DagsterClient


def partition_tags(
    partition_key: str | None = None, partition_range: tuple[str, str] | None = None
) -> dict[str, str]:
    """Run tags that select one partition, or an inclusive range in a single run."""
    if partition_key and partition_range:
        raise ValueError("give a partition_key or a partition_range, not both")
    if partition_key:
        return {PARTITION_TAG: partition_key}
    if partition_range:
        start, end = partition_range
        return {RANGE_START_TAG: start, RANGE_END_TAG: end}
    return {}


def start_run(
    client: DagsterClient,
    job_name: str,
    *,
    location: str = DEFAULT_LOCATION,
    repository: str = DEFAULT_REPOSITORY,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    asset_selection: Iterable[str | Iterable[str]] | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    idempotency_tags: Mapping[str, str] | None = None,
    reuse_succeeded: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[RunInfo, bool]:
    """Launch ``job_name`` (or an asset selection via ``__ASSET_JOB``), or find the run an
    earlier try launched; returns ``(run, reused)`` without waiting.

    Idempotency: when ``idempotency_tags`` are given (an Airflow task passes its dag id, run id
    and task id), a run of the job carrying all of them that is still alive, or that succeeded
    (``reuse_succeeded``), is followed instead of launching a new one. The launch itself is not
    blindly retried: after a transient error the run is first looked up by the request id tag
    this call put on it, so a launch whose answer was lost is found rather than duplicated.

    Raises ``DagsterRequestError`` (refused: unknown job, partition, config) or
    ``DagsterUnavailableError`` (unreachable after every retry).
    """
    if asset_selection is not None and not job_name:
        job_name = ASSET_JOB
    all_tags = {**(tags or {}), **(idempotency_tags or {})}
    all_tags.update(partition_tags(partition_key, partition_range))
    what = f"Dagster job '{job_name}' in '{location}'"
    if partition_key:
        what += f" for partition {partition_key}"
    elif partition_range:
        what += f" for partitions {partition_range[0]} .. {partition_range[1]}"

    # Every launch carries a fresh request id, so a launch whose answer was lost to a network
    # error is found again by it instead of being launched twice.
    request_id = uuid.uuid4().hex
    all_tags[REQUEST_TAG] = request_id

    run: RunInfo | None = None
    reused = False
    for attempt in range(client.retries + 1):
        if attempt:  # did the launch that "failed" reach Dagster after all?
            mine = client.find_runs(job_name, {REQUEST_TAG: request_id})
            if mine:
                run = mine[0]
                break
        else:
            earlier = [
                r
                for r in (client.find_runs(job_name, idempotency_tags) if idempotency_tags else [])
                if r.status not in DEAD_STATUSES and (reuse_succeeded or r.status != SUCCESS)
            ]
            if earlier:
                run, reused = earlier[0], True
                log(
                    f"Found Dagster run {run.run_id} ({run.status}) launched by an earlier try "
                    "with the same tags; following it instead of launching a duplicate."
                )
                break
            client.check_job(
                job_name,
                location=location,
                repository=repository,
                asset_selection=asset_selection,
                partition_key=partition_key,
                partition_range=partition_range,
            )
        try:
            run = client.launch_run(
                job_name,
                location=location,
                repository=repository,
                asset_selection=asset_selection,
                tags=all_tags,
                run_config=run_config,
                retry=False,  # retried by this loop, after the look-up by request id
            )
            break
        except DagsterUnavailableError as exc:
            if attempt == client.retries:
                raise
            log(f"Launching {what}: transient error ({exc}); retrying.")
            client.pause(attempt)
    assert run is not None
    if not reused:
        log(f"Launched {what}: run {run.run_id} ({client.run_url(run.run_id)})")
    return run, reused


def launch_and_wait(
    client: DagsterClient,
    job_name: str,
    *,
    location: str = DEFAULT_LOCATION,
    repository: str = DEFAULT_REPOSITORY,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    asset_selection: Iterable[str | Iterable[str]] | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    idempotency_tags: Mapping[str, str] | None = None,
    reuse_succeeded: bool = True,
    timeout: float = 3600.0,
    poll_interval: float = 5.0,
    terminate_on_timeout: bool = True,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Launch ``job_name`` (or an asset selection via ``__ASSET_JOB``) and wait for the end,
    polling from this process (the non-deferrable path; see ``start_run`` for idempotency).

    Returns on SUCCESS; raises ``DagsterRunFailedError`` (FAILURE/CANCELED, with the reason),
    ``DagsterRunTimeoutError``, ``DagsterRequestError`` or ``DagsterUnavailableError``.
    """
    run, reused = start_run(
        client,
        job_name,
        location=location,
        repository=repository,
        partition_key=partition_key,
        partition_range=partition_range,
        asset_selection=asset_selection,
        run_config=run_config,
        tags=tags,
        idempotency_tags=idempotency_tags,
        reuse_succeeded=reuse_succeeded,
        log=log,
    )
    url = client.run_url(run.run_id)

    def report(current: RunInfo) -> None:
        log(f"Dagster run {current.run_id}: {current.status}")

    try:
        final = client.wait_for_run(
            run.run_id, timeout=timeout, poll_interval=poll_interval, on_status=report
        )
    except DagsterRunTimeoutError as exc:
        if terminate_on_timeout:
            terminated = client.terminate_run(run.run_id)
            raise DagsterRunTimeoutError(exc.run, timeout, url, terminated=terminated) from None
        raise
    if final.status != SUCCESS:
        raise DagsterRunFailedError(final, client.failure_reason(final.run_id), url)
    return RunResult(
        run_id=final.run_id, status=final.status, job_name=final.job_name, url=url, reused=reused
    )
