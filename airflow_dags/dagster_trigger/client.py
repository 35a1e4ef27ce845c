"""Launch a Dagster job through the webserver's GraphQL API and wait for it to finish.

Plain ``httpx`` against ``/graphql``: no Dagster import and no Airflow import, so the same client
runs inside an Airflow worker, in a test, or from a shell. ``launch_and_wait`` is the whole
protocol: look for a run that already carries the caller's idempotency tags, otherwise
``launchRun``; poll ``runOrError`` until a terminal status; on failure, read the run's failure
events so the caller can say *why*.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

DEFAULT_LOCATION = "flight_mlops"
DEFAULT_REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"  # Dagster's implicit job for an ad-hoc asset selection

SUCCESS = "SUCCESS"
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
# A run in any other state is alive or done well: a retried task attaches to it instead of
# launching a second one.
DEAD_STATUSES = frozenset({"FAILURE", "CANCELED", "CANCELING"})
TRANSIENT_HTTP_CODES = frozenset({429, 500, 502, 503, 504})

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
REQUEST_TAG = "dagster_trigger/request_id"


class DagsterTriggerError(RuntimeError):
    """Base class: something went wrong talking to Dagster or in the run it launched."""


class DagsterUnavailableError(DagsterTriggerError):
    """The webserver could not be reached (or kept answering 5xx) after every retry."""


class DagsterRequestError(DagsterTriggerError):
    """Dagster understood the request and refused it (unknown job, invalid config, ...).
    Retrying the same request cannot help."""


class DagsterRunFailedError(DagsterTriggerError):
    """The Dagster run ended in FAILURE or CANCELED."""

    def __init__(self, run: RunInfo, reason: str, url: str) -> None:
        self.run = run
        self.reason = reason
        self.url = url
        super().__init__(
            f"Dagster run {run.run_id} of job '{run.job_name}' ended {run.status}: {reason} "
            f"(see {url})"
        )


class DagsterRunTimeoutError(DagsterTriggerError):
    """The run did not reach a terminal status in time."""

    def __init__(self, run: RunInfo, seconds: float, url: str, terminated: bool) -> None:
        self.run = run
        self.url = url
        self.terminated = terminated
        what = "termination requested" if terminated else "left running"
        super().__init__(
            f"Dagster run {run.run_id} of job '{run.job_name}' still {run.status} after "
            f"{seconds:.0f} s; {what} (see {url})"
        )


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str
    job_name: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class RunResult:
    """What ``launch_and_wait`` returns (and what an Airflow task pushes to XCom)."""

    run_id: str
    status: str
    job_name: str
    url: str
    reused: bool  # True when an earlier try's run was found by its tags and followed instead

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_RUN_FIELDS = "runId status jobName tags { key value }"

LAUNCH_RUN = f"""
mutation LaunchRun($executionParams: ExecutionParams!) {{
  launchRun(executionParams: $executionParams) {{
    __typename
    ... on LaunchRunSuccess {{ run {{ {_RUN_FIELDS} }} }}
    ... on RunConfigValidationInvalid {{ errors {{ message }} }}
    ... on PipelineNotFoundError {{ message }}
    ... on PythonError {{ message }}
    ... on Error {{ message }}
  }}
}}
"""

RUN_OR_ERROR = f"""
query RunOrError($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ {_RUN_FIELDS} }}
    ... on RunNotFoundError {{ message }}
    ... on PythonError {{ message }}
  }}
}}
"""

RUNS_OR_ERROR = f"""
query RunsOrError($filter: RunsFilter, $limit: Int) {{
  runsOrError(filter: $filter, limit: $limit) {{
    __typename
    ... on Runs {{ results {{ {_RUN_FIELDS} }} }}
    ... on InvalidPipelineRunsFilterError {{ message }}
    ... on PythonError {{ message }}
  }}
}}
"""

LOGS_FOR_RUN = """
query LogsForRun($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey eventType }
        ... on ErrorEvent { error { message cause { message cause { message } } } }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

