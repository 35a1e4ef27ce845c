"""Monitoring: judge yesterday's predictions against their outcomes and the champion's training
data, and report."""

import dataclasses
import functools
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from dagster_project.defs.features import FEATURE_UPSTREAM
from dagster_project.ingestion.landing import PARTITION
from dagster_project.monitoring import drift, measures, outcomes, plots, report, retraining, skew
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.io_managers import ALLOW_NONE
from dagster_project.orchestration.metadata import ML_OWNERS, code_version, image
from dagster_project.orchestration.partitions import daily_2013
from dagster_project.orchestration.resources import (
    FeastResource,
    MlflowResource,
    MonitoringResource,
)
from dagster_project.platform import names
from dagster_project.training import pipeline, promotion, tracking
from dagster_project.training.preprocess import CATEGORICAL, NUMERIC_V1, STREAM_NUMERIC


def _numeric(reference: pd.DataFrame) -> tuple[str, ...]:
    """The champion's numeric inputs: those of its reference sample (a v1 model's lack the
    stream features)."""
    return tuple(c for c in (*NUMERIC_V1, *STREAM_NUMERIC) if c in reference.columns)


def _drift_numeric(reference: pd.DataFrame) -> tuple[str, ...]:
    """The month of departure differs from the training window's by construction: not drift
    (the fixed rule skips it; the calibrated one shows it, marked excluded, see drift.py)."""
    return tuple(c for c in _numeric(reference) if c not in drift.CALENDAR_BOUND)


@functools.lru_cache(maxsize=8)
def _reference(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """The champion's training reference sample (logged by training), cached per run."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=f"reference/{pipeline.REFERENCE_FILE}"
    )
    return pd.read_parquet(local)


@functools.lru_cache(maxsize=8)
def _importance(tracking_uri: str, run_id: str) -> dict[str, float] | None:
    """The champion's permutation importance (None for a model logged without it)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"reference/{pipeline.IMPORTANCE_FILE}"
        )
    except Exception:  # an older model: the alarm weighs features equally and says so
        return None
    logged = json.loads(Path(local).read_text())
    per_feature = logged.get("features", logged) if isinstance(logged, dict) else {}
    return {str(k): float(v) for k, v in per_feature.items()}


@functools.lru_cache(maxsize=16)
def _calibration(
    tracking_uri: str, run_id: str, thresholds: measures.Thresholds, window_days: int
) -> drift.Calibration:
    """Each feature's bars for ``window_days``-day windows from the champion's reference
    window, computed once per champion and window length."""
    reference = _reference(tracking_uri, run_id)
    return drift.calibrate(
        reference,
        _numeric(reference),
        CATEGORICAL,
        dataclasses.replace(thresholds, drift_window_days=window_days),
        _importance(tracking_uri, run_id),
    )


QUALITY = dg.AssetKey("prediction_quality")


@functools.lru_cache(maxsize=4)
def _shadow_model(tracking_uri: str, version: str) -> Any:
    """The frozen model the shadow scores with (loaded once per process)."""
    return tracking.Registry(tracking_uri).load(version)


