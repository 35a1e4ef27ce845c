"""Our values for the official Dagster and Airflow charts use only documented keys (vendored key
lists in tests/infra/data, with their sources) and agree with the image and manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.manifests import INFRA

DATA = Path(__file__).parent / "data"
CHARTS = {
    "dagster": (INFRA / "helm" / "dagster-values.yaml", DATA / "dagster_chart_keys.yaml"),
    "airflow": (INFRA / "helm" / "airflow-values.yaml", DATA / "airflow_chart_keys.yaml"),
}


def paths(value: Any, prefix: str = "") -> list[str]:
    """Leaf key paths: `a.b`, list items as `[]`."""
    if isinstance(value, dict):
        if not value:
            return [prefix]
        return [p for k, v in value.items() for p in paths(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(value, list):
        return [p for item in value for p in paths(item, f"{prefix}[]")] or [f"{prefix}[]"]
    return [prefix]


def documented(path: str, keys: list[str]) -> bool:
    for key in keys:
        if key.endswith(".*"):
            stem = key[:-2]
            if path == stem or path.startswith(f"{stem}.") or path.startswith(f"{stem}["):
                return True
        elif key.endswith("[].*"):
            if path.startswith(key[:-1]) or path == key[:-2]:
                return True
        elif path == key:
            return True
    return False


def test_path_matching():
    keys = ["a.b", "c.*", "d[].*", "e[]"]
    assert documented("a.b", keys)
    assert documented("c.x.y", keys)
    assert documented("d[].name", keys)
    assert documented("e[]", keys)
    assert not documented("a.bb", keys)
    assert not documented("a", keys)
    assert not documented("cc.x", keys)
    assert paths({"a": {"b": 1, "c": [{"d": 1}, 2]}}) == ["a.b", "a.c[].d", "a.c[]"]


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_values_use_only_documented_keys(chart):
    values_file, keys_file = CHARTS[chart]
    keys = yaml.safe_load(keys_file.read_text())["keys"]
    undocumented = [
        p for p in paths(yaml.safe_load(values_file.read_text())) if not documented(p, keys)
    ]
    assert not undocumented, (
        f"{values_file.name}: keys the {chart} chart does not document: {undocumented}"
    )


def test_dagster_values_run_our_image_with_the_k8s_launcher_and_env_from_secrets():
    values = yaml.safe_load(CHARTS["dagster"][0].read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["repository"] == "flight-mlops"
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "dagster_project.definitions"]
    assert deployment["env"]["MLOPS_PROFILE"] == "k8s"
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    secrets = yaml.safe_load_all((INFRA / "k8s" / "base" / "secrets.yaml").read_text())
    declared = {s["metadata"]["name"] for s in secrets}
    for refs in (deployment["envSecrets"], launcher["config"]["k8sRunLauncher"]["envSecrets"]):
        assert {r["name"] for r in refs} <= declared
        # steps read Feast's SQL registry and the prediction log in PostgreSQL
        assert "mlops-postgres" in {r["name"] for r in refs}
    assert values["postgresql"]["enabled"] is True
    assert "postgresqlPassword" not in values["postgresql"]  # set at install, never in git


def test_airflow_values_bake_the_dags_and_point_at_the_dagster_webserver():
    values = yaml.safe_load(CHARTS["airflow"][0].read_text())
    assert values["images"]["airflow"]["repository"] == "flight-mlops"
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["dags"]["persistence"]["enabled"] is False
    assert values["config"]["core"]["dags_folder"] == "/app/airflow_dags"
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert "COPY --chown=root:root airflow_dags ./airflow_dags" in dockerfile
    conn = next(e for e in values["env"] if e["name"] == "AIRFLOW_CONN_DAGSTER_DEFAULT")
    # the Dagster chart names its webserver Service `<release>-webserver` (release `dagster`)
    assert yaml.safe_load(conn["value"]) == {
        "conn_type": "http",
        "host": "dagster-webserver",
        "port": 80,
    }
    assert values["airflowVersion"] == "3.3.2"
