"""Compute classes on the Dagster side, applied in one place (:func:`with_compute_classes`).

Each asset's op gets its group's class (``infra/compute/profiles.yaml``) as a
``dagster-k8s/config`` tag, so with ``k8s_job_executor`` every step pod asks for that class's
requests, limits, node selector and tolerations; and each asset's compute is metered, so every
materialization records wall time, CPU time, peak memory, GPU time (where a GPU is used) and the
estimated cost at the class's price as ``compute/*`` metadata. Asset code stays unaware of both.

Dagster 1.13 has no public call that adds op tags to, or wraps the compute of, a built asset;
this module rebuilds the op from two internals (``DecoratedOpFunction``, ``AssetExecutionType``)
of the pinned version. tests/test_compute_classes.py fails if they move.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.assets.definition.asset_spec import AssetExecutionType
from dagster._core.definitions.decorators.op_decorator import DecoratedOpFunction

from dagster_project.lib import compute

K8S_CONFIG_TAG = "dagster-k8s/config"
COMPUTE_CLASS_TAG = "flight-mlops/compute-class"
METADATA_PREFIX = "compute/"


def op_tags(cls: compute.ComputeClass) -> dict[str, str]:
    """The op tags that put a step on ``cls`` under ``k8s_job_executor``."""
    return {
        K8S_CONFIG_TAG: json.dumps(cls.k8s_config(), sort_keys=True),
        COMPUTE_CLASS_TAG: cls.name,
    }


def usage_metadata(usage: compute.Usage) -> dict[str, Any]:
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


def _with_usage(item: Any, meter: compute.Meter, cls: compute.ComputeClass) -> Any:
    """Attach the usage so far to an asset's Output / MaterializeResult; other events pass."""
    if isinstance(item, dg.Output):
        return item.with_metadata({**item.metadata, **usage_metadata(meter.stop(cls))})
    if isinstance(item, dg.MaterializeResult):
        return dg.MaterializeResult(
            asset_key=item.asset_key,
            metadata={**(item.metadata or {}), **usage_metadata(meter.stop(cls))},
            check_results=item.check_results,
            data_version=item.data_version,
            tags=item.tags,
            value=item.value,
        )
    return item


def metered(fn: Callable[..., Any], cls: compute.ComputeClass) -> Callable[..., Any]:
    """``fn`` (an asset's compute function) with its usage attached to what it returns.

    The measurement ends when the asset hands over its result (before the IO manager stores a
    returned value). A plain returned value gets the usage through ``add_output_metadata``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            meter = compute.Meter().start()
            try:
                for item in fn(*args, **kwargs):
                    yield _with_usage(item, meter, cls)
            finally:
                meter.close()

        return generator

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        meter = compute.Meter().start()
        try:
            result = fn(*args, **kwargs)
        finally:
            meter.close()
        if isinstance(result, dg.Output | dg.MaterializeResult):
            return _with_usage(result, meter, cls)
        dg.AssetExecutionContext.get().add_output_metadata(usage_metadata(meter.stop(cls)))
        return result

    return function


def _group(asset: dg.AssetsDefinition) -> str:
    groups = {spec.group_name for spec in asset.specs}
    if len(groups) != 1:
        raise ValueError(
            f"{asset.node_def.name}: one compute class per op needs one group, got {groups}"
        )
    return str(groups.pop())


def with_compute_class(
    asset: dg.AssetsDefinition, cls: compute.ComputeClass
) -> dg.AssetsDefinition:
    """``asset`` with its op tagged for ``cls`` and its compute metered against ``cls``."""
    op = asset.op
    fn = op.compute_fn
    if not isinstance(fn, DecoratedOpFunction):
        raise TypeError(f"{op.name}: only decorated assets can be metered")
    tagged = dg.OpDefinition(
        compute_fn=DecoratedOpFunction(metered(fn.decorated_fn, cls)),
        name=op.name,
        ins={d.name: dg.In.from_definition(d) for d in op.input_defs},
        outs={d.name: dg.Out.from_definition(d) for d in op.output_defs},
        description=op.description,
        config_schema=op.config_schema,
        required_resource_keys=op.required_resource_keys,
        tags={**op.tags, **op_tags(cls)},
        retry_policy=op.retry_policy,
        code_version=op.version,
        pool=op.pool,
    )
    attributes = asset.get_attributes_dict() | {"node_def": tagged}
    if attributes["execution_type"] == AssetExecutionType.MATERIALIZATION:
        del attributes["execution_type"]  # the default; passing it only warns that it is beta
    return dg.AssetsDefinition(**attributes)


def k8s_executor(profiles: compute.Profiles | None = None) -> dg.ExecutorDefinition:
    """``k8s_job_executor``: one pod per step. Its ``step_k8s_config`` is the default class, so
    a step outside any group (the promotion gate) is sized too; a step's own
    ``dagster-k8s/config`` tag is merged over it and wins."""
    from dagster_k8s import k8s_job_executor

    default = (profiles or compute.load_profiles()).default_class
    return k8s_job_executor.configured({"step_k8s_config": default.k8s_config()})


def with_compute_classes(
    assets: Iterable[dg.AssetsDefinition], profiles: compute.Profiles | None = None
) -> list[dg.AssetsDefinition]:
    """Every asset on its group's compute class (see the module docstring)."""
    profiles = profiles or compute.load_profiles()
    return [with_compute_class(a, profiles.for_group(_group(a))) for a in assets]
