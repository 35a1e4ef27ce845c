"""Runs on the tier's Dagster: the CLI sends a job to the webserver (``launchRun`` over GraphQL,
what the UI's "Launch run" sends), the tier's run launcher starts it (a run container on the
container tier, a run pod on Kubernetes, each step in its own), and the CLI follows it through
the instance's event log until it ends.

:class:`LaunchedRun` answers the questions the CLI asks of an in-process result (success, the
materializations, the checks, the failures), read from the finished run's event log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

LOCATION = "flight_mlops"  # the code location's name in the tier's workspace
REPOSITORY = "__repository__"  # the name Dagster gives the repository of a Definitions object
POLL_S = 1.0


class TierRunError(RuntimeError):
    """The tier's Dagster did not take the run, or the run did not end in time."""


@dataclass
class LaunchedRun:
    """A finished run as the CLI reads it: its status and its events, from the event log."""

    run_id: str
    status: dg.DagsterRunStatus
    all_events: list[Any] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.status == dg.DagsterRunStatus.SUCCESS

    def get_asset_materialization_events(self) -> list[Any]:
        return [e for e in self.all_events if e.is_step_materialization]

    def asset_materializations_for_node(self, node: str) -> list[dg.AssetMaterialization]:
        events = self.get_asset_materialization_events()
        return [e.materialization for e in events if e.step_key == node]

    def get_asset_check_evaluations(self) -> list[Any]:
        return [
            e.event_specific_data
            for e in self.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]


def client(url: str) -> Any:
    """Dagster's GraphQL client for the webserver at ``url`` (``http://host:port[/prefix]``)."""
    from dagster_graphql import DagsterGraphQLClient

    parts = urlsplit(url)
    if not parts.hostname:
        raise TierRunError(f"MLOPS_DAGSTER_URL={url!r} is not an http(s) URL")
    return DagsterGraphQLClient(
        parts.hostname,
        port_number=parts.port,
        use_https=parts.scheme == "https",
        path_prefix=parts.path.rstrip("/"),
        timeout=120,
    )


def launch(
    url: str,
    job: str,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    assets: list[str] | None = None,
) -> str:
    """Launch ``job`` (or ``assets`` of it) on the tier's Dagster; returns the run id."""
    import httpx
    from dagster_graphql import DagsterGraphQLClientError

    try:  # the webserver's own liveness route: a tier that is not up is said so
        httpx.get(f"{url}/server_info", timeout=30).raise_for_status()
    except httpx.HTTPError as exc:
        raise TierRunError(
            f"cannot reach the tier's Dagster at {url} ({type(exc).__name__}: {exc}); "
            "is the tier up (`make up PROFILE=k8s-docker`)?"
        ) from exc
    try:
        return str(
            client(url).submit_job_execution(
                job,
                repository_location_name=LOCATION,
                repository_name=REPOSITORY,
                run_config=dict(run_config or {}),
                tags=dict(tags or {}),
                asset_selection=assets,
            )
        )
    except DagsterGraphQLClientError as exc:
        raise TierRunError(f"{url} did not launch {job}: {exc}") from exc


def follow(
    instance: dg.DagsterInstance,
    run_id: str,
    on_event: Callable[[Any], None] = lambda _record: None,
    timeout_s: float = 3 * 3600,
) -> LaunchedRun:
    """Wait for the run to end, handing each new event-log record to ``on_event``. Reads only
    the records after the last one seen (the event log's cursor), once each."""
    deadline = time.monotonic() + timeout_s
    cursor: str | None = None
    events: list[Any] = []
    while True:
        run = instance.get_run_by_id(run_id)  # before the records: a finished run's are all in
        page = instance.get_records_for_run(run_id, cursor=cursor)
        for record in page.records:
            entry = record.event_log_entry
            on_event(entry)
            if entry.dagster_event is not None:
                events.append(entry.dagster_event)
        cursor = page.cursor
        if page.has_more:
            continue
        if run is not None and run.is_finished:
            return LaunchedRun(run_id, run.status, events)
        if time.monotonic() > deadline:
            status = run.status.value if run else "not in the instance"
            raise TierRunError(f"run {run_id} did not end in {timeout_s:.0f} s ({status})")
        time.sleep(POLL_S)
