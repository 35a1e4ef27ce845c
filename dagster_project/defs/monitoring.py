"""Monitoring: judge yesterday's predictions against their outcomes and the champion's training
data, and report."""

import functools
from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from dagster_project.ingestion.landing import PARTITION
from dagster_project.monitoring import measures, plots, report, retraining
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.metadata import ML_OWNERS, code_version, image
from dagster_project.orchestration.partitions import daily_2013
from dagster_project.orchestration.resources import MlflowResource, MonitoringResource
from dagster_project.training import pipeline
from dagster_project.training.preprocess import CATEGORICAL, NUMERIC

DRIFT_DAYS = 7  # drift compares the trailing week of traffic with the training reference
# The month of departure differs from the training window's by construction: not drift.
DRIFT_NUMERIC = tuple(c for c in NUMERIC if c != "dep_month")


@functools.lru_cache(maxsize=8)
def _reference(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """The champion's training reference sample (logged by training), cached per run."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=f"reference/{pipeline.REFERENCE_FILE}"
    )
    return pd.read_parquet(local)


@compute_asset(
    group_name="monitoring",
    partitions_def=daily_2013,
    ins={"flights": dg.AssetIn("validated_flights")},
    kinds={"pandas", "matplotlib"},
    owners=ML_OWNERS,
    code_version=code_version(measures, report),
    check_specs=[
        dg.AssetCheckSpec(
            "quality_floor",
            asset="prediction_quality",
            description="The day's labeled predictions: AUC and calibration within the floors.",
        ),
        dg.AssetCheckSpec(
            "feature_drift",
            asset="prediction_quality",
            description="The trailing week's features against the champion's training data.",
        ),
    ],
)
def prediction_quality(
    context: dg.AssetExecutionContext,
    flights: pd.DataFrame,
    mlflow: MlflowResource,
    monitor: MonitoringResource,
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """The day's predictions against their outcomes (quality) and against the champion's
    training data (feature and prediction drift, over the trailing week)."""
    day = context.partition_key
    thresholds = monitor.thresholds()
    log = monitor.predictions()
    predictions = measures.predictions_frame(log.read_day(day))
    week = [str(date.fromisoformat(day) - timedelta(days=i)) for i in range(DRIFT_DAYS)]
    recent = measures.predictions_frame([r for d in week for r in log.read_day(d)])
    labeled = measures.join_labels(predictions, retraining.labels(flights))
    quality = measures.daily_quality(labeled, thresholds)
    registry = mlflow.registry()
    version = str(predictions["model_version"].mode().iat[0]) if len(predictions) else None
    drift = pd.DataFrame(columns=list(measures.DRIFT_COLUMNS))
    pred_drift: dict[str, float] = {}
    if version is not None:
        reference = _reference(registry.client.tracking_uri, registry.version(version).run_id)
        drift = measures.feature_drift(reference, recent, DRIFT_NUMERIC, CATEGORICAL, thresholds)
        pred_drift = measures.prediction_drift(
            reference["probability"].to_numpy(), recent["probability"].to_numpy()
        )
    plot = report.plot_day(day, quality, drift, monitor.url("days", f"{day}.png"))
    errors = drift.loc[drift["level"] == "error", "feature"].tolist()
    warns = drift.loc[drift["level"] == "warn", "feature"].tolist()
    row = {
        "day": day,
        **{k: v for k, v in quality.items() if k != "breaches"},
        "breaches": "; ".join(quality["breaches"]),
        "max_psi": float(drift["psi"].max()) if len(drift) else 0.0,
        "drift_errors": ",".join(errors),
        "prediction_psi": pred_drift.get("psi"),
        "model_version": version,
        PARTITION: day,
    }
    context.log.info(
        f"{day}: {quality['labeled']} labeled, AUC {quality['roc_auc']}, breaches "
        f"{quality['breaches'] or 'none'}, drift errors {errors or 'none'}"
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
            "model_version": version or "none",
            "plot": dg.MetadataValue.path(str(plot)),
            "drift": dg.MetadataValue.md(drift.head(10).to_markdown(index=False)),
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
        metadata={"roc_auc": quality["roc_auc"], "labeled": int(quality["labeled"])},
    )
    yield dg.AssetCheckResult(
        check_name="feature_drift",
        passed=not errors and not warns,
        severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
        description=f"errors: {errors or 'none'}; warnings: {warns or 'none'}",
        metadata={"max_psi": row["max_psi"], "prediction_drift": dg.MetadataValue.json(pred_drift)},
    )


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


@compute_asset(
    group_name="monitoring",
    ins={"days": dg.AssetIn("prediction_quality")},
    kinds={"html"},
    owners=ML_OWNERS,
    code_version=code_version(report, retraining),
    automation_condition=dg.AutomationCondition.eager(),
)
def monitoring_report(days: pd.DataFrame, monitor: MonitoringResource) -> dg.MaterializeResult:
    """One HTML page: quality and drift over time, retraining events marked."""
    history = days.sort_values("day").reset_index(drop=True)
    retrains = [
        {
            # a retrain without a monitored day (bootstrap, by hand) sits at its data's last day
            "day": r["day"] or r["data_window"].split("..")[-1],
            "reason": r["reason"],
            "outcome": r["decision"],
            "auc_before": r["auc_before"],
            "auc_after": r["auc_after"],
            "version": r["challenger_version"],
        }
        for r in retraining.read_retrains(monitor.retrains_url)
    ]
    out = report.render_report(history, retrains, monitor.url("report.html"))
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(out)),
            "days": dg.MetadataValue.int(len(history)),
            "retrains": dg.MetadataValue.int(len(retrains)),
        }
    )


assets = [prediction_quality, monitoring_report]
