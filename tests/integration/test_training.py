"""Training -> MLflow registry -> promotion gate -> deployed endpoint, on three weeks of data.

One scenario on one state folder (the session's `spine`): the first XGBoost model becomes
champion and is served by a real uvicorn process; a torch challenger is promoted and hot-reloaded
while requests keep flowing; a challenger held to an impossible margin is rejected.
"""

import threading
import time
from dataclasses import replace

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from dagster_project.features.engineering import LABEL
from dagster_project.monitoring import retraining
from dagster_project.platform import names, storage
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import models, pipeline, promotion, tracking


def _registry(spine) -> tracking.Registry:
    tracking.configure(spine.paths.mlflow_tracking_uri, spine.paths.mlflow_artifacts)
    return tracking.Registry(spine.paths.mlflow_tracking_uri)


def _url(spine) -> str:
    return f"http://127.0.0.1:{spine.port}"


def test_first_model_is_registered_with_lineage_and_becomes_champion(spine, first_model):
    registry = _registry(spine)
    champion = registry.by_alias(names.CHAMPION)
    challenger = registry.by_alias(names.CHALLENGER)
    assert champion is not None
    assert champion.version == challenger.version
    for tag in tracking.LINEAGE_TAGS:
        assert champion.tags.get(tag), f"model version lacks lineage tag {tag}"
    assert champion.tags[tracking.TAG_DAGSTER_RUN] == first_model.run_id
    assert champion.tags[tracking.TAG_PARTITIONS] == "2013-01-01..2013-01-21"
    assert champion.tags[tracking.TAG_FEATURE_SERVICE] == names.FEATURE_SERVICE == "flight_delay_v2"
    assert champion.tags[tracking.TAG_PREDICTION_TIME] == "lead_60"
    training_set = storage.read_parquet(f"{spine.paths.lake_url}/training_set.parquet")
    assert champion.tags[tracking.TAG_DATA_HASH] == tracking.frame_hash(training_set)
    assert champion.tags["promotion_decision"] == "promoted"
    assert champion.tags["model_kind"] == "xgboost"


