"""The container tier as a user brings it up: `make up PROFILE=k8s-docker` (dockerd, the code
server, serving and consumer containers, Dagster's webserver and daemon with DockerRunLauncher),
runs launched over Dagster's GraphQL API as the UI launches them, `make down` afterwards.

- Undisturbed: a run of the landed reference files and ``raw_airlines`` runs in a run-worker
  container, each step in a container of its own; the first step lands the files in S3, the
  second reads them back and writes its table to the S3 lake. From Dagster's event log: two
  steps, two different containers, neither with a volume, each sized and labelled by its compute
  class, with the settings the Kubernetes manifests give their pods.
- Fault: the second step's container killed mid-step (``docker kill``) fails the run, naming
  the container and the kill; re-executing from failure runs that step alone and writes the
  same table as the undisturbed run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import dagster as dg
import httpx
import pandas as pd
import pytest

from dagster_project.orchestration.docker_executor import RUN_ID_LABEL, STEP_KEY_LABEL
from dagster_project.platform import settings, storage
from tests.containers.conftest import UpTier

pytestmark = pytest.mark.integration

ASSETS = ("landed_reference_files", "raw_airlines")
KILLED = "raw_airlines"
RUN_TIMEOUT_S = 420

LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""
REEXECUTE = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def graphql(tier: UpTier, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(
        f"{tier.url}/graphql", json={"query": query, "variables": variables}, timeout=120
    )
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


def launched(result: dict[str, Any]) -> str:
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def launch_assets(tier: UpTier, assets: tuple[str, ...]) -> str:
    """What the UI's "Materialize selected" sends: the implicit asset job, a selection."""
    params = {
        "selector": {
            "repositoryLocationName": "flight_mlops",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [a]} for a in assets],
        },
        "mode": "default",
        "runConfigData": {},
    }
    return launched(graphql(tier, LAUNCH, {"params": params})["launchRun"])


def wait_for(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} not finished in {RUN_TIMEOUT_S} s")


def events_of(instance: dg.DagsterInstance, run_id: str, kind: str) -> list[Any]:
    return [
        e
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value == kind
    ]


def step_container_ids(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    return {
        str(e.step_key): e.dagster_event.event_specific_data.metadata["Docker container id"].value
        for e in events_of(instance, run_id, "STEP_WORKER_STARTING")
    }


def raw_airlines_table() -> pd.DataFrame:
    lake = settings.paths().lake_url
    assert lake.startswith("s3://")
    files = [f for f in storage.list_files(lake, ".parquet") if KILLED in f]
    assert len(files) == 1, files
    return storage.read_parquet(files[0])


# Settings the container test sets that the Kubernetes tier does not need, each for a reason.
DOCKER_ONLY = {
    "MLOPS_EXECUTOR": "k8s is the default executor of the k8s tier",
    "AWS_DEFAULT_REGION": "moto's region; a real bucket's region comes with its endpoint",
    "MLFLOW_S3_ENDPOINT_URL": "MLflow's own S3 client; on k8s the MLflow server proxies artifacts",
    "MLOPS_IMAGE": "the run and step containers' image; on k8s the pod spec and Helm values name it",
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


@dataclass(frozen=True)
class Undisturbed:
    run: dg.DagsterRun
    seconds: float
    table: pd.DataFrame


@pytest.fixture(scope="module")
def instance(k8s_docker_up: UpTier) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(k8s_docker_up.dagster_home))


@pytest.fixture(scope="module")
def undisturbed(k8s_docker_up: UpTier, instance: dg.DagsterInstance) -> Undisturbed:
    start = time.monotonic()
    run = wait_for(instance, launch_assets(k8s_docker_up, ASSETS))
    seconds = time.monotonic() - start
    failures = [e.message for e in events_of(instance, run.run_id, "STEP_FAILURE")]
    assert run.status == dg.DagsterRunStatus.SUCCESS, (run.status, failures)
    return Undisturbed(run, seconds, raw_airlines_table())


def test_each_step_in_its_own_container_sharing_state_only_through_s3(
    undisturbed: Undisturbed, instance: dg.DagsterInstance, docker_client, image
):
    run = undisturbed.run
    # the run itself ran in a container of the image (DockerRunLauncher), not on the host
    assert run.tags.get("docker/container_id"), run.tags
    started = step_container_ids(instance, run.run_id)
    assert set(started) == set(ASSETS), started
    assert len(set(started.values())) == len(started), "two steps shared a container"
    containers = {c.id: c for c in step_containers(docker_client, run.run_id)}
    assert set(started.values()) <= set(containers)
    for step, container_id in started.items():
        attrs = containers[container_id].attrs
        assert attrs["Config"]["Image"] == image
        assert attrs["Mounts"] == [], f"{step} mounts {attrs['Mounts']}"
        assert attrs["Config"]["Labels"][STEP_KEY_LABEL] == step
        assert attrs["Config"]["Labels"]["flight-mlops/compute-class"] == "data-processing"
        assert attrs["HostConfig"]["NanoCpus"] > 0
        assert attrs["HostConfig"]["Memory"] > 0
        assert attrs["State"]["ExitCode"] == 0
    # the settings the step containers ran with are the ones Kubernetes gives its pods
    # (what the tier passed in, not the image's own ENV)
    ran_with = set().union(*(container_keys(containers[c].attrs) for c in started.values()))
    baked = container_keys(docker_client.images.get(image).attrs)
    missing = ran_with - baked - set(DOCKER_ONLY) - manifest_keys()
    assert not missing, f"set in the container tier, absent from infra/k8s and Helm: {missing}"
    # the second step read what the first landed, and wrote its table to the S3 lake
    assert len(undisturbed.table) > 0
    # per-step container overhead: container launched -> step code starts (imports included)
    events = instance.all_logs(run.run_id)
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
        f"\nrun in containers: {undisturbed.seconds:.1f} s from launch; "
        f"step container start overhead (s): {overhead}"
    )


