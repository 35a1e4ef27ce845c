"""The Kubernetes Job that dagster-k8s launches for a step of each asset group carries its
compute class: requests, limits (GPU included), node selector and tolerations."""

from __future__ import annotations

from typing import Any

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from dagster_project.definitions import defs
from dagster_project.orchestration.compute_asset import k8s_executor
from dagster_project.platform import compute_classes
from tests.infra.manifests import INFRA, KUBERNETES_VERSION

PROFILES = compute_classes.load_profiles()
GROUPS = ("ingestion", "validation", "features", "streaming", "training", "serving", "monitoring")


def step_job(
    asset: dg.AssetsDefinition, user_config: UserDefinedDagsterK8sConfig | None = None
) -> dict[str, Any]:
    """The step Job as k8s_job_executor builds it (same config class and constructor)."""
    job_config = DagsterK8sJobConfig(
        job_image="flight-mlops:0.1.0",
        dagster_home="/opt/dagster/dagster_home",
        image_pull_policy="IfNotPresent",
        env_config_maps=["mlops-config"],
        env_secrets=["mlops-storage"],
    )
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{asset.op.name.replace('_', '-')}",
        user_defined_k8s_config=user_config or get_user_defined_k8s_config(asset.op.tags),
        component="step_worker",
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def assets_of(group: str) -> list[dg.AssetsDefinition]:
    return [
        a
        for a in defs.assets
        if isinstance(a, dg.AssetsDefinition) and group in a.group_names_by_key.values()
    ]


@pytest.mark.parametrize("group", GROUPS)
def test_step_jobs_of_each_group_run_on_its_compute_class(group):
    cls = PROFILES.for_group(group)
    assets = assets_of(group)
    assert assets, group
    for asset in assets:
        job = step_job(asset)
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["resources"] == {"requests": cls.requests, "limits": cls.limits}
        assert pod["nodeSelector"] == cls.node_selector
        assert pod.get("tolerations", []) == [dict(t) for t in cls.tolerations]
        assert container["image"] == "flight-mlops:0.1.0"


def test_gpu_only_where_the_class_has_one():
    gpu = {
        group: step_job(assets_of(group)[0])["spec"]["template"]["spec"]["containers"][0][
            "resources"
        ]["limits"].get("nvidia.com/gpu")
        for group in GROUPS
    }
    assert gpu == {
        "ingestion": None,
        "validation": None,
        "features": None,
        "streaming": None,
        "training": "1",
        "serving": "1",
        "monitoring": None,
    }
    training = step_job(assets_of("training")[0])["spec"]["template"]["spec"]
    assert training["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-A30"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in training[
        "tolerations"
    ]


def _layers() -> tuple[K8sContainerContext, K8sContainerContext]:
    """What the executor merges under a step's tags: the run launcher's runK8sConfig (our Helm
    values, as the chart writes it into the instance) and the executor's step_k8s_config."""
    helm = yaml.safe_load((INFRA / "helm" / "dagster-values.yaml").read_text())
    run = helm["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    launcher = UserDefinedDagsterK8sConfig.from_dict(
        {"container_config": run["containerConfig"], "pod_spec_config": run["podSpecConfig"]}
    )
    executor_config = k8s_executor().config_schema.resolve_config({}).value["config"]
    step_default = UserDefinedDagsterK8sConfig.from_dict(executor_config["step_k8s_config"])
    return K8sContainerContext(run_k8s_config=launcher), K8sContainerContext(
        run_k8s_config=step_default
    )


@pytest.mark.parametrize("group", GROUPS)
def test_merged_with_the_launcher_and_executor_defaults_the_class_still_wins(group):
    """Deep merge (dagster-k8s's default) of launcher defaults, executor default and the op
    tag must leave exactly the class: no CPU pool selector or run-pod limits leak into a GPU
    step."""
    launcher, step_default = _layers()
    asset = assets_of(group)[0]
    merged = (
        launcher.merge(step_default)
        .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(asset.op.tags)))
        .run_k8s_config
    )
    pod = step_job(asset, merged)["spec"]["template"]["spec"]
    cls = PROFILES.for_group(group)
    assert pod["containers"][0]["resources"] == {"requests": cls.requests, "limits": cls.limits}
    assert pod["nodeSelector"] == cls.node_selector
    assert pod.get("tolerations", []) == [dict(t) for t in cls.tolerations]


def test_a_step_without_a_class_tag_runs_on_the_default_class():
    launcher, step_default = _layers()
    gate = next(c for c in defs.asset_checks or [] if "promotion_gate" in c.node_def.name)
    assert "dagster-k8s/config" not in gate.node_def.tags
    merged = launcher.merge(step_default).run_k8s_config
    pod = step_job(assets_of("features")[0], merged)["spec"]["template"]["spec"]
    cls = PROFILES.default_class
    assert pod["containers"][0]["resources"] == {"requests": cls.requests, "limits": cls.limits}
    assert pod["nodeSelector"] == cls.node_selector
