"""The `docker` executor's step limits come from the same compute-class tags as the k8s
executor's pod resources (no Docker engine needed)."""

from __future__ import annotations

import json

import pytest

from dagster_project.orchestration import compute_asset
from dagster_project.orchestration.docker_executor import exit_reason, step_limits
from dagster_project.platform import compute_classes, settings

GIB = 1024**3
BIG_ENGINE = (64.0, 512 * GIB, True)


@pytest.fixture(scope="module")
def profiles() -> compute_classes.Profiles:
    return compute_classes.load_profiles()


@pytest.mark.parametrize("name", ["data-processing", "training", "serving"])
def test_container_limits_are_the_pod_limits(profiles, name):
    cls = profiles.classes[name]
    tags = compute_asset.class_tags(cls)
    pod = json.loads(tags[compute_asset.K8S_CONFIG_TAG])["container_config"]["resources"]
    limits = step_limits(tags, profiles, BIG_ENGINE)
    assert limits["nano_cpus"] == int(compute_classes.parse_quantity(pod["limits"]["cpu"]) * 1e9)
    assert limits["mem_limit"] == compute_classes.parse_quantity(pod["limits"]["memory"])
    assert limits["mem_reservation"] == compute_classes.parse_quantity(pod["requests"]["memory"])
    assert limits["cpu_shares"] == int(
        compute_classes.parse_quantity(pod["requests"]["cpu"]) * 1024
    )
    assert limits["labels"] == {"flight-mlops/compute-class": name}
    gpus = pod["limits"].get(compute_classes.GPU_RESOURCE)
    if gpus:
        assert limits["device_requests"] == [{"count": int(gpus), "capabilities": [["gpu"]]}]
    else:
        assert "device_requests" not in limits


def test_limits_are_capped_at_the_engine_and_gpus_need_a_runtime(profiles):
    tags = compute_asset.class_tags(profiles.classes["training"])  # 8 CPUs, 48Gi, 1 GPU
    limits = step_limits(tags, profiles, (2.0, 24 * GIB, False))
    assert limits["nano_cpus"] == 2_000_000_000
    assert limits["cpu_shares"] == 2 * 1024  # the request, capped at the limit
    assert limits["mem_limit"] == 24 * GIB
    assert limits["mem_reservation"] == 24 * GIB
    assert "device_requests" not in limits


def test_a_step_outside_any_group_gets_the_default_class(profiles):
    limits = step_limits({}, profiles, BIG_ENGINE)
    assert limits["labels"]["flight-mlops/compute-class"] == profiles.default


def test_every_asset_step_has_a_class_tag_the_docker_executor_reads(profiles):
    from dagster_project.definitions import all_assets

    for asset in all_assets:
        for spec_tags in [asset.op.tags]:
            assert spec_tags[compute_asset.COMPUTE_CLASS_TAG] in profiles.classes


def test_executor_choice(monkeypatch):
    from dagster_project import definitions

    monkeypatch.delenv("MLOPS_EXECUTOR", raising=False)
    assert settings.executor() == "k8s"
    assert definitions.executor("k8s").name == "k8s"
    monkeypatch.setenv("MLOPS_EXECUTOR", "docker")
    assert definitions.executor("k8s").name == "docker"
    assert definitions.executor("server").name == "multiprocess"
    monkeypatch.setenv("MLOPS_EXECUTOR", "swarm")
    with pytest.raises(ValueError, match="MLOPS_EXECUTOR='swarm'"):
        settings.executor()


def test_dagster_yaml_launches_runs_in_containers_on_k8s_docker(monkeypatch):
    """The tier's dagster.yaml: DockerRunLauncher with the tier's image, host network, the
    settings by name and the engine's socket for the run worker only."""
    from dagster_project.platform import server

    monkeypatch.setenv("MLOPS_PROFILE", "k8s")
    monkeypatch.setenv("MLOPS_NAMESPACE", "t_yaml")
    monkeypatch.delenv("MLOPS_EXECUTOR", raising=False)
    probe = settings.ServerSettings.from_env()
    assert "run_launcher" not in server.dagster_yaml(probe)
    monkeypatch.setenv("MLOPS_EXECUTOR", "docker")
    launcher = server.dagster_yaml(probe)["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    config = launcher["config"]
    assert config["image"] == settings.docker_image()
    assert config["network"] == "host"
    assert "MLOPS_EXECUTOR" in config["env_vars"]
    assert "MLOPS_HOME" not in config["env_vars"]
    assert config["container_kwargs"]["volumes"] == [
        f"{server.DOCKER_SOCKET}:{server.DOCKER_SOCKET}"
    ]
    # dagster-docker accepts it
    from dagster_docker import DockerRunLauncher

    DockerRunLauncher(**config)


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ({"ExitCode": 137, "OOMKilled": False}, "SIGKILL (`docker kill`"),
        ({"ExitCode": 137, "OOMKilled": True}, "OOM killer"),
        ({"ExitCode": 143}, "SIGTERM"),
        ({"ExitCode": 139}, "signal 11"),
        ({"ExitCode": 1, "Error": "mount failed"}, "exited with an error before reporting"),
    ],
)
def test_a_dead_step_container_says_what_stopped_it(state, words):
    reason = exit_reason("dagster-step-abc", state)
    assert reason.startswith(
        f"step container dagster-step-abc exited with code {state['ExitCode']}"
    )
    assert words in reason
    if "Error" in state:
        assert "(mount failed)" in reason
