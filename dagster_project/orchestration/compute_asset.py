"""Compute classes on the Dagster side: every asset is declared with :func:`compute_asset`.

``compute_asset`` is ``dagster.asset`` plus two things, both through Dagster's public API:

- the op tags of the group's class (``dagster_project/platform/profiles.yaml``): a
  ``dagster-k8s/config`` tag, so that with ``k8s_job_executor`` every step pod asks for that
  class's requests, limits, node selector and tolerations, and the class's name;
- a metered compute function (a wrapping decorator, :func:`metered`), so every materialization
  records wall time, CPU time, peak memory, GPU time (where a GPU is used) and the estimated cost
  at the class's price as ``compute/*`` metadata.

Asset code stays unaware of both; the class is read back from the op's tag at run time.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg

from dagster_project.platform import compute_classes, metering

K8S_CONFIG_TAG = "dagster-k8s/config"
COMPUTE_CLASS_TAG = "flight-mlops/compute-class"
METADATA_PREFIX = "compute/"


def class_tags(cls: compute_classes.ComputeClass) -> dict[str, str]:
    """The op tags that put a step on ``cls`` under ``k8s_job_executor``."""
    return {
        K8S_CONFIG_TAG: json.dumps(cls.k8s_config(), sort_keys=True),
        COMPUTE_CLASS_TAG: cls.name,
    }


def usage_metadata(usage: metering.Usage) -> dict[str, Any]:
    return {
        f"{METADATA_PREFIX}{k}": v if isinstance(v, str) else dg.MetadataValue.float(float(v))
        for k, v in usage.figures().items()
    }


def usage_from_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The figures back from a materialization's metadata values (what the CLI prints)."""
    return {
        k.removeprefix(METADATA_PREFIX): getattr(v, "value", v)
        for k, v in metadata.items()
        if k.startswith(METADATA_PREFIX)
    }


def _current_class() -> compute_classes.ComputeClass:
    """The running step's class, from its op tag (the default class when it has none)."""
    profiles = compute_classes.load_profiles()
    name = dg.AssetExecutionContext.get().op_def.tags.get(COMPUTE_CLASS_TAG)
    return profiles.classes.get(str(name), profiles.default_class)


def _with_usage(item: Any, meter: metering.Meter) -> Any:
    """Attach the usage so far to an asset's Output / MaterializeResult; other events pass."""
    if isinstance(item, dg.Output):
        return item.with_metadata({**item.metadata, **usage_metadata(meter.stop(_current_class()))})
    if isinstance(item, dg.MaterializeResult):
        return dg.MaterializeResult(
            asset_key=item.asset_key,
            metadata={**(item.metadata or {}), **usage_metadata(meter.stop(_current_class()))},
            check_results=item.check_results,
            data_version=item.data_version,
            tags=item.tags,
            value=item.value,
        )
    return item


def metered(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (an asset's compute function) with its usage attached to what it returns.

    The measurement ends when the asset hands over its result (before the IO manager stores a
    returned value). A plain returned value gets the usage through ``add_output_metadata``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            meter = metering.Meter().start()
            try:
                for item in fn(*args, **kwargs):
                    yield _with_usage(item, meter)
            finally:
                meter.close()

        return generator

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        meter = metering.Meter().start()
        try:
            result = fn(*args, **kwargs)
        finally:
            meter.close()
        if isinstance(result, dg.Output | dg.MaterializeResult):
            return _with_usage(result, meter)
        dg.AssetExecutionContext.get().add_output_metadata(
            usage_metadata(meter.stop(_current_class()))
        )
        return result

    return function


def compute_asset(
    *, group_name: str, op_tags: Mapping[str, Any] | None = None, **kwargs: Any
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``@dg.asset(group_name=..., ...)`` on the group's compute class: its op tags, and a metered
    compute function. Takes every other argument of ``dagster.asset`` unchanged."""
    cls = compute_classes.load_profiles().for_group(group_name)
    tags = {**(op_tags or {}), **class_tags(cls)}

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        return dg.asset(group_name=group_name, op_tags=tags, **kwargs)(metered(fn))

    return decorate


def k8s_executor(profiles: compute_classes.Profiles | None = None) -> dg.ExecutorDefinition:
    """``k8s_job_executor``: one pod per step. Its ``step_k8s_config`` is the default class, so
    a step outside any group (the promotion gate) is sized too; a step's own
    ``dagster-k8s/config`` tag is merged over it and wins."""
    from dagster_k8s import k8s_job_executor

    default = (profiles or compute_classes.load_profiles()).default_class
    return k8s_job_executor.configured({"step_k8s_config": default.k8s_config()})