def kill_mid_step(instance: dg.DagsterInstance, docker_client: Any, run_id: str) -> str:
    """``docker kill`` the step's container once its code has started (STEP_START recorded)
    and while it still runs; returns the container's name."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        assert not run.is_finished, f"run ended before the kill: {run.status}"
        if any(e.step_key == KILLED for e in events_of(instance, run_id, "STEP_START")):
            (container,) = docker_client.containers.list(
                filters={"label": [f"{RUN_ID_LABEL}={run_id}", f"{STEP_KEY_LABEL}={KILLED}"]}
            )
            container.kill()
            return str(container.name)
        time.sleep(0.2)
    raise AssertionError(f"{KILLED} did not start in {RUN_TIMEOUT_S} s")


def test_a_step_container_killed_mid_step_fails_the_run_and_reexecution_completes_it(
    k8s_docker_up: UpTier, undisturbed: Undisturbed, instance: dg.DagsterInstance, docker_client
):
    run_id = launch_assets(k8s_docker_up, ASSETS)
    name = kill_mid_step(instance, docker_client, run_id)
    failed = wait_for(instance, run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    # the failure names the step, its container and the kill
    (failure,) = events_of(instance, run_id, "STEP_FAILURE")
    assert failure.step_key == KILLED
    error = failure.dagster_event.step_failure_data.error
    assert error is not None
    for words in (f"Step {KILLED} failed health check", name, "code 137", "SIGKILL"):
        assert words in error.message, error.message
    print(f"\nthe killed run's failure: {error.message}")
    # re-execute from failure, as the UI's button does: only the failed step runs again
    params = {"parentRunId": run_id, "strategy": "FROM_FAILURE"}
    again = launched(graphql(k8s_docker_up, REEXECUTE, {"params": params})["launchRunReexecution"])
    rerun = wait_for(instance, again)
    failures = [e.message for e in events_of(instance, again, "STEP_FAILURE")]
    assert rerun.status == dg.DagsterRunStatus.SUCCESS, (rerun.status, failures)
    assert set(step_container_ids(instance, again)) == {KILLED}
    # the outputs equal the undisturbed run's
    pd.testing.assert_frame_equal(raw_airlines_table(), undisturbed.table)
