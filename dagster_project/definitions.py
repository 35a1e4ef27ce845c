"""The Dagster code location: wiring only. The tier (MLOPS_PROFILE) picks the resources."""

from __future__ import annotations

import os

import dagster as dg

from dagster_project.defs import (
    features,
    ingestion,
    monitoring,
    serving,
    streaming,
    training,
    validation,
)
from dagster_project.defs.jobs import jobs
from dagster_project.defs.sensors import schedules, sensors
from dagster_project.orchestration.compute_asset import k8s_executor
from dagster_project.orchestration.docker_executor import docker_step_executor
from dagster_project.orchestration.io_managers import LakeIOManager
from dagster_project.orchestration.resources import (
    Deployer,
    FeastResource,
    LandingZone,
    MlflowResource,
    MonitoringResource,
    StreamResource,
    ValidationGate,
)
from dagster_project.platform import settings


def build_resources(paths: settings.Paths, serving_port: int | None = None) -> dict[str, object]:
    """Resources of the tier that ``paths`` describes (local, or server settings for the server
    tiers); every location derives from ``paths`` (tests pass a temp dir and a free port)."""
    feast = paths.feast_overrides()
    return {
        "landing": LandingZone(url=paths.landing_url),
        "gate": ValidationGate(
            gx_dir=str(paths.gx_dir),
            quarantine_url=paths.quarantine_url,
            docs_url=paths.gx_docs_url,
        ),
        "feast": FeastResource(
            config_template=str(paths.feast_template),
            state_dir=str(paths.feast_dir),
            features_url=paths.features_url,
            project=feast.get("project"),
            registry_url=feast.get("registry"),
            redis_connection=feast.get("online_store"),
        ),
        "io_manager": LakeIOManager(base_url=paths.lake_url),
        "mlflow": MlflowResource(
            tracking_uri=paths.mlflow_tracking_uri, artifact_location=paths.mlflow_artifacts
        ),
        "monitor": MonitoringResource(
            prediction_log=paths.prediction_log_url, folder=paths.monitoring_url
        ),
        "stream": StreamResource(
            folder=str(paths.stream_dir),
            redis_url=paths.server.redis_url() if paths.server else None,
            prefix=paths.server.redis_prefix if paths.server else "mlops:",
        ),
        "deployer": Deployer(
            port=serving_port or settings.serving_port(),
            mlops_home=str(paths.home),
            api_token=dg.EnvVar("MLOPS_SERVING_TOKEN")
            if "MLOPS_SERVING_TOKEN" in os.environ
            else None,
            serving_url=settings.serving_url(),
        ),
    }


all_assets = [
    *ingestion.assets,
    *validation.assets,
    *features.assets,
    *training.assets,
    *serving.assets,
    *monitoring.assets,
    *streaming.assets,
]


def build_definitions(
    paths: settings.Paths | None = None,
    serving_port: int | None = None,
    resource_overrides: dict[str, object] | None = None,
) -> dg.Definitions:
    """The code location for ``paths``; tests replace single resources (e.g. a tighter
    retraining policy) through ``resource_overrides``."""
    tier = settings.profile()  # fail early on an unknown tier
    resources = build_resources(paths or settings.paths(), serving_port)
    return dg.Definitions(
        assets=all_assets,
        asset_checks=training.checks,
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        resources=resources | (resource_overrides or {}),
        executor=executor(tier),
    )


def executor(tier: str) -> dg.ExecutorDefinition:
    """On a laptop one process per run: a process per step re-imports Feast, GX and torch for
    every step (minutes per launched run on 2 cores instead of seconds). On `k8s` one pod per
    step, shaped by the step's compute class (its `dagster-k8s/config` tag); with
    ``MLOPS_EXECUTOR=docker`` one container per step, limited by the same class."""
    if tier == "k8s":
        if settings.executor() == "docker":
            return docker_step_executor(settings.docker_image(), settings.container_env())
        return k8s_executor()
    return dg.in_process_executor if tier == "local" else dg.multiprocess_executor


defs = build_definitions()
