"""The Airflow side of the trigger: the ``dagster_default`` connection becomes a client, the
running task's context becomes run tags, and the outcome becomes the task's success or failure.

Called from inside ``@task`` functions (it reads ``get_current_context()``); never at parse time.
"""

from __future__ import annotations

import logging
from datetime import UTC, date
from typing import Any

from airflow.sdk import BaseHook, Connection, get_current_context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dagster_trigger.client import (
    DEFAULT_LOCATION,
    DEFAULT_REPOSITORY,
    DagsterClient,
    DagsterRequestError,
    DagsterTriggerError,
    launch_and_wait,
)

DEFAULT_CONN_ID = "dagster_default"  # AIRFLOW_CONN_DAGSTER_DEFAULT
TAG_PREFIX = "airflow/"

log = logging.getLogger(__name__)


def base_url(conn: Connection) -> str:
    """``http(s)://host:port[/prefix]`` from an HTTP-style connection.

    ``host`` may carry the scheme (``https://dagster.example.com``); otherwise ``schema`` (as in
    Airflow's HTTP connections) or ``extra.scheme`` picks it (default http). ``extra.path_prefix``
    is for a webserver started with ``--path-prefix``.
    """
    extra = conn.extra_dejson
    host = (conn.host or "").rstrip("/")
    if not host:
        raise AirflowFailException(f"Airflow connection '{conn.conn_id}' has no host")
    if "://" not in host:
        scheme = extra.get("scheme") or (conn.schema if conn.schema in ("http", "https") else "")
        host = f"{scheme or 'http'}://{host}"
    if conn.port:
        host = f"{host}:{conn.port}"
    prefix = str(extra.get("path_prefix") or "").strip("/")
    return f"{host}/{prefix}" if prefix else host


def client_from_connection(conn_id: str = DEFAULT_CONN_ID) -> tuple[DagsterClient, dict[str, Any]]:
    """A client for the Dagster webserver named by an Airflow connection, and the connection's
    extra (``location``, ``repository``, ``poll_interval``, ``timeout`` defaults).

    ``login``/``password`` become HTTP basic auth (a proxy in front of the webserver);
    ``extra.headers`` are sent as they are (for example an API token header).
    """
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    auth = (conn.login, conn.password or "") if conn.login else None
    client = DagsterClient(
        base_url(conn),
        headers={str(k): str(v) for k, v in (extra.get("headers") or {}).items()},
        auth=auth,
        timeout=float(extra.get("request_timeout", 30)),
        verify=bool(extra.get("verify", True)),
        retries=int(extra.get("retries", 4)),
    )
    return client, extra


def airflow_tags(context: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(idempotency tags, all Airflow tags) for the running task instance.

    The idempotency tags (dag id, run id, task id, map index) are the same on every try, so a
    retry finds the run an earlier try launched; ``airflow/try_number`` says which try did."""
    ti = context["ti"]
    same_every_try = {
        f"{TAG_PREFIX}dag_id": ti.dag_id,
        f"{TAG_PREFIX}run_id": ti.run_id,
        f"{TAG_PREFIX}task_id": ti.task_id,
    }
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        same_every_try[f"{TAG_PREFIX}map_index"] = str(map_index)
    tags = {**same_every_try, f"{TAG_PREFIX}try_number": str(ti.try_number)}
    logical_date = context.get("logical_date")
    if logical_date is not None:
        tags[f"{TAG_PREFIX}logical_date"] = logical_date.isoformat()
    return same_every_try, tags


def logical_date_partition() -> str:
    """The daily partition key (``YYYY-MM-DD``) of the running DAG run: its logical date's day,
    as Airflow's ``{{ ds }}`` renders it."""
    context = get_current_context()
    logical_date = context.get("logical_date")
    if logical_date is None:
        dag_id = context["ti"].dag_id
        raise AirflowFailException(
            f"{dag_id} was triggered without a logical date, so there is no partition to run; "
            "trigger it with one (the Dagster partition is the logical date's day, e.g. 2013-01-05)"
        )
    return str(logical_date.astimezone(UTC).date().isoformat())


def date_range(start: str, end: str) -> tuple[str, str]:
    """Validate an inclusive ``YYYY-MM-DD`` range from DAG params."""
    try:
        first, last = date.fromisoformat(str(start)), date.fromisoformat(str(end))
    except ValueError as exc:
        raise AirflowFailException(f"bad date in range {start!r} .. {end!r}: {exc}") from exc
    if last < first:
        raise AirflowFailException(f"end date {last} is before start date {first}")
    return first.isoformat(), last.isoformat()


def run_dagster_job(
    job_name: str,
    *,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    asset_selection: list[str] | None = None,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    conn_id: str = DEFAULT_CONN_ID,
    location: str | None = None,
    repository: str | None = None,
    timeout: float | None = None,
    poll_interval: float | None = None,
    reuse_succeeded: bool = True,
) -> dict[str, Any]:
    """Launch a Dagster job (or an asset selection) for this task and wait for its end.

    Returns ``{"run_id", "status", "job_name", "url", "reused"}`` (pushed to XCom). A refused
    launch (unknown job, bad partition or config) fails the task without retries; a failed,
    canceled or timed-out run, or an unreachable webserver, fails it with retries allowed.
    Location, repository, poll interval and timeout default to the connection's extra.
    """
    context = get_current_context()
    same_every_try, airflow_run_tags = airflow_tags(context)
    client, extra = client_from_connection(conn_id)
    try:
        result = launch_and_wait(
            client,
            job_name,
            location=location or extra.get("location") or DEFAULT_LOCATION,
            repository=repository or extra.get("repository") or DEFAULT_REPOSITORY,
            partition_key=partition_key,
            partition_range=partition_range,
            asset_selection=asset_selection,
            run_config=run_config,
            tags={**(tags or {}), **airflow_run_tags},
            idempotency_tags=same_every_try,
            reuse_succeeded=reuse_succeeded,
            timeout=float(timeout or extra.get("timeout", 3600)),
            poll_interval=float(poll_interval or extra.get("poll_interval", 5)),
            log=log.info,
        )
    except DagsterRequestError as exc:
        raise AirflowFailException(str(exc)) from exc
    except DagsterTriggerError as exc:
        raise AirflowException(str(exc)) from exc
    finally:
        client.close()
    log.info("Dagster run %s succeeded: %s", result.run_id, result.url)
    return result.as_dict()
