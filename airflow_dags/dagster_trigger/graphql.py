"""The Dagster webserver's GraphQL protocol as this trigger speaks it: the documents, the errors,
and the parsing of answers. Shared by the blocking client (``client``, used to launch) and the
asyncio one (``async_client``, used by the deferred wait in Airflow's triggerer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def response_data(response: httpx.Response, endpoint: str) -> dict[str, Any]:
    """The ``data`` of one GraphQL answer. Raises ``DagsterUnavailableError`` for what a retry
    may cure (429/5xx) and ``DagsterRequestError`` for what it cannot."""
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


def unreachable(endpoint: str, exc: Exception) -> DagsterUnavailableError:
    return DagsterUnavailableError(
        f"cannot reach Dagster at {endpoint}: {type(exc).__name__}: {exc}"
    )


def backoff_seconds(backoff: float, attempt: int) -> float:
    """Exponential backoff before retry number ``attempt + 1`` (capped at 30 s)."""
    return float(min(backoff * 2**attempt, 30.0))


def parse_run(data: Mapping[str, Any], run_id: str) -> RunInfo:
    result = data["runOrError"]
    if result["__typename"] != "Run":
        raise DagsterRequestError(
            f"Dagster run {run_id}: {result['__typename']}: {result.get('message', '')}"
        )
    return _run_info(result)


def parse_failure_reason(data: Mapping[str, Any]) -> str:
    """Why a run failed: its failed steps and their errors, else the run-level failure."""
    result = data["logsForRun"]
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