@compute_asset(
    group_name="monitoring",
    partitions_def=daily_2013,
    ins={"flights": dg.AssetIn("validated_flights")},
    kinds={"pandas", "matplotlib"},
    owners=ML_OWNERS,
    code_version=code_version(measures, drift, outcomes, report),
    check_specs=[
        dg.AssetCheckSpec(
            "quality_floor",
            asset="prediction_quality",
            description="The day's labeled predictions: AUC and calibration within the floors.",
        ),
        dg.AssetCheckSpec(
            "feature_drift",
            asset="prediction_quality",
            description="The trailing week's features against the champion's training window: "
            "bars calibrated on the window's own weeks, weighed by the champion's importance.",
        ),
        dg.AssetCheckSpec(
            "prediction_drift",
            asset="prediction_quality",
            description="The trailing week's scores against the champion's out-of-sample scores.",
        ),
    ],
)
def prediction_quality(
    context: dg.AssetExecutionContext,
    flights: pd.DataFrame,
    mlflow: MlflowResource,
    monitor: MonitoringResource,
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """The day's predictions against their outcomes (quality, and the frozen baseline's on the
    same flights) and against the champion's training data (feature and prediction drift, over
    the trailing week)."""
    day = context.partition_key
    thresholds = monitor.thresholds()
    log = monitor.predictions()
    predictions = measures.predictions_frame(log.read_day(day))
    week = [
        str(date.fromisoformat(day) - timedelta(days=i))
        for i in range(thresholds.drift_window_days)
    ]
    recent = measures.predictions_frame([r for d in week for r in log.read_day(d)])
    # The days of the window that had traffic (fewer than the window at a replay's start): the
    # bars are drawn from windows of as many days, so a short window is not drift by itself.
    covered = max(1, int(recent["scheduled_date"].nunique())) if len(recent) else 1
    labeled = measures.join_labels(predictions, retraining.labels(flights))
    quality = measures.daily_quality(labeled, thresholds)
    registry = mlflow.registry()
    uri = registry.client.tracking_uri
    version = str(predictions["model_version"].mode().iat[0]) if len(predictions) else None
    fixed = pd.DataFrame(columns=list(measures.DRIFT_COLUMNS))
    table = pd.DataFrame(columns=list(drift.COLUMNS))
    pred_drift: dict[str, Any] = {}
    calibration: drift.Calibration | None = None
    if version is not None:
        run_id = registry.version(version).run_id
        reference = _reference(uri, run_id)
        calibration = _calibration(uri, run_id, thresholds, covered)
        fixed = measures.feature_drift(
            reference, recent, _drift_numeric(reference), CATEGORICAL, thresholds
        )
        table = drift.feature_drift(reference, recent, calibration, thresholds)
        pred_drift = drift.prediction_drift(
            reference, recent["probability"].to_numpy(), calibration, thresholds
        )
    policy = monitor.policy()
    old = drift.fixed_verdict(fixed, policy.important_features, thresholds)
    new = drift.verdict(table, pred_drift, thresholds)
    chosen = new if thresholds.drift_mode == "calibrated" else old
    shadow = _shadow(registry, uri, labeled, thresholds, day)
    plot = report.plot_day(day, quality, table, monitor.url("days", f"{day}.png"), thresholds)
    errors = chosen.drifted
    warns = (
        table.loc[table["level"] == "warn", "feature"].tolist()
        if chosen.mode == "calibrated"
        else fixed.loc[fixed["level"] == "warn", "feature"].tolist()
    )
    row = {
        "day": day,
        **{k: v for k, v in quality.items() if k != "breaches"},
        "breaches": "; ".join(quality["breaches"]),
        "max_psi": float(fixed["psi"].max()) if len(fixed) else 0.0,
        "drift_errors": ",".join(errors),
        "drift_score": new.score,
        "max_ratio": _max_ratio(table),
        "drift_alarm": chosen.alarm,
        "calibrated_alarm": new.alarm,
        "fixed_alarm": old.alarm,
        "drift_mode": chosen.mode,
        "prediction_psi": pred_drift.get("psi"),
        "prediction_level": pred_drift.get("level"),
        "model_version": version,
        "shadow_version": shadow.get("version"),
        "shadow_roc_auc": shadow.get("roc_auc"),
        "shadow_brier": shadow.get("brier"),
        "candidate_version": shadow.get("candidate_version"),
        "candidate_roc_auc": shadow.get("candidate_roc_auc"),
        PARTITION: day,
    }
    context.log.info(
        f"{day}: {quality['labeled']} labeled, AUC {quality['roc_auc']} (frozen "
        f"{shadow.get('roc_auc')}), breaches {quality['breaches'] or 'none'}, drift alarm "
        f"{chosen.alarm} ({chosen.mode}: {chosen.reason})"
    )
    yield dg.Output(
        pd.DataFrame([row]),
        metadata={
            "day": day,
            "judged": quality["judged"],
            "labeled": dg.MetadataValue.int(int(quality["labeled"])),
            "roc_auc": quality["roc_auc"],
            "brier": quality["brier"],
            "calibration_error": quality["calibration_error"],
            "breaches": dg.MetadataValue.json(quality["breaches"]),
            "drift_errors": dg.MetadataValue.json(errors),
            "drift_alarm": chosen.alarm,
            "drift_mode": chosen.mode,
            "drift_reason": chosen.reason,
            "shadow_roc_auc": shadow.get("roc_auc"),
            "shadow_version": shadow.get("version") or "none",
            "candidate_roc_auc": shadow.get("candidate_roc_auc"),
            "candidate_version": shadow.get("candidate_version") or "none",
            "model_version": version or "none",
            "plot": dg.MetadataValue.path(str(plot)),
            "drift": dg.MetadataValue.md(_drift_markdown(table)),
            **_calibration_image(day, quality),
        },
    )
    yield dg.AssetCheckResult(
        check_name="quality_floor",
        passed=not quality["breaches"],
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(quality["breaches"])
        or "quality within floors"
        + ("" if quality["judged"] else f" (not judged: {quality['labeled']} labeled)"),
        metadata={
            "roc_auc": quality["roc_auc"],
            "labeled": int(quality["labeled"]),
            "frozen_roc_auc": shadow.get("roc_auc"),
        },
    )
    yield dg.AssetCheckResult(
        check_name="feature_drift",
        passed=not chosen.alarm and not errors and not warns,
        severity=dg.AssetCheckSeverity.ERROR if chosen.alarm else dg.AssetCheckSeverity.WARN,
        description=f"{'ALARM: ' if chosen.alarm else ''}{chosen.reason}; errors: "
        f"{errors or 'none'}; warnings: {warns or 'none'}",
        metadata={
            "mode": chosen.mode,
            "alarm": chosen.alarm,
            "drifted_importance": dg.MetadataValue.float(new.score),
            "alarm_at_importance": dg.MetadataValue.float(thresholds.drift_importance_share),
            "statistic": "KS distance (numbers) / total variation distance (categories), bars "
            f"at the {thresholds.drift_error_quantile:g} quantile of the reference's own windows",
            "fixed_rule_alarm": old.alarm,
            "calibrated_rule_alarm": new.alarm,
            "max_psi": row["max_psi"],
            "excluded_from_alarm": dg.MetadataValue.json(
                calibration.excluded if calibration else dict(drift.CALENDAR_BOUND)
            ),
            "calibration": dg.MetadataValue.json(calibration.summary() if calibration else {}),
            "weights": dg.MetadataValue.json(
                {k: round(v, 4) for k, v in (calibration.weights if calibration else {}).items()}
            ),
            "prediction_drift": dg.MetadataValue.json(_jsonable(pred_drift)),
        },
    )
    pred_level = str(pred_drift.get("level", "n/a"))
    yield dg.AssetCheckResult(
        check_name="prediction_drift",
        passed=pred_level in ("ok", "n/a"),
        severity=dg.AssetCheckSeverity.ERROR
        if pred_level == "error"
        else dg.AssetCheckSeverity.WARN,
        description=(
            f"scores {pred_level}: KS distance {pred_drift['distance']:.3f} (warn "
            f"{pred_drift['warn_bar']:.3f}, error {pred_drift['error_bar']:.3f}), mean "
            f"{pred_drift['current_mean']:.3f} vs {pred_drift['reference_mean']:.3f} out of "
            "sample"
            if pred_drift
            else "no scores to compare"
        ),
        metadata={
            "prediction_drift": dg.MetadataValue.json(_jsonable(pred_drift)),
            "in_alarm": thresholds.prediction_in_alarm,
        },
    )


def _shadow(
    registry: tracking.Registry,
    uri: str,
    labeled: pd.DataFrame,
    thresholds: measures.Thresholds,
    day: str,
) -> dict[str, Any]:
    """The day's labeled flights scored by the registry's `baseline` version (the frozen first
    champion a replay sets) and by its `candidate` (a challenger that passed the promotion gate,
    on days after its training window only), on the features the endpoint logged: nothing is
    served. ``version``/``roc_auc``/... are the baseline's, ``candidate_*`` the candidate's."""
    out: dict[str, Any] = {}
    baseline = registry.by_alias(names.BASELINE)
    if baseline is not None:
        out["version"] = baseline.version
        if not labeled.empty:
            out |= outcomes.shadow_quality(
                _shadow_model(uri, baseline.version), labeled, thresholds
            )
    candidate = registry.by_alias(names.CANDIDATE)
    if candidate is not None and not labeled.empty and day > shadow_after(candidate):
        quality = outcomes.shadow_quality(
            _shadow_model(uri, candidate.version), labeled, thresholds
        )
        out |= {"candidate_version": candidate.version, "candidate_roc_auc": quality["roc_auc"]}
    return out


def shadow_after(version: tracking.VersionInfo) -> str:
    """The last day of the version's training window (its holdout's end): its shadow days
    come after it."""
    return version.tags.get("holdout_window", "..").split("..")[-1]


def judged_days(
    instance: dg.DagsterInstance, upto: str, limit: int = 400
) -> list[tuple[str, dict[str, Any]]]:
    """Each judged day up to ``upto`` as `prediction_quality` last recorded it (day, metadata),
    newest first, from its latest ``limit`` materializations: one read for the daily review's
    :func:`read_shadow_days` and :func:`read_served_days`."""
    records = instance.fetch_materializations(QUALITY, limit=limit).records
    seen: set[str] = set()
    days = []
    for record in records:  # newest first
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        day = str(meta["day"].value) if "day" in meta else None
        if day is None or day in seen:
            continue
        seen.add(day)
        value = {k: v.value for k, v in meta.items()}
        if day <= upto and value.get("judged"):
            days.append((day, value))
    return days


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value == value else None


def read_shadow_days(
    judged: list[tuple[str, dict[str, Any]]],
    candidate: tracking.VersionInfo,
    champion: str,
) -> list[promotion.ShadowDay]:
    """The candidate's shadow days among the ``judged`` ones (:func:`judged_days`): days after
    its training window on which the champion served and both were scored."""
    days = []
    for day, value in judged:
        ours, theirs = _number(value.get("candidate_roc_auc")), _number(value.get("roc_auc"))
        if (
            shadow_after(candidate) < day
            and str(value.get("candidate_version")) == candidate.version
            and str(value.get("model_version")) == champion
            and ours is not None
            and theirs is not None
        ):
            frozen = _number(value.get("shadow_roc_auc"))
            days.append(
                promotion.ShadowDay(
                    day, ours, theirs, frozen if frozen is not None else float("nan")
                )
            )
    return sorted(days, key=lambda d: d.day)


def read_served_days(
    judged: list[tuple[str, dict[str, Any]]], champion: str, baseline: str
) -> list[promotion.ServedDay]:
    """The ``judged`` days (:func:`judged_days`) on which ``champion`` served and the frozen
    ``baseline`` was scored in shadow beside it."""
    days = []
    for day, value in judged:
        ours, frozen = _number(value.get("roc_auc")), _number(value.get("shadow_roc_auc"))
        if (
            str(value.get("model_version")) == champion
            and str(value.get("shadow_version")) == baseline
            and ours is not None
            and frozen is not None
        ):
            days.append(promotion.ServedDay(day, ours, frozen))
    return sorted(days, key=lambda d: d.day)


def _max_ratio(table: pd.DataFrame) -> float | None:
    alarmed = table[table["level"] != "excluded"] if len(table) else table
    return float(alarmed["ratio"].max()) if len(alarmed) else None


def _drift_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "no drift computed"
    shown = table.head(12)[
        ["feature", "distance", "warn_bar", "error_bar", "weight", "level", "psi"]
    ]
    return str(shown.to_markdown(index=False, floatfmt=".3f"))


def _calibration_image(day: str, quality: dict) -> dict[str, dg.MetadataValue]:
    """The day's reliability diagram, inline in the catalog (none before labels arrive)."""
    curve = quality.get("calibration_curve") or []
    if not curve or quality.get("calibration_error") is None:
        return {}
    title = f"{day} calibration ({int(quality['labeled']):,} labeled)"
    return {
        "calibration_plot": image(
            title, plots.calibration(curve, float(quality["calibration_error"]), title)
        )
    }


def _jsonable(value: Any) -> Any:
    """Metadata-ready JSON: floats rounded, NaN as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return None if value != value else round(value, 5)
    return value


@compute_asset(
    group_name="monitoring",
    partitions_def=daily_2013,
    # the day's offline rows must be written before they are compared
    deps=[dg.AssetKey(t) for t in FEATURE_UPSTREAM if t != "plane_specs"],
    kinds={"feast", "pandas"},
    owners=ML_OWNERS,
    code_version=code_version(skew),
    check_specs=[
        dg.AssetCheckSpec(
            "no_skew",
            asset="feature_skew",
            description="Every feature the endpoint served equals the offline store's value for "
            "the same flight and as-of time.",
        )
    ],
)
def feature_skew(
    context: dg.AssetExecutionContext, feast: FeastResource, monitor: MonitoringResource
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """Training/serving skew of the day's predictions: each logged feature vector against the
    row the offline store builds for the same flight, FeatureService and as-of time."""
    day = context.partition_key
    records = monitor.predictions().read_day(day)
    result = skew.measure(records, feast.client().historical_features)
    table = result.table()
    worst = table.sort_values("differing", ascending=False).head(3)
    context.log.info(
        f"{day}: {result.predictions} predictions, {result.differing} of {result.cells} "
        f"feature cells differ from the offline store"
    )
    row = {
        "day": day,
        "predictions": result.predictions,
        "cells": result.cells,
        "differing": result.differing,
        "share": result.share,
        "features_differing": ", ".join(worst.loc[worst["differing"] > 0, "feature"]),
        PARTITION: day,
    }
    yield dg.Output(
        pd.DataFrame([row]),
        metadata={
            "day": day,
            "predictions_compared": dg.MetadataValue.int(result.predictions),
            "cells": dg.MetadataValue.int(result.cells),
            "cells_differing": dg.MetadataValue.int(result.differing),
            "share_differing": dg.MetadataValue.float(result.share),
            "by_feature": dg.MetadataValue.md(
                str(table.to_markdown(index=False, floatfmt=".4f")) if len(table) else "-"
            ),
            "examples": dg.MetadataValue.json(result.examples),
        },
    )
    yield dg.AssetCheckResult(
        check_name="no_skew",
        passed=result.differing == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{result.differing} of {result.cells} served feature cells differ",
        metadata={"cells_differing": dg.MetadataValue.int(result.differing)},
    )


@compute_asset(
    group_name="monitoring",
    ins={
        "days": dg.AssetIn("prediction_quality"),
        # the days with predictions that logged their as-of time (no file: no skew column)
        "skews": dg.AssetIn("feature_skew", metadata={ALLOW_NONE: True}),
    },
    kinds={"html"},
    owners=ML_OWNERS,
    code_version=code_version(report, outcomes, retraining),
    automation_condition=dg.AutomationCondition.eager(),
)
def monitoring_report(
    days: pd.DataFrame, skews: pd.DataFrame, monitor: MonitoringResource
) -> dg.MaterializeResult:
    """One HTML page over the state folder's last replay: quality (served vs frozen) and drift
    over time, alarms judged against outcomes, retraining events marked, and each day's
    training/serving skew."""
    if len(skews):
        days = days.merge(
            skews[["day", "cells", "differing"]].rename(
                columns={"cells": "skew_cells", "differing": "skew_differing"}
            ),
            on="day",
            how="left",
        )
    history = days.sort_values("day").reset_index(drop=True)
    records = retraining.read_retrains(monitor.retrains_url)
    replay = retraining.read_replay(monitor.replay_url)
    scope = None
    if replay is not None:  # that replay's days and retrains only (not a demo's, not older ones)
        history = history[[replay.covers(d) for d in history["day"]]].reset_index(drop=True)
        records = [r for r in records if r.get("replay_id") == replay.replay_id]
        scope = (
            f"replay {replay.replay_id}: {replay.start}..{replay.end}, started "
            f"{replay.started_at}, frozen baseline v{replay.baseline_version}, drift rule "
            f"{replay.drift_mode}"
        )
    retrains = retraining.retrain_events(records)
    thresholds = monitor.thresholds()
    out = report.render_report(
        history,
        retrains,
        monitor.url("report.html"),
        thresholds=thresholds,
        scope=scope,
    )
    figures = report.assess(history, retrains, thresholds).figures()
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(out)),
            "days": dg.MetadataValue.int(len(history)),
            "retrains": dg.MetadataValue.int(len(retrains)),
            "promoted": dg.MetadataValue.int(sum(r["outcome"] == "promoted" for r in retrains)),
            "replay": replay.replay_id if replay else "none",
            "figures": dg.MetadataValue.json(_jsonable(figures)),
        }
    )


assets = [prediction_quality, feature_skew, monitoring_report]
