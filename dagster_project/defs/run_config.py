"""Run config of `training_job`, keyed by the assets' own op names (the one place that knows them).

The CLI, the replay, the retraining sensors, the benchmarks and the tests build their run config
here instead of spelling asset names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_project.defs.features import online_features, training_set
from dagster_project.defs.training import flight_delay_model, promotion_gate
from dagster_project.features.engineering import parse_prediction_label
from dagster_project.monitoring import retraining


def training_set_features(feature_service: str, prediction_time: str) -> dict[str, Any]:
    """`training_set` config for a FeatureService and a prediction time label."""
    kind, lead = parse_prediction_label(prediction_time)
    return {
        "feature_service": feature_service,
        "prediction_time": kind,
        "prediction_lead_minutes": lead,
    }


def training_run_config(
    start_date: str,
    end_date: str,
    model: Mapping[str, Any] | None = None,
    promotion: Mapping[str, Any] | None = None,
    features: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on ``start_date..end_date``; ``model`` and ``promotion`` are the config of the
    model asset (trials, families, holdout) and of its promotion gate, ``features`` more
    `training_set` config (:func:`training_set_features`)."""
    ops: dict[str, Any] = {
        training_set.op.name: {
            "config": {"start_date": start_date, "end_date": end_date, **(features or {})}
        }
    }
    if model:
        ops[flight_delay_model.op.name] = {"config": dict(model)}
    if promotion:
        ops[promotion_gate.node_def.name] = {"config": dict(promotion)}
    return {"ops": ops}


def retrain_run_config(
    trigger: retraining.Trigger, policy: retraining.RetrainPolicy
) -> dict[str, Any]:
    """`training_job` run config for a retrain on the policy's window."""
    start, end = retraining.training_window(trigger.day, policy)
    return training_run_config(
        start,
        end,
        model={
            "n_trials": policy.n_trials,
            "holdout_days": policy.holdout_days,
            "validation_days": policy.validation_days,
        },
        features=training_set_features(policy.feature_service, policy.prediction_time),
    )


def intraday_day_run_config() -> dict[str, Any]:
    """`daily_loop_job` config for a day of the intraday replay: the online store's stream-fed
    views are left to the stream consumer (the day's batch rows would be ahead of its clock)."""
    return {"ops": {online_features.op.name: {"config": {"stream_views": False}}}}