TERMINATE_RUN = """
mutation TerminateRun($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""

JOB_PARTITIONS = """
query JobPartitions($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { partitionKeysOrError { partitionKeys } }
    ... on Error { message }
  }
}
"""

WORKSPACE = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name pipelines { name } } }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": str(k), "value": str(v)} for k, v in tags.items()]


def _run_info(node: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        run_id=node["runId"],
        status=node["status"],
        job_name=node["jobName"],
        tags={t["key"]: t["value"] for t in node.get("tags") or []},
    )


def _selector(
    job_name: str,
    location: str,
    repository: str,
    asset_selection: Iterable[str | Iterable[str]] | None,
    key: str = "jobName",
) -> dict[str, Any]:
    selector: dict[str, Any] = {
        "repositoryLocationName": location,
        "repositoryName": repository,
        key: job_name,
    }
    if asset_selection is not None:
        selector["assetSelection"] = [
            {"path": k.split("/") if isinstance(k, str) else list(k)} for k in asset_selection
        ]
    return selector


def _error_chain(error: Mapping[str, Any] | None) -> str:
    """``RuntimeError: x`` plus its causes, one line each joined by ' <- '."""
    parts: list[str] = []
    while error:
        message = (error.get("message") or "").strip()
        if message:
            parts.append(message)
        error = error.get("cause")
    return " <- ".join(parts)


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
        self._sleep(min(self.backoff * 2**attempt, 30.0))

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    # -- transport -------------------------------------------------------------------------

    def _post_once(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """One POST. Raises ``DagsterUnavailableError`` for what a retry may cure."""
        endpoint = f"{self.url}/graphql"
        try:
            response = self._http.post(endpoint, json={"query": query, "variables": variables})
        except httpx.TransportError as exc:
            raise DagsterUnavailableError(
                f"cannot reach Dagster at {endpoint}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code in TRANSIENT_HTTP_CODES:
            raise DagsterUnavailableError(
                f"Dagster at {endpoint} answered HTTP {response.status_code}: {response.text[:300]}"
            )
        if response.status_code in (401, 403):
            raise DagsterRequestError(
                f"Dagster at {endpoint} refused the credentials (HTTP {response.status_code}); "
                "check the Airflow connection's login/password or headers"
            )
        if response.status_code >= 400:
            raise DagsterRequestError(
                f"Dagster at {endpoint} answered HTTP {response.status_code}: {response.text[:500]}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise DagsterRequestError(
                f"{endpoint} did not answer JSON (is this a Dagster webserver?): "
                f"{response.text[:200]!r}"
            ) from exc
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"])
            raise DagsterRequestError(f"Dagster GraphQL error: {messages}")
        data: dict[str, Any] = body.get("data") or {}
        return data

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
        result = self.graphql(RUN_OR_ERROR, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise DagsterRequestError(
                f"Dagster run {run_id}: {result['__typename']}: {result.get('message', '')}"
            )
        return _run_info(result)

    def find_runs(self, job_name: str, tags: Mapping[str, str], limit: int = 20) -> list[RunInfo]:
        """Runs of ``job_name`` carrying every tag in ``tags``, newest first."""
        variables = {"filter": {"pipelineName": job_name, "tags": _tag_list(tags)}, "limit": limit}
        result = self.graphql(RUNS_OR_ERROR, variables)["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterRequestError(f"cannot list Dagster runs: {result.get('message', '')}")
        return [_run_info(node) for node in result["results"]]

    def failure_reason(self, run_id: str) -> str:
        """Why a run failed: its failed steps and their errors, else the run-level failure."""
        result = self.graphql(LOGS_FOR_RUN, {"runId": run_id})["logsForRun"]
        if result["__typename"] != "EventConnection":
            return f"(no event log: {result.get('message', result['__typename'])})"
        steps: list[str] = []
        run_level: list[str] = []
        for event in result["events"]:
            kind = event.get("eventType")
            if kind == "STEP_FAILURE":
                detail = _error_chain(event.get("error")) or event.get("message", "")
                steps.append(f"step '{event.get('stepKey')}' failed: {detail}")
            elif kind in ("RUN_FAILURE", "RUN_CANCELED", "PIPELINE_FAILURE", "PIPELINE_CANCELED"):
                detail = _error_chain(event.get("error"))
                run_level.append(event.get("message", "") + (f" {detail}" if detail else ""))
        return "; ".join(steps or run_level) or "no failure event recorded"

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
    """Launch ``job_name`` (or an asset selection via ``__ASSET_JOB``) and wait for the end.

    Idempotency: when ``idempotency_tags`` are given (an Airflow task passes its dag id, run id
    and task id), a run of the job carrying all of them that is still alive, or that succeeded
    (``reuse_succeeded``), is followed instead of launching a new one. The launch itself is not
    blindly retried: after a transient error the run is first looked up by the request id tag
    this call put on it, so a launch whose answer was lost is found rather than duplicated.

    Returns on SUCCESS; raises ``DagsterRunFailedError`` (FAILURE/CANCELED, with the reason),
    ``DagsterRunTimeoutError``, ``DagsterRequestError`` or ``DagsterUnavailableError``.
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
    url = client.run_url(run.run_id)
    if not reused:
        log(f"Launched {what}: run {run.run_id} ({url})")

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
