"""Container-tier fixtures: a running Docker engine (installed and started by
infra/docker/engine.sh when missing) and the project's image (``make image``'s script: built when
missing, reused layer for layer when nothing changed).

No engine: the tests fail in CI (``CI=true``) and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.paths import REPO_ROOT
from tests.server.conftest import s3_endpoint, server_tier, services_up

__all__ = ["s3_endpoint", "server_tier", "services_up"]

IMAGE = os.environ.get("MLOPS_IMAGE", "flight-mlops:0.1.0")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"Docker engine unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"Docker engine unavailable (runs in CI): {reason}")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - pinned in the lock
        _unavailable(f"docker-py missing: {exc}")
    engine = subprocess.run(
        ["bash", str(REPO_ROOT / "infra/docker/engine.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if engine.returncode != 0:
        _unavailable(engine.stderr.strip() or engine.stdout.strip())
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def image(docker_client: Any) -> str:
    """The image of this checkout: infra/docker/image.sh (a cold build is minutes; with nothing
    changed every layer is reused)."""
    start = time.monotonic()
    built = subprocess.run(
        ["bash", str(REPO_ROOT / "infra/docker/image.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "PY": sys.executable, "IMAGE": IMAGE, "PROGRESS": "plain"},
    )
    if built.returncode != 0:
        pytest.fail(f"image build failed:\n{built.stderr[-4000:]}", pytrace=False)
    print(f"\n{built.stdout.strip()} ({time.monotonic() - start:.0f} s with the checks)")
    return IMAGE
