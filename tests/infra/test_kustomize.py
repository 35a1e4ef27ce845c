"""Every kustomize overlay renders, validates against the Kubernetes OpenAPI schema, and wires
the serving endpoint, stream consumer, MLflow and Redis to their config and Secrets."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from dagster_project.platform import compute_classes, settings
from tests.infra.manifests import INFRA, KUBERNETES_VERSION, OVERLAYS, render

WORKLOADS = {"Deployment", "StatefulSet", "Job"}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(INFRA / "k8s" / "overlays" / request.param)


def by_kind(docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        if d["kind"] in WORKLOADS:
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def test_every_manifest_is_valid_for_the_kubernetes_version(overlay):
    name, docs = overlay
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Deployment", "serving"),
        ("Service", "serving"),
        ("HorizontalPodAutoscaler", "serving"),
        ("PodDisruptionBudget", "serving"),
        ("Deployment", "stream-consumer"),
        ("Deployment", "mlflow"),
        ("Service", "mlflow"),
        ("StatefulSet", "redis"),
        ("Service", "redis"),
        ("ConfigMap", "mlops-config"),
        ("Job", "mlops-init"),
    } <= kinds, name


def test_a_broken_manifest_is_caught_by_the_validator(overlay):
    _, docs = overlay
    deployment = dict(by_kind(docs, "Deployment")["serving"])
    deployment["spec"] = {**deployment["spec"], "replica": 2}  # typo: unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_each_overlay_has_its_own_namespace(overlay):
    name, docs = overlay
    namespace = {"staging": "flight-mlops-staging", "prod": "flight-mlops"}[name]
    assert by_kind(docs, "Namespace").keys() == {namespace}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]


def test_serving_has_probes_resources_autoscaling_and_a_disruption_budget(overlay):
    _, docs = overlay
    deployment = by_kind(docs, "Deployment")["serving"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["command"][:3] == ["python", "-m", "dagster_project.serving"]
    port = container["ports"][0]["containerPort"]
    assert f"{port}" in container["command"]
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["serving"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "serving",
    }
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    labels = pod["metadata"]["labels"]
    pdb = by_kind(docs, "PodDisruptionBudget")["serving"]
    service = by_kind(docs, "Service")["serving"]
    for selector in (pdb["spec"]["selector"]["matchLabels"], service["spec"]["selector"]):
        assert selector.items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_every_container_is_sized_and_runs_as_non_root(overlay):
    _, docs = overlay
    for name, spec in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), name
            assert {"cpu", "memory"} <= resources["limits"].keys(), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            volumes = {v["name"] for v in spec.get("volumes", [])}
            volumes |= {
                t["metadata"]["name"]
                for d in docs
                if d["metadata"]["name"] == name
                for t in d["spec"].get("volumeClaimTemplates", [])
            }
            mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
            assert mounts.keys() <= volumes, f"{name}: mounts without a volume"
            if container["securityContext"].get("readOnlyRootFilesystem"):
                writable = set(mounts.values())
                assert writable & {"/tmp", "/data"}, f"{name}: read-only root, nowhere to write"
            image = container["image"]
            assert ":" in image, f"{name}: image {image} has no tag"
            assert not image.endswith(":latest"), name


def test_secrets_are_placeholders_and_cover_every_reference(overlay):
    _, docs = overlay
    secrets = by_kind(docs, "Secret")
    config_maps = by_kind(docs, "ConfigMap")
    declared = {}
    for name, secret in secrets.items():
        assert "data" not in secret, f"{name} carries values"
        assert "stringData" not in secret, f"{name} carries values"
        declared[name] = set(secret["metadata"]["annotations"]["flight-mlops/keys"].split(","))
    referenced = set()
    for workload, spec in pod_specs(docs):
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    referenced.add(source["secretRef"]["name"])
                    assert source["secretRef"]["name"] in secrets, workload
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, workload
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                    assert ref["key"] in declared.get(ref["name"], set()), (workload, ref)
    assert referenced == set(secrets)  # no Secret is declared for nothing


def test_workloads_use_our_image_with_entry_points_that_exist(overlay):
    _, docs = overlay
    modules = set()
    for name, spec in pod_specs(docs):
        for container in spec["containers"]:
            if container["image"].split(":")[0] != "flight-mlops":
                continue
            command = container["command"]
            if command[:2] == ["python", "-m"]:
                modules.add(command[2])
            else:
                assert command[0] == "mlflow", name
    assert "dagster_project.serving" in modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_prod_serves_on_the_serving_compute_class():
    docs = render(INFRA / "k8s" / "overlays" / "prod")
    cls = compute_classes.load_profiles().for_group("serving")
    spec = by_kind(docs, "Deployment")["serving"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["resources"] == {"requests": cls.requests, "limits": cls.limits}
    assert spec["nodeSelector"] == cls.node_selector
    assert spec["tolerations"] == [dict(t) for t in cls.tolerations]
    staging = render(INFRA / "k8s" / "overlays" / "staging")
    staging_spec = by_kind(staging, "Deployment")["serving"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in staging_spec["containers"][0]["resources"]["limits"]


def test_shared_state_lives_in_the_stores_and_the_config_map_agrees_with_the_settings(
    overlay, monkeypatch
):
    """Every step and serving pod has a disk of its own, so the ConfigMap puts every kind of
    shared state in S3 or PostgreSQL; the URLs it spells out are exactly the ones the settings
    derive from its own bucket, namespace and PostgreSQL values."""
    _, docs = overlay
    data = by_kind(docs, "ConfigMap")["mlops-config"]["data"]
    assert data["MLOPS_PROFILE"] == "k8s"
    for key in (*settings.SHARED_STATE_ENV, "MLOPS_SERVING_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in data.items():
        if key not in settings.SHARED_STATE_ENV:
            monkeypatch.setenv(key, value)
    paths = settings.paths()
    derived = {
        "MLOPS_LANDING_URL": paths.landing_url,
        "MLOPS_LAKE_URL": paths.lake_url,
        "MLOPS_GX_DOCS_URL": paths.gx_docs_url,
        "MLOPS_MONITORING_URL": paths.monitoring_url,
        "MLOPS_PREDICTION_LOG_URL": paths.prediction_log_url,
    }
    assert derived.keys() == set(settings.SHARED_STATE_ENV)
    assert {k: data[k] for k in derived} == derived
    for key in ("MLOPS_LANDING_URL", "MLOPS_LAKE_URL", "MLOPS_GX_DOCS_URL", "MLOPS_MONITORING_URL"):
        assert data[key].startswith(f"s3://{data['MLOPS_S3_BUCKET']}/"), key
    assert data["MLOPS_PREDICTION_LOG_URL"].startswith("postgresql://")
    assert (
        ":" not in data["MLOPS_PREDICTION_LOG_URL"].split("//", 1)[1].split("@")[0]
    )  # no password
    # the deployer waits on the serving Service, whose name and port the URL names
    service = by_kind(docs, "Service")["serving"]
    assert data["MLOPS_SERVING_URL"] == f"http://{service['metadata']['name']}"
    assert service["spec"]["ports"][0]["port"] == 80
    assert settings.serving_url() == data["MLOPS_SERVING_URL"]


def test_serving_keeps_no_state_on_its_own_disk(overlay):
    """The prediction log goes to PostgreSQL (every replica appends there, monitoring reads it);
    what the pod may write to disk is bounded scratch."""
    _, docs = overlay
    spec = by_kind(docs, "Deployment")["serving"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"] for e in container.get("env", [])}
    assert "MLOPS_PG_PASSWORD" in env  # the prediction log's database
    assert any(
        s.get("configMapRef", {}).get("name") == "mlops-config" for s in container["envFrom"]
    )
    for volume in spec["volumes"]:
        assert "persistentVolumeClaim" not in volume, volume
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), f"{volume['name']}: unbounded scratch"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/var/lib/mlops"] == "scratch"
    assert not any("prediction" in name for name in mounts.values())


def test_an_init_job_creates_the_databases_and_bucket_the_stores_need(overlay):
    """The prediction log's database (`<ns>_serving`), Feast's and MLflow's, and the bucket
    exist before anything writes to them: `python -m dagster_project init`, idempotent."""
    _, docs = overlay
    job = by_kind(docs, "Job")["mlops-init"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "dagster_project", "init"]
    env = {e["name"] for e in container["env"]}
    assert {"MLOPS_PG_PASSWORD", "MLOPS_REDIS_PASSWORD"} <= env
    refs = {s.get("configMapRef", s.get("secretRef", {})).get("name") for s in container["envFrom"]}
    assert {"mlops-config", "mlops-storage"} <= refs
    assert "serving" in settings.SERVER_STORES
