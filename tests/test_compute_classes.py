"""Compute classes on the Dagster side: op tags per group, usage metadata, the k8s executor."""

import json

import dagster as dg
import pytest
from dagster_k8s import k8s_job_executor

from dagster_project.definitions import build_definitions, defs
from dagster_project.orchestration.compute_asset import (
    COMPUTE_CLASS_TAG,
    K8S_CONFIG_TAG,
    compute_asset,
    usage_from_metadata,
)
from dagster_project.platform import compute_classes
from dagster_project.platform.compute_classes import MIB

PROFILES = compute_classes.load_profiles()


def test_every_asset_runs_on_its_groups_class():
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    assert len(assets) >= 24
    for asset in assets:
        group = next(iter(asset.group_names_by_key.values()))
        cls = PROFILES.for_group(group)
        tags = asset.op.tags
        assert tags[COMPUTE_CLASS_TAG] == cls.name, asset.op.name
        assert json.loads(tags[K8S_CONFIG_TAG]) == cls.k8s_config(), asset.op.name
    classes = {a.op.name: a.op.tags[COMPUTE_CLASS_TAG] for a in assets}
    assert classes["flight_delay_model"] == "training"
    assert classes["deployed_endpoint"] == classes["serving_hardware"] == "serving"
    assert classes["raw_flights"] == classes["training_set"] == "data-processing"


def test_the_k8s_tier_runs_each_step_in_its_own_pod(monkeypatch, tmp_path):
    from dagster_project.platform.settings import Paths

    monkeypatch.setenv("MLOPS_PROFILE", "k8s")
    k8s = build_definitions(Paths(tmp_path))
    executor = k8s.resolve_job_def("training_job").executor_def
    assert executor.name == k8s_job_executor.name
    assert executor.executor_creation_fn is k8s_job_executor.executor_creation_fn
    config = executor.config_schema.resolve_config({}).value["config"]
    # steps without a group's tag (the promotion gate) get the default class
    assert (
        config["step_k8s_config"]["container_config"]
        == PROFILES.default_class.k8s_config()["container_config"]
    )
    assert defs.resolve_job_def("training_job").executor_def is dg.in_process_executor


@compute_asset(group_name="training")
def returns_a_value() -> int:
    block = bytearray(64 * MIB)
    return len(block)


@compute_asset(group_name="features", check_specs=[dg.AssetCheckSpec("positive", asset="yields")])
def yields(returns_a_value: int):
    yield dg.Output(returns_a_value, metadata={"kept": 1})
    yield dg.AssetCheckResult(passed=returns_a_value > 0)


@compute_asset(group_name="serving", deps=[yields])
def returns_a_result() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"kept": 2})


def test_every_materialization_records_usage_and_cost():
    result = dg.materialize([returns_a_value, yields, returns_a_result])
    assert result.success
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]
    seen = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        seen[m.asset_key.to_user_string()] = (usage_from_metadata(m.metadata), m.metadata)
    assert set(seen) == {"returns_a_value", "yields", "returns_a_result"}
    for name, cls in [
        ("returns_a_value", "training"),
        ("yields", "data-processing"),
        ("returns_a_result", "serving"),
    ]:
        usage, metadata = seen[name]
        assert usage["compute_class"] == cls
        assert usage["price_per_hour_usd"] == PROFILES.classes[cls].price_per_hour
        assert usage["wall_seconds"] >= 0
        assert usage["cpu_seconds"] >= 0
        assert usage["cost_usd"] == pytest.approx(
            usage["price_per_hour_usd"] * usage["wall_seconds"] / 3600, abs=1e-6
        )
        if name != "returns_a_value":
            assert "kept" in metadata  # the asset's own metadata survives
    assert seen["returns_a_value"][0]["peak_memory_mib"] >= 64
