"""Serving hardware: the cheapest serving class the champion fits on, by the seed's rule."""

import dagster as dg

from dagster_project.assets.metadata import ML_OWNERS, code_version
from dagster_project.assets.training import flight_delay_model
from dagster_project.lib import compute, tracking
from dagster_project.resources import MlflowResource


class ServingHardwareConfig(dg.Config):
    batch_rows: int = 1024  # rows of one /predict/batch request to size for


@dg.asset(
    group_name="serving",
    deps=[flight_delay_model],
    kinds={"mlflow", "kubernetes"},
    owners=ML_OWNERS,
    code_version=code_version(compute),
)
def serving_hardware(
    context: dg.AssetExecutionContext, config: ServingHardwareConfig, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Serving class for `flight_delay@champion`: the small inference GPU if the model and a batch
    fit its memory, else the training GPU, else CPU; the choice is tagged on the version."""
    registry = mlflow.registry()
    champion = registry.by_alias(tracking.CHAMPION)
    if champion is None:
        raise dg.Failure("no champion to size: the promotion gate has not promoted a model")
    footprint = compute.model_footprint(champion.uri, config.batch_rows)
    try:
        choice = compute.recommend_serving(compute.load_profiles(), footprint)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"v{champion.version}: {choice.compute_class.name}: {choice.reason}")
    registry.tag(champion.version, {"serving_class": choice.compute_class.name})
    return dg.MaterializeResult(
        metadata={
            "model_version": champion.version,
            "serving_class": choice.compute_class.name,
            "reason": choice.reason,
            "model_mib": dg.MetadataValue.float(footprint.model_bytes / compute.MIB),
            "serialized_mib": dg.MetadataValue.float(footprint.serialized_bytes / compute.MIB),
            "batch_rows": footprint.batch_rows,
            "batch_mib": dg.MetadataValue.float(footprint.batch_bytes / compute.MIB),
            "classes_checked": dg.MetadataValue.json(choice.checked),
        }
    )


assets = [serving_hardware]
