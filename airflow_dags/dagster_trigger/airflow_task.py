"""The Airflow side of the trigger: the ``dagster_default`` connection becomes client settings,
the running task's context becomes run tags. Used by ``operators.DagsterRunOperator`` at run
time, never at parse time.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from airflow.sdk import BaseHook, Connection
from airflow.sdk.exceptions import AirflowFailException

from dagster_trigger.client import (
    DagsterClient,
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


def connection_settings(conn_id: str = DEFAULT_CONN_ID) -> dict[str, Any]:
    """The client's keyword arguments (``url``, ``headers``, ``auth``, ``timeout``, ``verify``,
    ``retries``) from an Airflow connection, plus its ``extra`` (``location``, ``repository``,
    ``poll_interval``, ``timeout`` defaults). The deferred trigger gets the same settings.

    ``login``/``password`` become HTTP basic auth (a proxy in front of the webserver);
    ``extra.headers`` are sent as they are (for example an API token header).
    """
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    return {
        "url": base_url(conn),
        "headers": {str(k): str(v) for k, v in (extra.get("headers") or {}).items()},
        "auth": (conn.login, conn.password or "") if conn.login else None,
        "timeout": float(extra.get("request_timeout", 30)),
        "verify": bool(extra.get("verify", True)),
        "retries": int(extra.get("retries", 4)),
        "extra": extra,
    }


def client_from_connection(conn_id: str = DEFAULT_CONN_ID) -> tuple[DagsterClient, dict[str, Any]]:
    """A blocking client for the Dagster webserver named by an Airflow connection, and the
    connection's extra (see ``connection_settings``)."""
    settings = connection_settings(conn_id)
    extra = settings.pop("extra")
    url = settings.pop("url")
    return DagsterClient(url, **settings), extra


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


def date_range(start: str, end: str) -> tuple[str, str]:
    """Validate an inclusive ``YYYY-MM-DD`` range from DAG params."""
    try:
        first, last = date.fromisoformat(str(start)), date.fromisoformat(str(end))
    except ValueError as exc:
        raise AirflowFailException(f"bad date in range {start!r} .. {end!r}: {exc}") from exc
    if last < first:
        raise AirflowFailException(f"end date {last} is before start date {first}")
    return first.isoformat(), last.isoformat()
