"""The blocking client for the Dagster webserver's GraphQL API: launch, look up, terminate,
and (for the non-deferrable path) wait by polling.

Plain ``httpx`` against ``/graphql``: no Dagster import and no Airflow import, so the same client
runs inside an Airflow worker, in a test, or from a shell. ``launch_and_wait`` (in ``launch``,
re-exported here) is the whole protocol; the deferrable operator launches with this client and
waits in the triggerer with ``async_client``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from dagster_trigger.graphql import (
    ASSET_JOB,
    DEFAULT_LOCATION,
    DEFAULT_REPOSITORY,
    JOB_PARTITIONS,
    LAUNCH_RUN,
    LOGS_FOR_RUN,
    REQUEST_TAG,
    RUN_OR_ERROR,
    RUNS_OR_ERROR,
    SUCCESS,
    TERMINATE_RUN,
    WORKSPACE,
    DagsterRequestError,
    DagsterRunFailedError,
    DagsterRunTimeoutError,
    DagsterTriggerError,
    DagsterUnavailableError,
    RunInfo,
    RunResult,
    _run_info,
    _selector,
    _tag_list,
    backoff_seconds,
    parse_failure_reason,
    parse_run,
    response_data,
    unreachable,
)


class DagsterClient:
    """A small client for the Dagster webserver's GraphQL API.

    ``url`` is the webserver's base URL (``http://127.0.0.1:3000``, or with a path prefix);
    ``headers`` and ``auth`` are sent with every request (a proxy's basic auth, an API token).
    Transport errors and 429/5xx answers are retried ``retries`` times with exponential backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        retries: int = 4,
        backoff: float = 1.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._http = httpx.Client(
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DagsterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pause(self, attempt: int) -> None:
        """Exponential backoff before retry number ``attempt + 1`` (capped at 30 s)."""
        self._sleep(backoff_seconds(self.backoff, attempt))

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    # -- transport -------------------------------------------------------------------------

    def _post_once(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """One POST. Raises ``DagsterUnavailableError`` for what a retry may cure."""
        endpoint = f"{self.url}/graphql"
        try:
            response = self._http.post(endpoint, json={"query": query, "variables": variables})
        except httpx.TransportError as exc:
            raise unreachable(endpoint, exc) from exc
        return response_data(response, endpoint)

    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, *, retry: bool = True
    ) -> dict[str, Any]:
        """Run one GraphQL document and return its ``data``; retries transient failures
        unless ``retry`` is False (used for ``launchRun``, whose retry is a look-up first)."""
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                return self._post_once(query, variables or {})
            except DagsterUnavailableError:
                if attempt == attempts - 1:
                    raise
                self.pause(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- queries ---------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        return parse_run(self.graphql(RUN_OR_ERROR, {"runId": run_id}), run_id)

    def find_runs(self, job_name: str, tags: Mapping[str, str], limit: int = 20) -> list[RunInfo]:
        """Runs of ``job_name`` carrying every tag in ``tags``, newest first."""
        variables = {"filter": {"pipelineName": job_name, "tags": _tag_list(tags)}, "limit": limit}
        result = self.graphql(RUNS_OR_ERROR, variables)["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterRequestError(f"cannot list Dagster runs: {result.get('message', '')}")
        return [_run_info(node) for node in result["results"]]

    def failure_reason(self, run_id: str) -> str:
        """Why a run failed: its failed steps and their errors, else the run-level failure."""
        return parse_failure_reason(self.graphql(LOGS_FOR_RUN, {"runId": run_id}))

    def describe_workspace(self, location: str, repository: str) -> str:
        """A sentence naming what *is* there, for an unknown job or code location."""
        result = self.graphql(WORKSPACE)["workspaceOrError"]
        if result["__typename"] != "Workspace":
            return f"(cannot list the workspace: {result.get('message', '')})"
        entries = {
            entry["name"]: entry["locationOrLoadError"] for entry in result["locationEntries"]
        }
        if location not in entries:
            return f"Code locations in this Dagster: {', '.join(sorted(entries)) or 'none'}."
        loaded = entries[location]
        if loaded is None or loaded["__typename"] != "RepositoryLocation":
            message = (loaded or {}).get("message", "not loaded yet").strip()
            return f"Code location '{location}' failed to load: {message}"
        for repo in loaded["repositories"]:
            if repo["name"] == repository:
                jobs = sorted(p["name"] for p in repo["pipelines"] if p["name"] != ASSET_JOB)
                return f"Jobs in {location}/{repository}: {', '.join(jobs) or 'none'}."
        names = ", ".join(r["name"] for r in loaded["repositories"])
        return f"Repositories in code location '{location}': {names}."

    def check_job(
        self,
        job_name: str,
        *,
        location: str = DEFAULT_LOCATION,
        repository: str = DEFAULT_REPOSITORY,
        asset_selection: Iterable[str | Iterable[str]] | None = None,
        partition_key: str | None = None,
        partition_range: tuple[str, str] | None = None,
    ) -> None:
        """Before launching: the job exists and the partition (or range) is one of its
        partitions. Raises ``DagsterRequestError`` with a message that says what *is* there."""
        selector = _selector(job_name, location, repository, asset_selection, key="pipelineName")
        result = self.graphql(JOB_PARTITIONS, {"selector": selector})["pipelineOrError"]
        kind = result["__typename"]
        if kind == "PipelineNotFoundError":
            raise DagsterRequestError(
                f"Dagster has no job '{job_name}' in code location '{location}' "
                f"(repository '{repository}'). {self.describe_workspace(location, repository)}"
            )
        if kind != "Pipeline":
            raise DagsterRequestError(
                f"cannot launch Dagster job '{job_name}' in '{location}': {kind}: "
                f"{(result.get('message') or '').strip()}"
            )
        keys: list[str] = result["partitionKeysOrError"]["partitionKeys"]
        wanted = [partition_key] if partition_key else list(partition_range or ())
        if not keys:
            if wanted:
                raise DagsterRequestError(
                    f"Dagster job '{job_name}' is not partitioned; "
                    f"got partition {' .. '.join(wanted)}"
                )
            return
        if not wanted:
            raise DagsterRequestError(
                f"Dagster job '{job_name}' is partitioned ({keys[0]} .. {keys[-1]}); "
                "give a partition key or a partition range"
            )
        missing = [key for key in wanted if key not in keys]
        if missing:
            raise DagsterRequestError(
                f"{', '.join(repr(k) for k in missing)} is not a partition of Dagster job "
                f"'{job_name}' (it has {len(keys)}: {keys[0]} .. {keys[-1]})"
            )
        if partition_range and keys.index(partition_range[0]) > keys.index(partition_range[1]):
            raise DagsterRequestError(
                f"partition range {partition_range[0]} .. {partition_range[1]} ends before it starts"
            )

    # -- mutations -------------------------------------------------------------------------

    def launch_run(
        self,
        job_name: str,
        *,
        location: str = DEFAULT_LOCATION,
        repository: str = DEFAULT_REPOSITORY,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
        asset_selection: Iterable[str | Iterable[str]] | None = None,
        retry: bool = True,
    ) -> RunInfo:
        """``launchRun``; returns the new run. A refusal raises ``DagsterRequestError`` that
        names the job, the location and what the location does contain."""
        params = {
            "selector": _selector(job_name, location, repository, asset_selection),
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": _tag_list(tags or {})},
        }
        result = self.graphql(LAUNCH_RUN, {"executionParams": params}, retry=retry)["launchRun"]
        kind = result["__typename"]
        if kind == "LaunchRunSuccess":
            return _run_info(result["run"])
        if kind == "PipelineNotFoundError":
            raise DagsterRequestError(
                f"Dagster has no job '{job_name}' in code location '{location}' "
                f"(repository '{repository}'). {self.describe_workspace(location, repository)}"
            )
        if kind == "RunConfigValidationInvalid":
            errors = "; ".join(e["message"] for e in result["errors"])
            raise DagsterRequestError(f"invalid run config for Dagster job '{job_name}': {errors}")
        raise DagsterRequestError(
            f"Dagster refused to launch job '{job_name}' in '{location}': {kind}: "
            f"{(result.get('message') or '').strip()}"
        )

    def terminate_run(self, run_id: str) -> bool:
        result = self.graphql(TERMINATE_RUN, {"runId": run_id})["terminateRun"]
        return bool(result["__typename"] == "TerminateRunSuccess")

    # -- waiting ---------------------------------------------------------------------------

    def wait_for_run(
        self,
        run_id: str,
        *,
        timeout: float,
        poll_interval: float = 5.0,
        on_status: Callable[[RunInfo], None] | None = None,
    ) -> RunInfo:
        """Poll ``runOrError`` until the run is SUCCESS, FAILURE or CANCELED. Raises
        ``DagsterRunTimeoutError`` (without terminating) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last_status = None
        while True:
            run = self.get_run(run_id)
            if run.status != last_status and on_status is not None:
                on_status(run)
            last_status = run.status
            if run.finished:
                return run
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DagsterRunTimeoutError(run, timeout, self.run_url(run_id), terminated=False)
            self._sleep(min(poll_interval, remaining))


# Callers import the protocol's names and the launch from here, as before the split.
from dagster_trigger.launch import launch_and_wait, partition_tags, start_run  # noqa: E402

__all__ = [
    "ASSET_JOB",
    "DEFAULT_LOCATION",
    "DEFAULT_REPOSITORY",
    "REQUEST_TAG",
    "SUCCESS",
    "DagsterClient",
    "DagsterRequestError",
    "DagsterRunFailedError",
    "DagsterRunTimeoutError",
    "DagsterTriggerError",
    "DagsterUnavailableError",
    "RunInfo",
    "RunResult",
    "launch_and_wait",
    "partition_tags",
    "start_run",
]
