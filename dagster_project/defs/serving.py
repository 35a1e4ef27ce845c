"""Serving: the champion live behind the HTTP endpoint, the flights it scores, and the hardware
it needs."""

from datetime import timedelta

import dagster as dg

from dagster_project.defs.training import candidate_review, flight_delay_model
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.metadata import ML_OWNERS, code_version
from dagster_project.orchestration.partitions import daily_2013, partition_days
from dagster_project.orchestration.resources import Deployer, MlflowResource
from dagster_project.platform import compute_classes, names
from dagster_project.serving import deploy, footprint, scoring
from dagster_project.serving.schemas import EXAMPLE_FLIGHT


@compute_asset(
    group_name="serving",
    deps=[flight_delay_model],
    kinds={"fastapi", "mlflow"},
    owners=ML_OWNERS,
    code_version=code_version(deploy, "dagster_project.serving.app"),
)
def deployed_endpoint(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, deployer: Deployer
) -> dg.MaterializeResult:
    """The endpoint serving `flight_delay@champion`, confirmed by a smoke request."""
    champion = mlflow.registry().by_alias(names.CHAMPION)
    if champion is None:
        raise dg.Failure("no champion to deploy: the promotion gate has not promoted a model")
    done = deployer.deploy(champion.version, EXAMPLE_FLIGHT)
    context.log.info(
        f"{'started' if done.started else 'reloaded'} {done.url} with v{done.version} "
        f"in {done.seconds:.1f}s"
    )
    return dg.MaterializeResult(
        metadata={
            "url": dg.MetadataValue.url(done.url),
            "model_version": done.version,
            "model_kind": champion.tags.get("model_kind", "unknown"),
            "process_started": done.started,
            "deploy_seconds": dg.MetadataValue.float(done.seconds),
            "smoke_probability": dg.MetadataValue.float(done.smoke["probability"]),
        }
    )


@compute_asset(
    group_name="serving",
    partitions_def=daily_2013,
    # after the day's review: a candidate promoted on day D scores D+1's flights
    deps=[deployed_endpoint, "online_features", candidate_review],
    kinds={"fastapi"},
    owners=ML_OWNERS,
    code_version=code_version(scoring),
)
def scored_flights(context: dg.AssetExecutionContext, deployer: Deployer) -> dg.MaterializeResult:
    """Scored on day D: the next day's scheduled departures, over HTTP by the live endpoint."""
    endpoint = deployer.endpoint()
    targets = [d + timedelta(days=1) for d in partition_days(context)]
    flights = [f for day in targets for f in scoring.scheduled_flights(day)]
    predictions = scoring.score(endpoint.url, flights, endpoint.token)
    versions = sorted({p["model_version"] for p in predictions})
    return dg.MaterializeResult(
        metadata={
            "flights_of": ", ".join(str(d) for d in targets),
            "flights_scored": dg.MetadataValue.int(len(predictions)),
            "predicted_delayed": dg.MetadataValue.int(sum(p["delayed"] for p in predictions)),
            "fallbacks": dg.MetadataValue.int(sum(p["fallback"] for p in predictions)),
            "model_versions": ", ".join(versions),
            "endpoint": dg.MetadataValue.url(endpoint.url),
        }
    )


class ServingHardwareConfig(dg.Config):
    batch_rows: int = 1024  # rows of one /predict/batch request to size for


@compute_asset(
    group_name="serving",
    deps=[flight_delay_model],
    kinds={"mlflow", "kubernetes"},
    owners=ML_OWNERS,
    code_version=code_version(footprint, compute_classes),
)
def serving_hardware(
    context: dg.AssetExecutionContext, config: ServingHardwareConfig, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Serving class for `flight_delay@champion`: the small inference GPU if the model and a batch
    fit its memory, else the training GPU, else CPU; the choice is tagged on the version."""
    registry = mlflow.registry()
    champion = registry.by_alias(names.CHAMPION)
    if champion is None:
        raise dg.Failure("no champion to size: the promotion gate has not promoted a model")
    need = footprint.model_footprint(champion.uri, config.batch_rows)
    try:
        choice = footprint.recommend_serving(compute_classes.load_profiles(), need)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"v{champion.version}: {choice.compute_class.name}: {choice.reason}")
    registry.tag(champion.version, {"serving_class": choice.compute_class.name})
    return dg.MaterializeResult(
        metadata={
            "model_version": champion.version,
            "serving_class": choice.compute_class.name,
            "reason": choice.reason,
            "model_mib": dg.MetadataValue.float(need.model_bytes / compute_classes.MIB),
            "serialized_mib": dg.MetadataValue.float(need.serialized_bytes / compute_classes.MIB),
            "batch_rows": need.batch_rows,
            "batch_mib": dg.MetadataValue.float(need.batch_bytes / compute_classes.MIB),
            "classes_checked": dg.MetadataValue.json(choice.checked),
        }
    )


assets = [deployed_endpoint, scored_flights, serving_hardware]