def test_training_run_logs_metrics_plots_model_and_nested_trials(spine, first_model):
    registry = _registry(spine)
    champion = registry.by_alias(names.CHAMPION)
    run = registry.client.get_run(champion.run_id)
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error", "f1"):
        assert f"holdout_{metric}" in run.data.metrics
        assert f"val_{metric}" in run.data.metrics
    for tag in tracking.LINEAGE_TAGS:
        assert run.data.tags.get(tag)
    assert run.data.tags["promotion_decision"] == "promoted"
    artifacts = {a.path for a in registry.client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/holdout.json", "evaluation/validation.json"} <= artifacts
    plots = [a.path for a in registry.client.list_artifacts(run.info.run_id, "plots")]
    assert sorted(plots) == ["plots/auc_by_lead_time.png", "plots/holdout_evaluation.png"]
    holdout = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/evaluation/holdout.json")
    assert set(holdout["confusion_matrix"]) == {"tn", "fp", "fn", "tp"}
    assert holdout["calibration_curve"]
    model = registry.load(champion.version)
    assert model.metadata.signature is not None
    assert model.metadata.get_input_schema().input_names()[:3] == ["carrier", "origin", "route"]
    assert model.metadata.saved_input_example_info is not None
    trials = registry.client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(trials) == 2
    assert all("val_roc_auc" in t.data.metrics for t in trials)


def test_the_default_threshold_flags_as_many_flights_as_are_delayed(spine, first_model):
    """The base-rate policy (the default): on the validation window the predicted delayed
    share is within 2 points of the share delayed; the version and its run name the rule."""
    registry = _registry(spine)
    champion = registry.by_alias(names.CHAMPION)
    run = registry.client.get_run(champion.run_id)
    base_rate = run.data.metrics["val_positive_rate"]
    flagged = run.data.metrics["val_predicted_positive_rate"]
    assert abs(flagged - base_rate) <= 0.02, (flagged, base_rate)
    assert champion.threshold_policy == "base_rate"
    assert run.data.params["threshold_policy"] == "base_rate"
    assert champion.threshold == float(champion.tags["threshold"])


def test_deployed_endpoint_serves_the_champion_on_a_real_uvicorn(spine, first_model):
    champion = _registry(spine).by_alias(names.CHAMPION)
    events = first_model.get_asset_materialization_events()
    deployed = [e for e in events if e.asset_key.to_user_string() == "deployed_endpoint"]
    assert deployed
    assert deployed[0].materialization.metadata["model_version"].value == champion.version
    url = _url(spine)
    r = httpx.post(f"{url}/predict", json=EXAMPLE_FLIGHT, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == champion.version
    batch = httpx.post(
        f"{url}/predict/batch",
        json={"flights": [EXAMPLE_FLIGHT, EXAMPLE_FLIGHT | {"carrier": "B6", "dest": "LAX"}]},
        timeout=30,
    )
    assert batch.status_code == 200
    assert len(batch.json()["predictions"]) == 2
    bad = httpx.post(f"{url}/predict", json=EXAMPLE_FLIGHT | {"distance": -1}, timeout=30)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "distance"]
    assert httpx.get(f"{url}/ready", timeout=30).json()["ready"] is True


def test_promoted_torch_challenger_is_hot_reloaded_without_dropping_requests(spine, first_model):
    before = _registry(spine).by_alias(names.CHAMPION)
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def fire() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = client.post(f"{_url(spine)}/predict", json=EXAMPLE_FLIGHT)
                answers.append((r.status_code, r.json().get("model_version", "")))
                time.sleep(0.05)

    sender = threading.Thread(target=fire)
    sender.start()
    try:
        # A margin of -1 promotes any challenger that passes the floors: this tests the reload.
        result = spine.run_training(
            {"model_kinds": ["torch"], "n_trials": 1, "torch_max_epochs": 3},
            {"min_auc_margin": -1.0, "shadow_days": 0},
        )
        time.sleep(0.5)
    finally:
        stop.set()
        sender.join()
    assert result.success
    after = _registry(spine).by_alias(names.CHAMPION)
    assert after.version != before.version
    assert after.tags["model_kind"] == "torch"
    assert answers
    assert all(code == 200 for code, _ in answers), set(answers)
    assert {v for _, v in answers} <= {before.version, after.version}
    assert answers[-1][1] == after.version
    r = httpx.post(f"{_url(spine)}/predict", json=EXAMPLE_FLIGHT, timeout=30).json()
    assert (r["model_version"], r["model_kind"]) == (after.version, "torch")


def test_gate_rejection_blocks_deployment_and_is_recorded(spine, first_model):
    before = _registry(spine).by_alias(names.CHAMPION)
    result = spine.run_training(
        {"model_kinds": ["xgboost"], "n_trials": 1},
        {"min_auc_margin": 1.0, "min_auc": 0.5},  # only the margin decides here
    )
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert "not better" in check.description
    assert check.metadata["decision"].value == "rejected"
    ran = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "deployed_endpoint" not in ran
    registry = _registry(spine)
    assert registry.by_alias(names.CHAMPION).version == before.version
    rejected = registry.by_alias(names.CHALLENGER)
    assert rejected.tags["promotion_decision"] == "rejected"
    assert "not better" in rejected.tags["promotion_reason"]
    r = httpx.post(f"{_url(spine)}/predict", json=EXAMPLE_FLIGHT, timeout=30).json()
    assert r["model_version"] == before.version


def _register(registry, model, sample) -> tracking.VersionInfo:
    with mlflow.start_run() as run:
        info = pipeline.log_model(model, sample, {}, "xgboost")
    version = registry.register(info.model_uri, run.info.run_id, {"threshold": "0.3"})
    registry.set_alias(names.CHALLENGER, version.version)
    return version


def test_gate_promotes_a_better_model_and_rejects_a_worse_one(spine, first_model, tmp_path):
    """Constructed models in a fresh registry: one trained on shuffled labels (no signal)."""
    training_set = storage.read_parquet(f"{spine.paths.lake_url}/training_set.parquet")
    split = pipeline.time_split(training_set, holdout_days=5, validation_days=4)
    params = {"max_depth": 4, "eta": 0.1, "num_boost_round": 200}
    good = models.fit_xgboost(split.train, split.validation, params)
    shuffled = split.train.assign(
        **{LABEL: np.random.default_rng(0).permutation(split.train[LABEL].to_numpy())}
    )
    worse = models.fit_xgboost(shuffled, split.validation, params)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.configure(uri, str(tmp_path / "artifacts"))
    registry = tracking.Registry(uri)
    available = set(training_set.columns)
    lenient = promotion.PromotionPolicy(
        min_auc=0.0, max_calibration_error=1.0, latency_budget_ms=1e4, shadow_days=0
    )

    worse_v = _register(registry, worse, split.validation)
    first = promotion.run_gate(registry, split.holdout, "h", available, lenient)
    assert first.promote
    assert registry.by_alias(names.CHAMPION).version == worse_v.version

    good_v = _register(registry, good, split.validation)
    # with shadow days (the default), the better one is the candidate, not yet the champion
    shadowed = promotion.run_gate(
        registry, split.holdout, "h", available, replace(lenient, shadow_days=14)
    )
    assert shadowed.outcome == "shadow", shadowed.reasons
    assert registry.by_alias(names.CANDIDATE).version == good_v.version
    assert registry.by_alias(names.CHAMPION).version == worse_v.version
    assert registry.version(good_v.version).tags["promotion_decision"] == "shadow"
    better = promotion.run_gate(registry, split.holdout, "h", available, lenient)
    assert better.promote, better.reasons
    assert better.challenger.holdout.roc_auc > better.champion.holdout.roc_auc + 0.05
    assert registry.by_alias(names.CHAMPION).version == good_v.version

    again_v = _register(registry, worse, split.validation)
    rejected = promotion.run_gate(registry, split.holdout, "h", available, lenient)
    assert not rejected.promote
    assert "not better" in rejected.reasons[0]
    assert registry.by_alias(names.CHAMPION).version == good_v.version
    assert registry.version(again_v.version).tags["promotion_decision"] == "rejected"
    assert pd.notna(rejected.challenger.latency_p95_ms)


def test_floors_reject_a_model_whose_signature_the_feature_service_cannot_fill(spine, first_model):
    registry = _registry(spine)
    champion = registry.by_alias(names.CHAMPION)
    problems = promotion.signature_problems(registry.load(champion.version), {"carrier"})
    assert any("origin" in p for p in problems)


@pytest.fixture(autouse=True)
def _mlflow_back_to_spine(spine):
    yield
    tracking.configure(spine.paths.mlflow_tracking_uri, spine.paths.mlflow_artifacts)


def test_model_materialization_carries_metric_and_calibration_plots(first_model):
    """What the Dagster catalog shows for the model: holdout metrics and a reliability diagram."""
    (event,) = [
        e.materialization
        for e in first_model.get_asset_materialization_events()
        if e.materialization.asset_key.to_user_string() == "flight_delay_model"
    ]
    for key in ("holdout_metrics_plot", "calibration_plot"):
        text = event.metadata[key].value
        assert text.startswith("![v1 (xgboost) holdout"), text[:80]
        assert "(data:image/png;base64,iVBOR" in text  # a PNG's base64 signature


def _quality_day(spine, day: str, **metadata):
    """What `prediction_quality` records for a judged day (``metadata`` beside day and judged)."""
    import dagster as dg

    spine.instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "prediction_quality",
            partition=day,
            metadata={"day": day, "judged": True} | metadata,
        )
    )


