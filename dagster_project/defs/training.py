"""Training: tune and register a `flight_delay` challenger; the promotion gate decides on it."""

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from dagster_project.defs.monitoring import (
    judged_days,
    prediction_quality,
    read_served_days,
    read_shadow_days,
)
from dagster_project.features.feast_objects import build as feast_objects
from dagster_project.monitoring import plots, retraining
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.metadata import ML_OWNERS, code_version, image
from dagster_project.orchestration.partitions import daily_2013
from dagster_project.orchestration.resources import (
    Deployer,
    FeastResource,
    MlflowResource,
    MonitoringResource,
)
from dagster_project.platform import names
from dagster_project.serving.schemas import EXAMPLE_FLIGHT
from dagster_project.training import (
    evaluation,
    lead_time,
    models,
    pipeline,
    preprocess,
    promotion,
    tracking,
)
from dagster_project.training.models import KINDS


class TrainingConfig(dg.Config):
    model_kinds: list[str] = list(KINDS)
    n_trials: int = pipeline.TrainingOptions.n_trials
    holdout_days: int = pipeline.TrainingOptions.holdout_days
    validation_days: int = pipeline.TrainingOptions.validation_days
    torch_max_epochs: int = pipeline.TrainingOptions.torch_max_epochs
    # base_rate (flag as many as are delayed on validation), cost (miss_cost_ratio) or f1
    threshold_policy: str = pipeline.TrainingOptions.threshold_policy
    miss_cost_ratio: float = pipeline.TrainingOptions.miss_cost_ratio


@compute_asset(
    group_name="training",
    kinds={"mlflow", "xgboost", "pytorch", "optuna"},
    owners=ML_OWNERS,
    ins={"training_set": dg.AssetIn("training_set")},
    code_version=code_version(pipeline, models, preprocess, evaluation, tracking),
)
def flight_delay_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    training_set: pd.DataFrame,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """A new `flight_delay` version (best of the Optuna searches), registered as `challenger`."""
    days = pipeline.flight_dates(training_set)
    service, when = pipeline.training_set_spec(training_set)
    lineage = tracking.Lineage(
        dagster_run_id=context.run.run_id,
        partition_range=f"{days.min()}..{days.max()}",
        feature_service=service,
        training_set_hash=tracking.frame_hash(training_set),
        git_commit=tracking.git_commit(),
        prediction_time=when,
    )
    try:
        options = pipeline.TrainingOptions(
            numeric=preprocess.numeric_of(service),
            model_kinds=tuple(config.model_kinds),
            n_trials=config.n_trials,
            holdout_days=config.holdout_days,
            validation_days=config.validation_days,
            torch_max_epochs=config.torch_max_epochs,
            threshold_policy=config.threshold_policy,
            miss_cost_ratio=config.miss_cost_ratio,
        )
        outcome = pipeline.train_and_register(
            training_set, options, lineage, mlflow.registry(), context.log.info
        )
    except ValueError as exc:  # bad config, a window too short for the split, one class only
        raise dg.Failure(description=str(exc)) from exc
    holdout = outcome.holdout
    title = f"v{outcome.version.version} ({outcome.kind}) holdout"
    shown = ("roc_auc", "pr_auc", "precision", "recall", "f1", "brier", "calibration_error")
    return dg.MaterializeResult(
        metadata={
            "model_version": outcome.version.version,
            "model_kind": outcome.kind,
            "mlflow_run_id": outcome.run_id,
            "model_uri": outcome.version.uri,
            "threshold": dg.MetadataValue.float(outcome.threshold),
            "threshold_policy": outcome.threshold_policy,
            "windows": dg.MetadataValue.json(outcome.windows),
            "candidates_validation": dg.MetadataValue.json(outcome.candidates),
            **{
                k: dg.MetadataValue.float(v) for k, v in outcome.holdout.metrics("holdout_").items()
            },
            "lineage": dg.MetadataValue.json(lineage.tags()),
            "holdout_metrics_plot": image(
                f"{title} metrics",
                plots.metric_bars({m: getattr(holdout, m) for m in shown}, f"{title} metrics"),
            ),
            "calibration_plot": image(
                f"{title} calibration",
                plots.calibration(
                    holdout.calibration_curve, holdout.calibration_error, f"{title} calibration"
                ),
            ),
        }
    )


