"""Preparing (and removing) a server tier's state on PostgreSQL, Redis and S3.

`python -m dagster_project init` calls :func:`prepare`: one database per store, the S3 bucket,
and a ``dagster.yaml`` that puts Dagster's run, event and schedule storage in PostgreSQL. The
tests call :func:`drop` to leave the shared services as they found them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from dagster_project.platform import settings
from dagster_project.platform.settings import SERVER_STORES, ServerSettings


class ServiceUnavailableError(RuntimeError):
    """A server-tier service (PostgreSQL, Redis, S3) did not answer."""


def _pg_connect(server: ServerSettings, store: str | None = None) -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(server.pg_url(store), connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise ServiceUnavailableError(
            f"PostgreSQL at {server.pg_host}:{server.pg_port} (user {server.pg_user}) is not "
            f"reachable: {str(exc).strip()}. Start it or set MLOPS_PG_HOST/MLOPS_PG_PORT."
        ) from exc
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    return conn


def ensure_databases(server: ServerSettings) -> list[str]:
    """Create the tier's missing databases; returns the ones created."""
    created = []
    conn = _pg_connect(server)
    try:
        with conn.cursor() as cur:
            for store in SERVER_STORES:
                name = server.database(store)
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
                    created.append(name)
    finally:
        conn.close()
    return created


def drop_databases(server: ServerSettings) -> None:
    conn = _pg_connect(server)
    try:
        with conn.cursor() as cur:
            for store in SERVER_STORES:
                cur.execute(f'DROP DATABASE IF EXISTS "{server.database(store)}" WITH (FORCE)')
    finally:
        conn.close()


def redis_client(server: ServerSettings) -> Any:
    import redis

    client = redis.Redis.from_url(server.redis_url(), socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceUnavailableError(
            f"Redis at {server.redis_host}:{server.redis_port} is not reachable: {exc}. "
            "Start it or set MLOPS_REDIS_HOST/MLOPS_REDIS_PORT."
        ) from exc
    return client


def drop_redis_keys(server: ServerSettings) -> int:
    """Delete this namespace's stream/state keys and its Feast project's online rows."""
    client = redis_client(server)
    deleted = 0
    keys = list(client.scan_iter(match=f"{server.redis_prefix}*", count=1000))
    # Feast's Redis keys end with the project name (entity key bytes + project).
    project = server.feast_project.encode()
    keys += [k for k in client.scan_iter(count=1000) if k.endswith(project)]
    for start in range(0, len(keys), 500):
        deleted += int(client.delete(*keys[start : start + 500]))
    return deleted


def s3_client(server: ServerSettings) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=server.s3_endpoint_url)


def ensure_bucket(server: ServerSettings) -> bool:
    """Create the bucket if it is missing; returns whether it was created."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(server)
    try:
        client.head_bucket(Bucket=server.bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise
    except BotoCoreError as exc:
        raise ServiceUnavailableError(
            f"S3 endpoint {server.s3_endpoint_url or '(AWS default)'} is not reachable: {exc}"
        ) from exc
    client.create_bucket(Bucket=server.bucket)
    return True


def drop_objects(server: ServerSettings) -> int:
    """Delete every object under the namespace's prefix in the bucket."""
    client = s3_client(server)
    deleted = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=server.bucket, Prefix=f"{server.namespace}/"
    ):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=server.bucket, Delete={"Objects": objects})
            deleted += len(objects)
    return deleted


def dagster_yaml(server: ServerSettings) -> dict[str, Any]:
    """Dagster instance config: runs, events and schedules in PostgreSQL (dagster-postgres).

    A password (``MLOPS_PG_PASSWORD``) is written as an ``env:`` reference that Dagster
    resolves when it connects, never as its value."""
    db: dict[str, Any] = {
        "username": server.pg_user,
        "hostname": server.pg_host,
        "db_name": server.database("dagster"),
        "port": server.pg_port,
        # SQLAlchemy 2.1 defaults to psycopg 3; the pinned stack ships psycopg2.
        "scheme": "postgresql+psycopg2",
    }
    if os.environ.get(ServerSettings.PG_PASSWORD):
        db["password"] = {"env": ServerSettings.PG_PASSWORD}
    config: dict[str, Any] = {
        "storage": {"postgres": {"postgres_db": db}},
        # Runs launched from the UI start at once (no daemon needed for a single user);
        # `make up` runs the daemon anyway for sensors and schedules.
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "DefaultRunCoordinator",
        },
        "telemetry": {"enabled": False},
    }
    if settings.profile() == "k8s" and settings.executor() == "docker":
        config["run_launcher"] = docker_run_launcher()
    return config


DOCKER_SOCKET = "/var/run/docker.sock"
TIER_LABEL = "flight-mlops/tier"


def docker_run_launcher(socket: str = DOCKER_SOCKET) -> dict[str, Any]:
    """dagster-docker's ``DockerRunLauncher`` for ``MLOPS_EXECUTOR=docker``: each run in a
    container of the tier's image on the host network (the stores on 127.0.0.1), the tier's
    settings passed by name from the launching process. The run worker mounts the engine's
    socket (with the socket's group) to start its step containers; the docker executor strips
    that mount from the step containers, which mount nothing."""
    kwargs: dict[str, Any] = {
        "volumes": [f"{socket}:{socket}"],
        "labels": {TIER_LABEL: "k8s-docker"},  # `make down PROFILE=k8s-docker` removes by it
    }
    if os.path.exists(socket):
        kwargs["group_add"] = [str(os.stat(socket).st_gid)]
    return {
        "module": "dagster_docker",
        "class": "DockerRunLauncher",
        "config": {
            "image": settings.docker_image(),
            "network": "host",
            "env_vars": settings.container_env(),
            "container_kwargs": kwargs,
        },
    }


def write_dagster_yaml(dagster_home: Path, server: ServerSettings) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    header = (
        "# Generated by `python -m dagster_project init` for MLOPS_PROFILE=server: Dagster's\n"
        "# storage in PostgreSQL. Edit MLOPS_PG_* and rerun instead of editing this file.\n"
    )
    path.write_text(header + yaml.safe_dump(dagster_yaml(server), sort_keys=False))
    return path


def prepare(server: ServerSettings, dagster_home: Path) -> dict[str, Any]:
    """Everything a fresh server tier needs before the first run (idempotent)."""
    created = ensure_databases(server)
    redis_client(server)
    bucket_created = ensure_bucket(server)
    config = write_dagster_yaml(dagster_home, server)
    return {
        "databases created": ", ".join(created) or "none (all there)",
        "bucket": f"{server.bucket} ({'created' if bucket_created else 'exists'})",
        "dagster.yaml": str(config),
    }


def drop(server: ServerSettings) -> None:
    """Remove the namespace's databases, Redis keys and S3 objects (tests, `make clean`)."""
    drop_databases(server)
    drop_redis_keys(server)
    drop_objects(server)