def _shadow_day(spine, day: str, champion: str, candidate: str, served: float, ours: float):
    """A judged day with a candidate: the served champion's ROC AUC, the candidate's on the same
    flights, the frozen baseline's (here the champion's twin)."""
    _quality_day(
        spine,
        day,
        roc_auc=served,
        model_version=champion,
        candidate_version=candidate,
        candidate_roc_auc=ours,
        shadow_roc_auc=served,
    )


def _served_day(spine, day: str, champion: str, baseline: str, served: float, frozen: float):
    """A judged day with no candidate: the served champion's ROC AUC and the frozen baseline's,
    scored in shadow on the same flights."""
    _quality_day(
        spine,
        day,
        roc_auc=served,
        model_version=champion,
        shadow_version=baseline,
        shadow_roc_auc=frozen,
    )


def _review(spine, day: str, shadow_days: int, **config):
    import dagster as dg

    job = spine.defs.get_job_def("daily_loop_job")
    return job.execute_in_process(
        instance=spine.instance,
        partition_key=day,
        asset_selection=[dg.AssetKey("candidate_review")],
        run_config={"ops": {"candidate_review": {"config": {"shadow_days": shadow_days} | config}}},
    )


def _review_meta(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_candidate_is_promoted_and_deployed_only_after_it_serves_better_in_shadow(
    spine, first_model
):
    """A challenger the gate passes waits as the candidate (the champion keeps serving); the
    daily review promotes it once its shadow days show it ahead, and the endpoint serves it; a
    later candidate that serves worse in shadow is rejected and the champion stays."""
    registry = _registry(spine)
    lenient = {"min_auc_margin": -1.0, "min_auc": 0.5, "max_calibration_error": 1.0}
    champion = registry.by_alias(names.CHAMPION).version
    result = spine.run_training(
        {"model_kinds": ["xgboost"], "n_trials": 1}, lenient | {"shadow_days": 3}
    )
    assert not result.success  # the blocking gate did not promote: nothing deployed
    (check,) = result.get_asset_check_evaluations()
    assert check.metadata["decision"].value == "shadow"
    candidate = registry.by_alias(names.CANDIDATE).version
    assert candidate != champion == registry.by_alias(names.CHAMPION).version
    # the three days after its window (it was trained on ..2013-01-21)
    days = ["2013-01-22", "2013-01-23", "2013-01-24"]
    for i, day in enumerate(days[:2]):
        _shadow_day(spine, day, champion, candidate, 0.70 - 0.02 * i, 0.73 - 0.02 * i)
    waiting = _review_meta(_review(spine, days[1], 3))
    assert waiting["decision"] == "shadow"
    assert "2 of 3 judged days in shadow" in waiting["reason"]
    _shadow_day(spine, days[2], champion, candidate, 0.75, 0.77)
    promoted = _review_meta(_review(spine, days[2], 3))
    assert promoted["decision"] == "promoted", promoted["reason"]
    assert registry.by_alias(names.CHAMPION).version == candidate
    assert registry.by_alias(names.CANDIDATE) is None
    assert registry.version(candidate).tags["promotion_decision"] == "promoted"
    r = httpx.post(f"{_url(spine)}/predict", json=EXAMPLE_FLIGHT, timeout=30)
    assert r.json()["model_version"] == candidate
    records = retraining.read_retrains(spine.paths.monitoring_dir / "retrains")
    review = [x for x in records if x["trigger"] == retraining.REVIEW_TRIGGER]
    assert review[-1]["challenger_version"] == candidate
    assert review[-1]["decision"] == "promoted"

    spine.run_training({"model_kinds": ["xgboost"], "n_trials": 1}, lenient | {"shadow_days": 2})
    worse = registry.by_alias(names.CANDIDATE).version
    for day in ("2013-01-25", "2013-01-26"):
        _shadow_day(spine, day, candidate, worse, 0.72, 0.70)
    rejected = _review_meta(_review(spine, "2013-01-26", 2))
    assert rejected["decision"] == "rejected"
    assert "not better in shadow" in rejected["reason"]
    assert registry.by_alias(names.CHAMPION).version == candidate
    assert registry.by_alias(names.CANDIDATE) is None
    assert registry.version(worse).tags["promotion_decision"] == "rejected"

    # the frozen baseline (the first champion) then beats the promoted one on the days it
    # serves: the daily review rolls it back, and the endpoint serves the baseline again
    registry.set_alias(names.BASELINE, champion)
    served = ["2013-01-27", "2013-01-28", "2013-01-29"]
    _served_day(spine, served[0], candidate, champion, 0.70, 0.72)
    kept = _review_meta(_review(spine, served[0], 2, rollback_days=3))
    assert kept["decision"] == "no candidate"  # 1 of 3 served days: not judged yet
    for day, auc in zip(served[1:], (0.68, 0.73), strict=True):
        _served_day(spine, day, candidate, champion, auc, auc + 0.015)
    rolled = _review_meta(_review(spine, served[-1], 2, rollback_days=3))
    assert rolled["decision"] == "rolled back", rolled["reason"]
    assert rolled["rolled_back_version"] == candidate
    assert rolled["reason"].startswith("behind the baseline: ")
    assert registry.by_alias(names.CHAMPION).version == champion
    assert "behind the baseline" in registry.version(candidate).tags["rollback_reason"]
    r = httpx.post(f"{_url(spine)}/predict", json=EXAMPLE_FLIGHT, timeout=30)
    assert r.json()["model_version"] == champion
    records = retraining.read_retrains(spine.paths.monitoring_dir / "retrains")
    (rollback,) = [x for x in records if x["trigger"] == retraining.ROLLBACK_TRIGGER]
    assert (rollback["challenger_version"], rollback["champion_version"]) == (candidate, champion)
    (row,) = [x for x in retraining.retrain_events(records) if x["version"] == candidate]
    assert (row["outcome"], row["rolled_back"]) == ("promoted", served[-1])
    # the baseline serves again: nothing left to guard
    after = _review_meta(_review(spine, "2013-01-30", 2, rollback_days=3))
    assert after["decision"] == "no candidate"