class PromotionConfig(dg.Config):
    min_auc_margin: float = promotion.PromotionPolicy.min_auc_margin
    confidence: float = promotion.PromotionPolicy.confidence
    bootstrap_rounds: int = promotion.PromotionPolicy.bootstrap_rounds
    beat_baseline: bool = promotion.PromotionPolicy.beat_baseline
    shadow_days: int = promotion.PromotionPolicy.shadow_days
    rollback_days: int = promotion.PromotionPolicy.rollback_days
    min_auc: float = promotion.PromotionPolicy.min_auc
    max_calibration_error: float = promotion.PromotionPolicy.max_calibration_error
    latency_budget_ms: float = promotion.PromotionPolicy.latency_budget_ms


def served_columns(service_name: str) -> set[str]:
    """What a FeatureService and the request provide: features and entity keys."""
    objs = feast_objects("")
    service = next(s for s in objs.services if s.name == service_name)
    features = {f.name for p in service.feature_view_projections for f in p.features}
    return features | {e.join_key for e in objs.entities}


@dg.asset_check(
    asset=flight_delay_model,
    blocking=True,
    description=(
        "Challenger vs champion (and the frozen baseline) on the same holdout: floors, a gain "
        "that holds in a paired day bootstrap, latency, inputs."
    ),
    additional_ins={"training_set": dg.AssetIn("training_set")},
)
def promotion_gate(
    context: dg.AssetCheckExecutionContext,
    config: PromotionConfig,
    training_set: pd.DataFrame,
    mlflow: MlflowResource,
    monitor: MonitoringResource,
) -> dg.AssetCheckResult:
    """Challenger vs champion on the challenger's holdout window; moves `champion` if better."""
    registry = mlflow.registry()
    challenger = registry.by_alias(names.CHALLENGER)
    if challenger is None:
        raise dg.Failure("no challenger registered")
    start, end = challenger.tags["holdout_window"].split("..")
    days = pipeline.flight_dates(training_set).astype(str)
    holdout = training_set[days.between(start, end)].reset_index(drop=True)
    policy = promotion.PromotionPolicy(**config.model_dump())
    decision = promotion.run_gate(
        registry, holdout, f"{start}..{end}", served_columns(challenger.feature_service), policy
    )
    context.log.info(f"promotion gate: {decision.summary()}")
    tags = context.run.tags
    champion_now = registry.by_alias(names.CHAMPION)
    retraining.append_retrain(
        monitor.retrains_url,
        retraining.RetrainRecord(
            recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            dagster_run_id=context.run.run_id,
            trigger=tags.get(retraining.TAG_TRIGGER, "manual"),
            reason=tags.get(retraining.TAG_REASON, "run launched by hand"),
            day=tags.get(retraining.TAG_DAY),
            data_window=challenger.tags.get(tracking.TAG_PARTITIONS, ""),
            challenger_version=challenger.version,
            decision=decision.outcome,
            auc_before=decision.champion.holdout.roc_auc if decision.champion else None,
            auc_after=decision.challenger.holdout.roc_auc,
            champion_version=champion_now.version if champion_now else "none",
            replay_id=tags.get(retraining.TAG_REPLAY),
        ),
    )
    return dg.AssetCheckResult(
        passed=decision.promote,
        severity=dg.AssetCheckSeverity.ERROR,
        description=decision.summary(),
        metadata={
            "decision": decision.outcome,
            "challenger_version": challenger.version,
            "champion_version": decision.champion.version if decision.champion else "none",
            "record": dg.MetadataValue.json(decision.record()),
            "challenger_holdout_auc": dg.MetadataValue.float(decision.challenger.holdout.roc_auc),
        },
    )


