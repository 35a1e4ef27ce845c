"""The container tier as a user brings it up and runs it: `make up PROFILE=k8s-docker` (dockerd,
the code server, serving and consumer containers, Dagster's webserver and daemon with
DockerRunLauncher), then `make demo PROFILE=k8s-docker`, whose runs are launched on the tier's
Dagster over GraphQL as the UI launches them; `make down` afterwards.

- The whole spine, every step in its own container: the demo ingests and validates two weeks,
  builds the features, loads the online store, trains (one trial per family), gates and deploys
  to the serving container, then scores the next day's flights there. From Dagster's event log:
  each step of both runs in a different container of the image, none with a volume, each sized
  and labelled by its compute class, with the settings the Kubernetes manifests give their
  pods. The serving container answers `/predict` for a real flight with the new champion,
  its features from Redis, and only with the tier's token.
- A second training run whose challenger is promoted, launched while a load generator sends
  requests to the serving container: no request fails, the answers switch to the new version.
- Fault: a step's container killed mid-step (``docker kill``) fails the run, naming the
  container and the kill; re-executing from failure runs that step alone and writes the same
  table as the undisturbed run."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import httpx
import pandas as pd
import pytest

from benchmarks import loadgen
from dagster_project.cli import tier_runs
from dagster_project.defs.run_config import training_run_config
from dagster_project.orchestration.docker_executor import RUN_ID_LABEL, STEP_KEY_LABEL
from dagster_project.platform import names, settings, storage
from dagster_project.serving import scoring
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import tracking
from tests.containers.conftest import UpTier

pytestmark = pytest.mark.integration

START, END = "2013-01-01", "2013-01-14"
DEMO = (f"START={START}", f"END={END}", "HOLDOUT_DAYS=3", "VALIDATION_DAYS=3", "TRIALS=1")
# a real flight an hour before its departure on the evening after the window: within every
# view's TTL of the rows the demo loaded into Redis
FLIGHT = EXAMPLE_FLIGHT | {"scheduled_departure": "2013-01-15T00:45:00"}
ASSETS = ("landed_reference_files", "raw_airlines")
KILLED = "raw_airlines"
RUN_TIMEOUT_S = 900

REEXECUTE = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def wait_for(instance: dg.DagsterInstance, run_id: str) -> tier_runs.LaunchedRun:
    return tier_runs.follow(instance, run_id, timeout_s=RUN_TIMEOUT_S)


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


def start_overhead(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Per step: container launched -> the step's code starts (engine start and imports)."""
    times = {
        (e.step_key, e.dagster_event.event_type_value): e.timestamp
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.step_key
    }
    return {
        step: times[(step, "STEP_START")] - times[(step, "STEP_WORKER_STARTING")]
        for step, kind in times
        if kind == "STEP_WORKER_STARTING" and (step, "STEP_START") in times
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
class Demo:
    output: str
    seconds: float
    runs: dict[str, dg.DagsterRun]  # by job name
    table: pd.DataFrame  # raw_airlines as the undisturbed run wrote it


@pytest.fixture(scope="module")
def instance(k8s_docker_up: UpTier) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(k8s_docker_up.dagster_home))


@pytest.fixture(scope="module")
def demo(k8s_docker_up: UpTier, instance: dg.DagsterInstance) -> Demo:
    start = time.monotonic()
    done = k8s_docker_up.make("demo", *DEMO, timeout=1800)
    seconds = time.monotonic() - start
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    runs = {r.job_name: r for r in instance.get_runs()}
    assert {"ingest_features_job", "training_job"} <= set(runs), set(runs)
    print(f"\n`make demo PROFILE=k8s-docker` ({START}..{END}): {seconds:.0f} s\n{done.stdout}")
    return Demo(output, seconds, runs, raw_airlines_table())


def test_the_demo_runs_the_spine_with_every_step_in_its_own_container(
    demo: Demo, instance: dg.DagsterInstance, docker_client, image, k8s_docker_up: UpTier
):
    baked = container_keys(docker_client.images.get(image).attrs)
    declared = manifest_keys() | set(DOCKER_ONLY)  # rendered once, not per step
    overheads: list[float] = []
    for job, run in demo.runs.items():
        assert run.status == dg.DagsterRunStatus.SUCCESS, (job, run.status)
        # the run itself ran in a container of the image (DockerRunLauncher), not on the host
        assert run.tags.get("docker/container_id"), run.tags
        started = step_container_ids(instance, run.run_id)
        ran = {str(e.step_key) for e in events_of(instance, run.run_id, "STEP_SUCCESS")}
        assert ran, job
        assert ran <= set(started), (job, ran - set(started))
        assert len(set(started.values())) == len(started), f"{job}: two steps shared a container"
        containers = {c.id: c for c in step_containers(docker_client, run.run_id)}
        assert set(started.values()) <= set(containers)
        for step, container_id in started.items():
            attrs = containers[container_id].attrs
            assert attrs["Config"]["Image"] == image
            assert attrs["Mounts"] == [], f"{step} mounts {attrs['Mounts']}"
            labels = attrs["Config"]["Labels"]
            assert labels[STEP_KEY_LABEL] == step
            assert labels["flight-mlops/compute-class"], labels
            assert attrs["HostConfig"]["NanoCpus"] > 0
            assert attrs["HostConfig"]["Memory"] > 0
            assert attrs["State"]["ExitCode"] == 0, (step, attrs["State"])
            # the settings the step ran with are the ones Kubernetes gives its pods
            missing = container_keys(attrs) - baked - declared
            assert not missing, f"{step}: set in the container tier, not in infra/k8s: {missing}"
        overheads += start_overhead(instance, run.run_id).values()
    training = demo.runs["training_job"]
    assert "deployed_endpoint" in step_container_ids(instance, training.run_id)
    # the demo's own account: launched on the tier, the next day scored through the container
    env = k8s_docker_up.env
    url, token = env["MLOPS_SERVING_URL"], env["MLOPS_SERVING_TOKEN"]
    assert f"launched on {env['MLOPS_DAGSTER_URL']}" in demo.output
    assert f"real requests to {url}/predict/batch" in demo.output
    assert demo.output.count("actual: ") == 12, demo.output[-3000:]
    assert "FAILED" not in demo.output
    # the serving container answers for a real flight with the new champion, from Redis
    champion = tracking.Registry(settings.paths().mlflow_tracking_uri).by_alias(names.CHAMPION)
    assert champion is not None
    assert httpx.post(f"{url}/predict", json=FLIGHT, timeout=30).status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{url}/predict", json=FLIGHT, headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == champion.version
    assert answer.json()["fallback"] is False, answer.json()["fallbacks"]
    print(
        f"\nsteps in containers: {len(overheads)}; container start overhead (launch -> step "
        f"code) median {statistics.median(overheads):.1f} s, max {max(overheads):.1f} s"
    )


