"""The container tier's short check (default suite): a run launched in a run-worker container
on the `k8s` tier with ``MLOPS_EXECUTOR=docker`` runs each step in its own container; the first
step lands the reference files in S3, the second reads them back and writes its table to the
S3 lake. From Dagster's event log: two steps, two different containers, neither with a volume,
each sized and labelled by its compute class."""

from __future__ import annotations

import io
import os
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project.orchestration.docker_executor import RUN_ID_LABEL, STEP_KEY_LABEL
from dagster_project.platform import settings

pytestmark = pytest.mark.integration

ASSETS = "landed_reference_files,raw_airlines"
DAGSTER_HOME_IN_IMAGE = "/opt/dagster/dagster_home"
DOCKER_SOCKET = "/var/run/docker.sock"


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run_worker(
    client: Any, image: str, dagster_home: Path, command: list[str], name: str
) -> tuple[int, str, float]:
    """Run ``command`` in a run-worker container of ``image``: the tier's settings from this
    process's environment, the instance's dagster.yaml copied in (no volume), the engine's socket
    mounted (it starts the step containers). Returns exit code, log tail, wall seconds."""
    env = {k: os.environ[k] for k in settings.container_env()}
    container = client.containers.create(
        image,
        command=command,
        name=name,
        network="host",
        environment={**env, "DAGSTER_HOME": DAGSTER_HOME_IN_IMAGE},
        volumes={DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}},
        group_add=[str(os.stat(DOCKER_SOCKET).st_gid)],
        labels={"flight-mlops/test": name},
    )
    try:
        container.put_archive(
            DAGSTER_HOME_IN_IMAGE,
            _tar("dagster.yaml", (dagster_home / "dagster.yaml").read_bytes()),
        )
        start = time.monotonic()
        container.start()
        result = container.wait(timeout=600)
        wall = time.monotonic() - start
        logs = container.logs().decode(errors="replace")
        return int(result["StatusCode"]), logs[-6000:], wall
    finally:
        container.remove(force=True)


# Settings the container test sets that the Kubernetes tier does not need, each for a reason.
DOCKER_ONLY = {
    "MLOPS_EXECUTOR": "k8s is the default executor of the k8s tier",
    "AWS_DEFAULT_REGION": "moto's region; a real bucket's region comes with its endpoint",
    "MLFLOW_S3_ENDPOINT_URL": "MLflow's own S3 client; on k8s the MLflow server proxies artifacts",
}


def manifest_keys() -> set[str]:
    """Settings keys the rendered manifests and the Dagster Helm values give every workload:
    the ConfigMap's data, the Secrets' declared keys, the user deployment's env."""
    import yaml

    from tests.infra.manifests import INFRA, OVERLAYS, render

    keys: set[str] = set()
    for overlay in OVERLAYS:
        for doc in render(INFRA / "k8s" / "overlays" / overlay):
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("mlops-config"):
                keys |= set(doc["data"])
            if doc["kind"] == "Secret":
                declared = doc["metadata"].get("annotations", {}).get("flight-mlops/keys", "")
                keys |= {k for k in declared.split(",") if k}
    values = yaml.safe_load((INFRA / "helm" / "dagster-values.yaml").read_text())
    for deployment in values["dagster-user-deployments"]["deployments"]:
        keys |= set(deployment.get("env") or {})
    return keys


def container_keys(attrs: dict[str, Any]) -> set[str]:
    names = {e.split("=", 1)[0] for e in attrs["Config"]["Env"]}
    return {n for n in names if n.startswith(settings.CONTAINER_ENV_PREFIXES)}


def step_containers(client: Any, run_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{RUN_ID_LABEL}={run_id}"})


@pytest.fixture
def k8s_docker_tier(server_tier, monkeypatch):
    """The `k8s` tier on the docker executor over the server tier's stores (the test's namespace);
    the serving Service is not involved here."""
    monkeypatch.setenv("MLOPS_PROFILE", "k8s")
    monkeypatch.setenv("MLOPS_EXECUTOR", "docker")
    return server_tier


def test_each_step_in_its_own_container_sharing_state_only_through_s3(
    k8s_docker_tier, docker_client, image, tmp_path
):
    dagster_home = tmp_path / "mlops" / "dagster_home"
    name = f"mlops-run-{uuid.uuid4().hex[:8]}"
    code, logs, wall = run_worker(
        docker_client,
        image,
        dagster_home,
        [
            "dagster",
            "asset",
            "materialize",
            "-m",
            "dagster_project.definitions",
            "--select",
            ASSETS,
        ],
        name,
    )
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runs = instance.get_runs()
    assert runs, f"no run recorded (exit {code}):\n{logs}"
    run = runs[0]
    try:
        assert code == 0, logs
        assert run.status == dg.DagsterRunStatus.SUCCESS
        events = instance.all_logs(run.run_id)
        started = {
            e.step_key: e.dagster_event.event_specific_data.metadata["Docker container id"].value
            for e in events
            if e.dagster_event and e.dagster_event.event_type_value == "STEP_WORKER_STARTING"
        }
        assert set(started) == {"landed_reference_files", "raw_airlines"}, started
        assert len(set(started.values())) == len(started), "two steps shared a container"
        containers = {c.id: c for c in step_containers(docker_client, run.run_id)}
        assert set(started.values()) <= set(containers)
        for step, container_id in started.items():
            attrs = containers[container_id].attrs
            assert attrs["Mounts"] == [], f"{step} mounts {attrs['Mounts']}"
            assert attrs["Config"]["Labels"][STEP_KEY_LABEL] == step
            assert attrs["Config"]["Labels"]["flight-mlops/compute-class"] == "data-processing"
            assert attrs["HostConfig"]["NanoCpus"] > 0
            assert attrs["HostConfig"]["Memory"] > 0
            assert attrs["State"]["ExitCode"] == 0
        # the settings the step containers ran with are the ones Kubernetes gives its pods
        # (what the test passed in, not the image's own ENV)
        ran_with = set().union(*(container_keys(containers[c].attrs) for c in started.values()))
        baked = container_keys(docker_client.images.get(image).attrs)
        missing = ran_with - baked - set(DOCKER_ONLY) - manifest_keys()
        assert not missing, f"set in the container test, absent from infra/k8s and Helm: {missing}"
        # the second step read what the first landed, and wrote its table to the S3 lake
        from dagster_project.platform import storage

        lake = settings.paths().lake_url
        assert lake.startswith("s3://")
        written = storage.list_files(lake)
        assert any("raw_airlines" in f for f in written), written
        # per-step container overhead: container launched -> step code starts (imports included)
        times = {
            (e.step_key, e.dagster_event.event_type_value): e.timestamp
            for e in events
            if e.dagster_event and e.step_key
        }
        overhead = {
            step: round(times[(step, "STEP_START")] - times[(step, "STEP_WORKER_STARTING")], 1)
            for step in started
        }
        print(
            f"\nrun in containers: {wall:.1f} s wall; step container start overhead (s): {overhead}"
        )
    finally:
        for container in step_containers(docker_client, run.run_id):
            container.remove(force=True)
