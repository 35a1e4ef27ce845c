"""Container-tier fixtures: a running Docker engine (installed and started by
infra/docker/engine.sh when missing) and the project's image (``make image``'s script: built when
missing, reused layer for layer when nothing changed).

No engine: the tests fail in CI (``CI=true``) and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.paths import REPO_ROOT
from tests.server.conftest import TIER_ENV_CLEARED, s3_endpoint, services_up, tier_env

__all__ = ["s3_endpoint", "services_up"]

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


@dataclass(frozen=True)
class UpTier:
    """What `make up PROFILE=k8s-docker` started: Dagster's webserver (``url``) over the code
    server container, with the instance in ``dagster_home`` (PostgreSQL storage)."""

    url: str
    dagster_home: Path
    env: dict[str, str]

    def make(
        self, target: str, *variables: str, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", target, "PROFILE=k8s-docker", *variables],
            cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


@pytest.fixture(scope="module")
def k8s_docker_up(
    services_up: None, s3_endpoint: str, docker_client: Any, image: str, tmp_path_factory
) -> Iterator[UpTier]:
    """`make up PROFILE=k8s-docker` as a user runs it, on a namespace of its own (the machine's
    PostgreSQL and Redis, the test's S3 server), on free ports; `make down` afterwards, which
    must leave none of the tier's containers behind. This process gets the same settings, so
    it reads the tier's instance and lake."""
    from dagster_project.platform import server
    from dagster_project.platform.settings import ServerSettings

    mlops = tmp_path_factory.mktemp("k8s_docker") / "mlops"
    serving_port = free_port()
    settings = tier_env(mlops, s3_endpoint) | {
        "MLOPS_PROFILE": "k8s",
        "MLOPS_EXECUTOR": "docker",
        "MLOPS_IMAGE": image,
        "MLOPS_SERVING_PORT": str(serving_port),
        # what the Makefile would derive: the deployer's Service URL, and the bearer token
        # the serving container requires on this tier (a throwaway one per test tier)
        "MLOPS_SERVING_URL": f"http://127.0.0.1:{serving_port}",
        "MLOPS_SERVING_TOKEN": secrets.token_hex(16),
    }
    ports = {"DAGSTER_PORT": str(free_port()), "CODE_PORT": str(free_port())}
    settings["MLOPS_DAGSTER_URL"] = f"http://127.0.0.1:{ports['DAGSTER_PORT']}"  # as make sets it
    env = {k: v for k, v in os.environ.items() if k not in TIER_ENV_CLEARED}
    env |= settings | ports | {"DAGSTER_HOME": str(mlops / "dagster_home"), "IMAGE": image}
    tier = UpTier(settings["MLOPS_DAGSTER_URL"], mlops / "dagster_home", env)
    label = {"label": f"{server.TIER_LABEL}=k8s-docker"}
    running = [c.name for c in docker_client.containers.list(all=True, filters=label)]
    if running:  # its containers have fixed names: `up` would reuse them, `down` remove them
        pytest.fail(
            f"a k8s-docker tier is already up on this engine ({running}): "
            "`make down PROFILE=k8s-docker` first",
            pytrace=False,
        )
    with pytest.MonkeyPatch.context() as mp:
        for key in TIER_ENV_CLEARED:
            mp.delenv(key, raising=False)
        for key, value in settings.items():
            mp.setenv(key, value)
        try:
            up = tier.make("up")
            assert up.returncode == 0, f"make up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
            yield tier
        finally:
            down = tier.make("down", timeout=300)
            left = docker_client.containers.list(all=True, filters=label)
            server.drop(ServerSettings.from_env())
            assert down.returncode == 0, down.stderr[-3000:]
            assert not left, f"make down left containers: {[c.name for c in left]}"