def test_a_promoted_challenger_reaches_the_serving_container_under_load_failing_nothing(
    demo: Demo, instance: dg.DagsterInstance, k8s_docker_up: UpTier
):
    env = k8s_docker_up.env
    url, token = env["MLOPS_SERVING_URL"], env["MLOPS_SERVING_TOKEN"]
    registry = tracking.Registry(settings.paths().mlflow_tracking_uri)
    old = registry.by_alias(names.CHAMPION)
    assert old is not None
    # the same window again; a challenger that does not lose to the champion is promoted
    config = training_run_config(
        START,
        END,
        model={"model_kinds": ["xgboost"], "n_trials": 1, "holdout_days": 3,
               "validation_days": 3},
        promotion={"min_auc_margin": -1.0, "min_auc": 0.5, "max_calibration_error": 0.5,
                   "shadow_days": 0},
    )  # fmt: skip
    run_id = tier_runs.launch(env["MLOPS_DAGSTER_URL"], "training_job", config)
    flights = [  # real flights' keys, asked at the probe time
        f | {"scheduled_departure": FLIGHT["scheduled_departure"]}
        for f in scoring.scheduled_flights(date(2013, 1, 14), limit=40)
    ]
    box: dict[str, Any] = {}
    done = threading.Event()

    def load() -> None:
        box["result"] = loadgen.open_loop(
            f"{url}/predict", flights, rate=20, duration_s=RUN_TIMEOUT_S, token=token, until=done
        )

    # The serving replicas poll the `champion` alias on their own (MLOPS_SERVING_RELOAD_S), so
    # the new version may go live as soon as the gate sets the alias, before the deploy step
    # starts: the load runs from the model step's container launch (the alias cannot move
    # before its gate) until a few seconds after the run ends
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not any(
        e.step_key == "flight_delay_model"
        for e in events_of(instance, run_id, "STEP_WORKER_STARTING")
    ):
        run = instance.get_run_by_id(run_id)
        assert run is not None
        assert not run.is_finished, events_of(instance, run_id, "STEP_FAILURE")
        assert time.monotonic() < deadline, "the model step did not start"
        time.sleep(0.5)
    thread = threading.Thread(target=load)
    thread.start()
    try:
        finished = wait_for(instance, run_id)
        time.sleep(5)
    finally:
        done.set()
        thread.join()
    assert finished.success, [e.message for e in events_of(instance, run_id, "STEP_FAILURE")]
    new = registry.by_alias(names.CHAMPION)
    assert new is not None
    assert new.version != old.version
    (deployed,) = finished.asset_materializations_for_node("deployed_endpoint")
    assert str(deployed.metadata["model_version"].value) == new.version
    result = box["result"]
    assert result.failed == 0, result.figures()
    assert result.ok == result.sent, result.figures()
    assert set(result.versions) == {old.version, new.version}, result.versions
    print(
        f"\npromotion in containers under load: {result.versions} answers, "
        f"p99 {result.figures()['p99_ms']} ms"
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
    k8s_docker_up: UpTier, demo: Demo, instance: dg.DagsterInstance, docker_client
):
    url = k8s_docker_up.env["MLOPS_DAGSTER_URL"]
    run_id = tier_runs.launch(url, "__ASSET_JOB", assets=list(ASSETS))
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
    reply = httpx.post(
        f"{url}/graphql", json={"query": REEXECUTE, "variables": {"params": params}}, timeout=120
    ).json()
    launched = reply["data"]["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", reply
    again = launched["run"]["runId"]
    rerun = wait_for(instance, again)
    assert rerun.success, [e.message for e in events_of(instance, again, "STEP_FAILURE")]
    assert set(step_container_ids(instance, again)) == {KILLED}
    # the outputs equal the undisturbed run's (the demo's ingest run)
    pd.testing.assert_frame_equal(raw_airlines_table(), demo.table)