@compute_asset(
    group_name="training",
    deps=[flight_delay_model],
    ins={"flights": dg.AssetIn("validated_flights")},
    kinds={"mlflow", "feast", "matplotlib"},
    owners=ML_OWNERS,
    code_version=code_version(lead_time),
)
def lead_time_evaluation(
    context: dg.AssetExecutionContext,
    flights: pd.DataFrame,
    mlflow: MlflowResource,
    feast: FeastResource,
) -> dg.MaterializeResult:
    """The new version's holdout ROC AUC against how early it scores: features as of the day's
    start, 180, 120, 60 and 30 minutes before departure (plot and table, also on the version)."""
    registry = mlflow.registry()
    version = registry.by_alias(names.CHALLENGER)
    if version is None:
        raise dg.Failure("no challenger registered")
    start, end = version.tags["holdout_window"].split("..")
    holdout = flights[flights["flight_date"].between(start, end)]
    model = registry.load(version.version)
    table = lead_time.auc_by_lead(
        model, holdout, version.feature_service, feast.client().historical_features
    )
    title = f"v{version.version} ({version.tags.get('model_kind', '?')}) trained at {version.prediction_time}"
    with tempfile.TemporaryDirectory() as tmp:
        path = lead_time.plot(table, title, Path(tmp) / "auc_by_lead_time.png")
        registry.client.log_artifact(version.run_id, str(path), "plots")
        registry.client.log_dict(
            version.run_id,
            {"auc_by_lead_time": table.to_dict("records")},
            "evaluation/auc_by_lead_time.json",
        )
        plot = image(title, path.read_bytes())
    registry.tag(version.version, {"holdout_roc_auc_by_lead": lead_time.tag_value(table)})
    context.log.info(f"v{version.version} holdout AUC by lead: {lead_time.tag_value(table)}")
    return dg.MaterializeResult(
        metadata={
            "model_version": version.version,
            "trained_at": version.prediction_time,
            "holdout_window": f"{start}..{end}",
            "auc_by_lead_time": dg.MetadataValue.md(
                str(table.to_markdown(index=False, floatfmt=".4f"))
            ),
            "plot": plot,
        }
    )


@compute_asset(
    group_name="training",
    partitions_def=daily_2013,
    deps=[prediction_quality],
    kinds={"mlflow"},
    owners=ML_OWNERS,
    code_version=code_version(promotion),
)
def candidate_review(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    mlflow: MlflowResource,
    monitor: MonitoringResource,
    deployer: Deployer,
) -> dg.MaterializeResult:
    """The candidate (a challenger the promotion gate passed) after its shadow days: promoted and
    deployed when its mean daily ROC AUC on served traffic beats the champion's and the frozen
    baseline's with the gate's confidence, else rejected; until then, still in shadow. First,
    a promoted champion that the frozen baseline beat over its last `rollback_days` judged
    days (same confidence) is rolled back to the baseline and the baseline deployed."""
    day = context.partition_key
    registry = mlflow.registry()
    candidate = registry.by_alias(names.CANDIDATE)
    champion = registry.by_alias(names.CHAMPION)
    baseline = registry.by_alias(names.BASELINE)
    policy = promotion.PromotionPolicy(**config.model_dump())
    nothing: dg.MaterializeResult = dg.MaterializeResult(
        metadata={"day": day, "decision": "no candidate"}
    )
    if champion is None:
        return nothing
    # the frozen baseline a promoted champion is guarded against (none: nothing to guard)
    frozen = baseline.version if baseline and policy.rollback_days > 0 else champion.version
    if candidate is None and frozen == champion.version:
        return nothing
    judged = judged_days(context.instance, day)  # one read for the guard and the review
    if frozen != champion.version:
        served = read_served_days(judged, champion.version, frozen)
        watch = promotion.guard(champion.version, frozen, served, policy)
        context.log.info(f"{day}: {watch.summary()}")
        if watch.status == promotion.ROLLED_BACK:
            return _roll_back(context, registry, monitor, deployer, champion, watch)
    if candidate is None:
        return nothing
    evidence = read_shadow_days(judged, candidate, champion.version)
    result = promotion.review(
        candidate.version,
        champion.version,
        baseline.version if baseline else None,
        evidence,
        policy,
    )
    context.log.info(f"{day}: {result.summary()}")
    meta: dict[str, Any] = {
        "day": day,
        "decision": result.status,
        "candidate_version": candidate.version,
        "champion_version": champion.version,
        "shadow_days": dg.MetadataValue.json(result.days),
        "record": dg.MetadataValue.json(result.record()),
        "reason": "; ".join(result.reasons),
        "summary": result.summary(),
    }
    if result.status == promotion.SHADOW:
        return dg.MaterializeResult(metadata=meta)
    promoted = result.status == "promoted"
    if promoted:
        registry.set_alias(names.CHAMPION, candidate.version)
    registry.client.delete_registered_model_alias(registry.name, names.CANDIDATE)
    registry.tag(
        candidate.version,
        {
            "promotion_decision": result.status,
            "promotion_reason": "; ".join(result.reasons)[:4000],
            "shadow_record": json.dumps(result.record())[:4000],
        },
    )
    _record(
        context,
        monitor,
        candidate,
        retraining.REVIEW_TRIGGER,
        result.summary(),
        result.status,
        (result.gains[0].incumbent_auc, result.gains[0].incumbent_auc + result.gains[0].gain),
        candidate.version if promoted else champion.version,
    )
    if promoted:
        done = deployer.deploy(candidate.version, EXAMPLE_FLIGHT)
        meta["deployed"] = f"v{done.version} at {done.url}"
    return dg.MaterializeResult(metadata=meta)


