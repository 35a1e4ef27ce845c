"""The ``docker`` executor of the `k8s` tier (``MLOPS_EXECUTOR=docker``): one container per step
on a Docker engine, as ``k8s_job_executor`` runs one pod per step.

It is dagster-docker's ``docker_executor`` with two changes, both in the step handler:

- each step container gets its compute class's limits (``flight-mlops/compute-class`` op tag,
  the same tag the k8s executor's ``dagster-k8s/config`` comes from): CPU and memory limits
  become container limits (:meth:`ComputeClass.docker_limits`, capped at the engine's CPUs and
  memory), a GPU limit a device request where the engine has an NVIDIA runtime;
- step containers mount nothing: the run launcher's volumes (the engine's socket, which the run
  worker needs to start step containers) are not passed on, so steps share state only through
  the stores (S3, PostgreSQL, Redis), as pods do.

Every step container is labelled with its run id and step key (``dagster/run-id``,
``dagster/step-key``) so that tests and operators find it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.step_delegating import StepDelegatingExecutor
from dagster._core.executor.step_delegating.step_handler.base import (
    CheckStepHealthResult,
    StepHandlerContext,
)
from dagster_docker.container_context import DockerContainerContext
from dagster_docker.docker_executor import DockerStepHandler, docker_executor

from dagster_project.orchestration.compute_asset import COMPUTE_CLASS_TAG
from dagster_project.platform import compute_classes

RUN_ID_LABEL = "dagster/run-id"
STEP_KEY_LABEL = "dagster/step-key"
STEP_CONTAINER_DROPPED = ("volumes", "mounts")


@functools.lru_cache(maxsize=1)
def _engine(base_url: str | None = None) -> tuple[float, int, bool]:
    """CPUs, memory and whether the engine has an NVIDIA runtime (``docker info``)."""
    import docker

    client = docker.from_env() if base_url is None else docker.DockerClient(base_url=base_url)
    info = client.info()
    return float(info["NCPU"]), int(info["MemTotal"]), "nvidia" in (info.get("Runtimes") or {})


def exit_reason(container: str, state: Mapping[str, Any]) -> str:
    """Why a step container stopped, from the engine's ``State`` of it."""
    code = int(state.get("ExitCode") or 0)
    if state.get("OOMKilled"):
        why = "killed by the kernel's OOM killer: the step needs more memory than its class gives"
    elif code == 137:
        why = "killed by SIGKILL (`docker kill`, or the engine stopping it), not by its own code"
    elif code == 143:
        why = "stopped by SIGTERM"
    elif code > 128:
        why = f"killed by signal {code - 128}"
    else:
        why = "the step process exited with an error before reporting its result"
    return f"step container {container} exited with code {code}: {why}" + (
        f" ({state['Error']})" if state.get("Error") else ""
    )


def step_limits(
    step_tags: Mapping[str, str],
    profiles: compute_classes.Profiles,
    engine: tuple[float, int, bool],
) -> dict[str, Any]:
    """docker-py ``containers.create`` arguments of a step with ``step_tags``: its class's
    limits (the default class for a step outside any group), capped to ``engine``."""
    name = step_tags.get(COMPUTE_CLASS_TAG)
    cls = profiles.classes.get(str(name), profiles.default_class)
    cpus, memory, gpus = engine
    return cls.docker_limits(host_cpus=cpus, host_memory=memory, gpus=gpus)


class ClassSizedDockerStepHandler(DockerStepHandler):
    """``DockerStepHandler`` whose containers carry their step's class limits and no volumes."""

    def __init__(
        self,
        image: str | None,
        container_context: DockerContainerContext,
        profiles: compute_classes.Profiles,
    ) -> None:
        super().__init__(image, container_context)
        self._profiles = profiles

    @property
    def name(self) -> str:
        return "ClassSizedDockerStepHandler"

    def _create_step_container(
        self,
        client: Any,
        container_context: DockerContainerContext,
        step_image: str,
        step_handler_context: StepHandlerContext,
    ) -> Any:
        step_key = self._get_step_key(step_handler_context)
        limits = step_limits(
            step_handler_context.step_tags.get(step_key, {}), self._profiles, _engine()
        )
        kwargs = {
            k: v
            for k, v in container_context.container_kwargs.items()
            if k not in STEP_CONTAINER_DROPPED
        }
        labels = {
            **(kwargs.get("labels") or {}),
            **limits.pop("labels"),
            RUN_ID_LABEL: step_handler_context.execute_step_args.run_id,
            STEP_KEY_LABEL: step_key,
        }
        sized = DockerContainerContext(
            registry=container_context.registry,
            env_vars=list(container_context.env_vars),
            networks=list(container_context.networks),
            container_kwargs={**kwargs, **limits, "labels": labels},
        )
        return super()._create_step_container(client, sized, step_image, step_handler_context)

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        """dagster-docker's check ("Container status is exited. Return code is 137."), with the
        container, its exit code's meaning and the engine's OOM verdict in the reason, so a run
        killed under a step says by what."""
        result = super().check_step_health(step_handler_context)
        if result.is_healthy:
            return result
        context = self._get_docker_container_context(step_handler_context)
        name = self._get_container_name(step_handler_context)
        try:
            state = self._get_client(context).containers.get(name).attrs["State"]
        except Exception:  # gone, or the engine does not answer: keep dagster-docker's reason
            return result
        return CheckStepHealthResult.unhealthy(exit_reason(name, state))


@dg.executor(
    name="docker",
    config_schema=docker_executor.config_schema.as_field(),
    requirements=multiple_process_executor_requirements(),
)
def class_sized_docker_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """``docker_executor`` (same configuration) with :class:`ClassSizedDockerStepHandler`."""
    config: dict[str, Any] = dict(init_context.executor_config)
    networks = list(config.get("networks") or [])
    if config.get("network") and not networks:
        networks = [config["network"]]
    context = DockerContainerContext(
        registry=config.get("registry"),
        env_vars=list(config.get("env_vars") or []),
        networks=networks,
        container_kwargs=config.get("container_kwargs"),
    )
    return StepDelegatingExecutor(
        ClassSizedDockerStepHandler(config.get("image"), context, compute_classes.load_profiles()),
        retries=RetryMode.from_config(config["retries"]) or RetryMode.DISABLED,
        max_concurrent=config.get("max_concurrent"),
        tag_concurrency_limits=config.get("tag_concurrency_limits"),
    )


def docker_step_executor(image: str, env_vars: list[str]) -> dg.ExecutorDefinition:
    """The executor of ``MLOPS_EXECUTOR=docker``: step containers from ``image`` on the host's
    network (the stores on 127.0.0.1, as the run worker sees them), with the settings named by
    ``env_vars`` taken from the run worker's environment."""
    return class_sized_docker_executor.configured(
        {"image": image, "networks": ["host"], "env_vars": list(env_vars)}
    )
