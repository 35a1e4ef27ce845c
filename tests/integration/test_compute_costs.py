"""Cost and resource tracking on a real training run, and the serving-hardware recommendation."""

import dagster as dg

from dagster_project.cli.output import _cost_rows
from dagster_project.orchestration.compute_asset import usage_from_metadata
from dagster_project.platform import names
from dagster_project.training import tracking


def _registry(spine) -> tracking.Registry:
    tracking.configure(spine.paths.mlflow_tracking_uri, spine.paths.mlflow_artifacts)
    return tracking.Registry(spine.paths.mlflow_tracking_uri)


def test_training_run_records_usage_and_cost_per_step(spine, first_model, capsys):
    usage = {
        e.materialization.asset_key.to_user_string(): usage_from_metadata(
            e.materialization.metadata
        )
        for e in first_model.get_asset_materialization_events()
    }
    assert usage["training_set"]["compute_class"] == "data-processing"
    assert usage["flight_delay_model"]["compute_class"] == "training"
    assert usage["deployed_endpoint"]["compute_class"] == "serving"
    model = usage["flight_delay_model"]
    assert model["wall_seconds"] > 1
    assert model["cpu_seconds"] > 1
    assert model["peak_memory_mib"] > 100
    assert model["cost_usd"] > 0
    table = _cost_rows(first_model)
    assert [name.split(" ")[0] for name, _ in table[1:]] == [
        "training_set",
        "flight_delay_model",
        "deployed_endpoint",
        "lead_time_evaluation",
        "total",
    ]
    with capsys.disabled():  # the table the demo prints, in the test log
        print("\n" + "\n".join(f"  {k:<44} {v}" for k, v in table))


def test_mlflow_run_and_version_carry_the_training_cost(spine, first_model):
    registry = _registry(spine)
    champion = registry.by_alias(names.CHAMPION)
    run = registry.client.get_run(champion.run_id)
    for metric in ("wall_seconds", "cpu_seconds", "peak_memory_mib", "cost_usd"):
        assert run.data.metrics[f"compute_{metric}"] > 0, metric
    assert run.data.tags["compute_class"] == "training"
    assert float(champion.tags["compute_cost_usd"]) == run.data.metrics["compute_cost_usd"]


def test_serving_hardware_recommends_the_small_gpu_for_the_champion(spine, first_model):
    result = spine.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=spine.instance, asset_selection=[dg.AssetKey("serving_hardware")]
    )
    assert result.success
    meta = {
        k: getattr(v, "value", v)
        for k, v in result.asset_materializations_for_node("serving_hardware")[0].metadata.items()
    }
    assert meta["serving_class"] == "serving"  # a small XGBoost model and batch fit the A2
    assert 0 < meta["serialized_mib"] <= meta["model_mib"]
    assert meta["batch_rows"] == 1024
    assert meta["batch_mib"] > 0
    assert meta["classes_checked"]["serving"]["fits"] is True
    champion = _registry(spine).by_alias(names.CHAMPION)
    assert champion.tags["serving_class"] == "serving"
    assert meta["compute/compute_class"] == "serving"  # its own step is metered too