def _record(
    context: dg.AssetExecutionContext,
    monitor: MonitoringResource,
    version: tracking.VersionInfo,
    trigger: str,
    summary: str,
    decision: str,
    aucs: tuple[float, float],
    champion_version: str,
) -> None:
    """Add the review's decision on ``version`` to the retrain records (AUC before -> after)."""
    retraining.append_retrain(
        monitor.retrains_url,
        retraining.RetrainRecord(
            recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            dagster_run_id=context.run.run_id,
            trigger=trigger,
            reason=summary[:500],
            day=context.partition_key,
            data_window=version.tags.get(tracking.TAG_PARTITIONS, ""),
            challenger_version=version.version,
            decision=decision,
            auc_before=aucs[0],
            auc_after=aucs[1],
            champion_version=champion_version,
            replay_id=context.run.tags.get(retraining.TAG_REPLAY),
        ),
    )


def _roll_back(
    context: dg.AssetExecutionContext,
    registry: tracking.Registry,
    monitor: MonitoringResource,
    deployer: Deployer,
    champion: tracking.VersionInfo,
    watch: promotion.Guard,
) -> dg.MaterializeResult:
    """Point `champion` back at the frozen baseline, record why (on the version and as a retrain
    record the report joins to the promotion) and deploy the baseline."""
    day = context.partition_key
    registry.set_alias(names.CHAMPION, watch.baseline)
    registry.tag(
        champion.version,
        {"rollback_reason": watch.summary()[:4000], "rollback_record": json.dumps(watch.record())},
    )
    _record(
        context,
        monitor,
        champion,
        retraining.ROLLBACK_TRIGGER,
        watch.summary(),
        promotion.ROLLED_BACK,
        (watch.champion_auc, watch.baseline_auc),
        watch.baseline,
    )
    done = deployer.deploy(watch.baseline, EXAMPLE_FLIGHT)
    context.log.warning(f"{day}: {watch.summary()}; deployed v{done.version}")
    return dg.MaterializeResult(
        metadata={
            "day": day,
            "decision": promotion.ROLLED_BACK,
            "champion_version": watch.baseline,
            "rolled_back_version": champion.version,
            "served_days": dg.MetadataValue.json(watch.days),
            "record": dg.MetadataValue.json(watch.record()),
            "reason": "; ".join(watch.reasons),
            "summary": watch.summary(),
            "deployed": f"v{done.version} at {done.url}",
        }
    )


assets = [flight_delay_model, lead_time_evaluation, candidate_review]
checks = [promotion_gate]
