"""Serving: the champion, live behind the HTTP endpoint."""

import dagster as dg

from dagster_project.assets.metadata import ML_OWNERS, code_version
from dagster_project.assets.training import flight_delay_model
from dagster_project.lib import deploy, tracking
from dagster_project.resources import Deployer, MlflowResource
from dagster_project.serving.schemas import EXAMPLE_FLIGHT


@dg.asset(
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
    champion = mlflow.registry().by_alias(tracking.CHAMPION)
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


assets = [deployed_endpoint]
