"""Server-tier fixtures: the real PostgreSQL and Redis of the machine, and an S3-compatible server
(moto in server mode) on a loopback port. Each test gets its own namespace (databases
``<ns>_dagster|mlflow|feast|serving``, Redis keys ``<ns>:*``, S3 prefix ``<ns>/``, Feast project) and
removes it afterwards.

PostgreSQL or Redis down: the tests fail in CI (``CI=true``) and are skipped with the reason
elsewhere (a laptop without them can still run the rest of the suite).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagster_project.platform import server
from dagster_project.platform.settings import SHARED_STATE_ENV, ServerSettings
from tests.conftest import free_port


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"server-tier service down in CI: {reason}", pytrace=False)
    pytest.skip(f"server-tier service down (runs in CI): {reason}")


@pytest.fixture(scope="session")
def services_up() -> None:
    probe = ServerSettings.from_env()
    for check in (server.redis_client, server._pg_connect):
        try:
            conn = check(probe)
        except server.ServiceUnavailableError as exc:
            _unavailable(str(exc))
        else:
            conn.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port: a real HTTP S3 API, in memory."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    yield f"http://127.0.0.1:{port}"
    moto.stop()


# Settings a test tier must not inherit from the shell: it names its own stores.
TIER_ENV_CLEARED = (*SHARED_STATE_ENV, "MLOPS_MLFLOW_TRACKING_URI", "MLOPS_SERVING_URL")


def tier_env(mlops_home: Path, s3_endpoint: str) -> dict[str, str]:
    """The server tier's settings for a namespace of its own (PostgreSQL databases, Redis keys,
    S3 prefix) on the machine's stores and the test's S3 server."""
    return {
        "MLOPS_PROFILE": "server",
        "MLOPS_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "MLOPS_HOME": str(mlops_home),
        "MLOPS_S3_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "MLOPS_S3_BUCKET": "mlops-test",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture
def server_tier(
    services_up: None, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerSettings]:
    """MLOPS_PROFILE=server in this process's environment (subprocesses inherit it), with a
    namespace of its own, prepared (databases, bucket, dagster.yaml) and dropped afterwards."""
    for key, value in tier_env(tmp_path / "mlops", s3_endpoint).items():
        monkeypatch.setenv(key, value)
    for key in TIER_ENV_CLEARED:
        monkeypatch.delenv(key, raising=False)
    settings = ServerSettings.from_env()
    server.prepare(settings, tmp_path / "mlops" / "dagster_home")
    yield settings
    server.drop(settings)
