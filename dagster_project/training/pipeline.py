"""Training: time-based split, Optuna search per model family, MLflow runs, registration.

Nothing here imports Dagster; the `flight_delay_model` asset calls :func:`train_and_register`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from dagster_project.features import aggregates
from dagster_project.features.engineering import COLUMN_SOURCES, LABEL, prediction_label
from dagster_project.platform import compute_classes, metering, names
from dagster_project.platform.settings import TIMEZONE
from dagster_project.training import evaluation, models, portable, tracking
from dagster_project.training.preprocess import (
    CATEGORICAL,
    NUMERIC,
    features_of,
    input_frame,
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class TrainingOptions:
    model_kinds: tuple[str, ...] = models.KINDS
    n_trials: int = 6
    holdout_days: int = 31
    validation_days: int = 14
    torch_max_epochs: int = 6
    seed: int = 13
    threshold_policy: str = "base_rate"  # see evaluation.ThresholdPolicy
    miss_cost_ratio: float = 3.0  # for threshold_policy="cost"
    numeric: tuple[str, ...] = NUMERIC  # the model's numeric inputs (its FeatureService's)

    @property
    def policy(self) -> evaluation.ThresholdPolicy:
        return evaluation.ThresholdPolicy(self.threshold_policy, self.miss_cost_ratio)

    def __post_init__(self) -> None:
        self.policy  # noqa: B018  (an unknown policy or a bad ratio is refused here)
        unknown = set(self.model_kinds) - set(models.KINDS)
        if unknown or not self.model_kinds:
            raise ValueError(
                f"model_kinds must be a subset of {models.KINDS}, got {self.model_kinds}"
            )
        if self.n_trials < 1 or self.holdout_days < 1 or self.validation_days < 1:
            raise ValueError("n_trials, holdout_days and validation_days must be at least 1")


def training_set_spec(df: pd.DataFrame) -> tuple[str, str]:
    """(FeatureService, prediction time label) a training set was built with: what the
    `training_set` asset records on the frame; a frame without the record (built by hand) is
    read as v2 at the default lead when it has v2's columns, else as v1 at the day's start."""
    service = df.attrs.get("feature_service")
    when = df.attrs.get("prediction_time")
    if service and when:
        return str(service), str(when)
    if all(c in df.columns for c in NUMERIC):
        return names.FEATURE_SERVICE, prediction_label("lead")
    return tracking.LEGACY_FEATURE_SERVICE, tracking.LEGACY_PREDICTION_TIME


def flight_dates(df: pd.DataFrame) -> pd.Series:
    """Local (New York) scheduled departure date of each training row."""
    ts = pd.to_datetime(df["sched_dep_epoch_s"], unit="s", utc=True).dt.tz_convert(TIMEZONE)
    return ts.dt.date


@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    windows: dict[str, str] = field(default_factory=dict)


def time_split(df: pd.DataFrame, holdout_days: int, validation_days: int) -> Split:
    """Train on the oldest days, validate on the next ``validation_days``, hold out the last
    ``holdout_days``. By scheduled departure date, never at random."""
    days = flight_dates(df)
    last: date = days.max()
    holdout_start = last - timedelta(days=holdout_days - 1)
    val_start = holdout_start - timedelta(days=validation_days)
    parts = {
        "train": df[days < val_start],
        "validation": df[(days >= val_start) & (days < holdout_start)],
        "holdout": df[days >= holdout_start],
    }
    for name, part in parts.items():
        if part.empty or part[LABEL].nunique() < 2:
            raise ValueError(
                f"time split: the {name} window has {len(part)} rows and needs both classes; "
                f"training data covers {days.min()}..{last} (holdout {holdout_days} d, "
                f"validation {validation_days} d)"
            )
    windows = {
        name: f"{flight_dates(p).min()}..{flight_dates(p).max()}" for name, p in parts.items()
    }
    return Split(**{k: v.reset_index(drop=True) for k, v in parts.items()}, windows=windows)


def suggest(kind: str, trial: Any, options: TrainingOptions) -> dict[str, Any]:
    """The search space of each model family."""
    if kind == "xgboost":
        return {
            "max_depth": trial.suggest_int("max_depth", 3, 8),
            "eta": trial.suggest_float("eta", 0.03, 0.3, log=True),
            "subsample": trial.suggest_float("subsample", 0.6, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 20.0, log=True),
            "lambda": trial.suggest_float("lambda", 1e-3, 10.0, log=True),
            "num_boost_round": 400,
        }
    return {
        "hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
        "layers": trial.suggest_int("layers", 1, 3),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        "batch_size": 1024,
        "max_epochs": options.torch_max_epochs,
    }


@dataclass
class Candidate:
    kind: str
    model: models.DelayModel
    params: dict[str, Any]
    validation: evaluation.Evaluation
    trial_run_id: str


def tune(
    kind: str, split: Split, options: TrainingOptions, tags: dict[str, str], progress: Progress
) -> Candidate:
    """Optuna search over one family; every trial is a nested MLflow run. Maximises validation
    ROC AUC; the best trial's fitted model is kept (no refit)."""
    import mlflow
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    y_val = split.validation[LABEL].to_numpy()
    best: dict[str, Candidate] = {}

    def objective(trial: optuna.Trial) -> float:
        params = suggest(kind, trial, options)
        started = time.perf_counter()
        with mlflow.start_run(
            run_name=f"{kind}-trial-{trial.number}", nested=True, tags=tags | {"model_kind": kind}
        ) as run:
            model = models.FITTERS[kind](
                split.train, split.validation, params, progress, options.numeric
            )
            p = model.predict_proba(split.validation)
            ev = evaluation.evaluate(y_val, p, options.policy.pick(y_val, p))
            mlflow.log_params({f"{k}": v for k, v in model.params.items()})
            mlflow.log_metrics(ev.metrics("val_") | {"fit_seconds": time.perf_counter() - started})
        progress(
            f"{kind} trial {trial.number + 1}/{options.n_trials}: validation AUC "
            f"{ev.roc_auc:.4f}, log loss {ev.log_loss:.4f} ({time.perf_counter() - started:.1f}s)"
        )
        if kind not in best or ev.roc_auc > best[kind].validation.roc_auc:
            best[kind] = Candidate(kind, model, model.params, ev, run.info.run_id)
        return ev.roc_auc

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=options.seed),
        study_name=f"{kind}-search",
    )
    study.optimize(objective, n_trials=options.n_trials)
    return best[kind]


@dataclass
class TrainingOutcome:
    version: tracking.VersionInfo
    run_id: str
    kind: str
    threshold: float
    threshold_policy: str
    validation: evaluation.Evaluation
    holdout: evaluation.Evaluation
    candidates: dict[str, dict[str, float]]
    windows: dict[str, str]


REFERENCE_FILE = "features.parquet"  # logged under "reference/": monitoring's drift baseline
IMPORTANCE_FILE = "importance.json"  # logged under "reference/": what the drift alarm weighs


def reference_sample(
    model: models.DelayModel, split: Split, rows: int = 100_000, seed: int = 0
) -> pd.DataFrame:
    """What drift monitoring compares live traffic against: the model's inputs on its whole
    window (train, validation and holdout rows; a random sample of ``rows`` if there are more),
    each with its ``day`` (local date), its ``split`` and the model's ``probability`` (in sample
    on train rows, out of sample on the others). The days let monitoring calibrate each
    feature's drift bar on the window's own week-to-week variation."""
    parts = []
    for name in ("train", "validation", "holdout"):
        part = getattr(split, name)
        out = input_frame(part, model.preprocessor.numeric)
        out["probability"] = model.predict_proba(part)
        out["day"] = flight_dates(part).astype(str).to_numpy()
        out["split"] = name
        parts.append(out)
    reference = pd.concat(parts, ignore_index=True)
    if len(reference) > rows:
        reference = reference.sample(rows, random_state=seed).sort_index()
    return reference.reset_index(drop=True)


def feature_groups(numeric: tuple[str, ...] = NUMERIC) -> dict[str, tuple[str, ...]]:
    """The model's inputs grouped by the feature table they come from (its weather, a
    carrier's or a route's delay statistics, the plane); request-time features and entity
    keys are groups of one."""
    features = features_of(numeric)
    groups: dict[str, tuple[str, ...]] = {}
    for table, columns in (COLUMN_SOURCES | aggregates.COLUMN_SOURCES).items():
        members = tuple(c for c in features if c in columns and c not in CATEGORICAL)
        if members:
            groups[table] = members
    grouped = {c for members in groups.values() for c in members}
    return groups | {c: (c,) for c in features if c not in grouped}


def feature_importance(model: models.DelayModel, rows: pd.DataFrame) -> dict[str, Any]:
    """Permutation importance of the model's inputs on ``rows`` (the validation window), as
    the mean absolute change of the predicted probability
    (:func:`evaluation.permutation_sensitivity`): per group of :func:`feature_groups`
    (shuffled together), and per feature, its group's value shared in proportion to the
    members' own (equally when none of them moves the output alone)."""
    numeric = tuple(model.preprocessor.numeric)
    frame = input_frame(rows, numeric)
    groups = feature_groups(numeric)
    by_group = evaluation.permutation_sensitivity(model.predict_proba, frame, groups)
    alone = evaluation.permutation_sensitivity(
        model.predict_proba, frame, {c: (c,) for c in features_of(numeric)}, seed=1
    )
    features: dict[str, float] = {}
    for name, members in groups.items():
        own = sum(alone[c] for c in members)
        for c in members:
            share = alone[c] / own if own > 0 else 1.0 / len(members)
            features[c] = by_group[name] * share
    return {
        "groups": by_group,
        "features": features,
        "metric": "mean absolute change of the predicted probability when shuffled "
        "(validation rows)",
    }


def log_model(model: models.DelayModel, sample: pd.DataFrame, metadata: dict, kind: str) -> Any:
    """Log ``model`` to the active MLflow run as a ``pyfunc`` model with signature and input
    example (from ``sample``), the pyfunc's code (``code_paths``) and only the ``kind``'s
    requirements, so it loads without the project installed. Returns MLflow's ``ModelInfo``."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    example = input_frame(sample, model.preprocessor.numeric)
    signature = infer_signature(example, model.predict_proba(example))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        model.save(folder)
        code = portable.code_package(Path(tmp) / "code")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=models.FlightDelayPyfunc(),
            artifacts={"model_dir": str(folder)},
            code_paths=[str(code)],
            signature=signature,
            input_example=example.head(5),
            pip_requirements=portable.requirements(kind),
            metadata=metadata,
        )


def train_and_register(
    training_set: pd.DataFrame,
    options: TrainingOptions,
    lineage: tracking.Lineage,
    registry: tracking.Registry,
    progress: Progress = _quiet,
    compute_class: compute_classes.ComputeClass | None = None,
) -> TrainingOutcome:
    """Search every model family, keep the best on validation AUC, evaluate it on the holdout,
    log it to MLflow and register it as a new `flight_delay` version with alias `challenger`.
    The run and the version carry the training's resource usage and estimated cost on
    ``compute_class`` (default: the `training` group's class)."""
    import mlflow

    split = time_split(training_set, options.holdout_days, options.validation_days)
    progress(
        "split: "
        + ", ".join(f"{k} {v} ({len(getattr(split, k)):,} rows)" for k, v in split.windows.items())
    )
    tags = lineage.tags()
    cls = compute_class or compute_classes.load_profiles().for_group("training")
    with (
        mlflow.start_run(run_name=f"train {lineage.partition_range}", tags=tags) as parent,
        metering.Meter() as meter,
    ):
        mlflow.log_params(
            {
                "model_kinds": ",".join(options.model_kinds),
                "n_trials": options.n_trials,
                "holdout_days": options.holdout_days,
                "validation_days": options.validation_days,
                "features": ",".join(features_of(options.numeric)),
                "feature_service": lineage.feature_service,
                "prediction_time": lineage.prediction_time,
                "train_rows": len(split.train),
                "validation_rows": len(split.validation),
                "holdout_rows": len(split.holdout),
                "threshold_policy": options.policy.label,
            }
            | {f"{k}_window": v for k, v in split.windows.items()}
        )
        digests = portable.log_datasets(
            {"training": split.train, "validation": split.validation, "holdout": split.holdout},
            names.MODEL_NAME,
        )
        mlflow.set_tags({f"dataset_digest_{k}": v for k, v in digests.items()})
        found = [tune(k, split, options, tags, progress) for k in options.model_kinds]
        best = max(found, key=lambda c: c.validation.roc_auc)
        threshold = best.validation.threshold
        y_hold = split.holdout[LABEL].to_numpy()
        p_hold = best.model.predict_proba(split.holdout)
        holdout = evaluation.evaluate(y_hold, p_hold, threshold)
        candidates = {c.kind: c.validation.metrics("val_") for c in found}
        mlflow.log_params(
            {f"best_{k}": v for k, v in best.params.items()} | {"best_kind": best.kind}
        )
        mlflow.log_metrics(best.validation.metrics("val_") | holdout.metrics("holdout_"))
        mlflow.log_dict(holdout.as_dict(), "evaluation/holdout.json")
        mlflow.log_dict(best.validation.as_dict(), "evaluation/validation.json")
        mlflow.log_dict(candidates, "evaluation/candidates.json")
        with tempfile.TemporaryDirectory() as tmp:
            reference = reference_sample(best.model, split)
            reference.to_parquet(Path(tmp) / REFERENCE_FILE)
            mlflow.log_artifact(str(Path(tmp) / REFERENCE_FILE), "reference")
            importance = feature_importance(best.model, split.validation)
            (Path(tmp) / IMPORTANCE_FILE).write_text(json.dumps(importance, indent=1))
            mlflow.log_artifact(str(Path(tmp) / IMPORTANCE_FILE), "reference")
            plot = evaluation.plot_evaluation(
                y_hold,
                p_hold,
                holdout,
                f"{best.kind} on the holdout {split.windows['holdout']}",
                Path(tmp) / "holdout_evaluation.png",
            )
            mlflow.log_artifact(str(plot), "plots")
        info = log_model(
            best.model,
            split.validation.sample(min(200, len(split.validation)), random_state=0),
            {
                "model_kind": best.kind,
                "threshold": threshold,
                "threshold_policy": options.policy.label,
                **tags,
            },
            best.kind,
        )
        usage = meter.stop(cls)
        mlflow.log_metrics(usage.mlflow_metrics())
        version_tags = (
            tags
            | usage.mlflow_tags()
            | {
                "model_kind": best.kind,
                "threshold": f"{threshold:.6f}",
                "threshold_policy": options.policy.label,
                "holdout_window": split.windows["holdout"],
                "holdout_roc_auc": f"{holdout.roc_auc:.6f}",
                "best_trial_run_id": best.trial_run_id,
            }
        )
        version = registry.register(info.model_uri, parent.info.run_id, version_tags)
        registry.set_alias(names.CHALLENGER, version.version)
        mlflow.set_tags(
            {
                "registered_version": version.version,
                "model_kind": best.kind,
                "alias": names.CHALLENGER,
            }
            | usage.mlflow_tags()
        )
    progress(
        f"registered {registry.name} v{version.version} ({best.kind}) as challenger: holdout AUC "
        f"{holdout.roc_auc:.4f}"
    )
    return TrainingOutcome(
        version=version,
        run_id=parent.info.run_id,
        kind=best.kind,
        threshold=threshold,
        threshold_policy=options.policy.label,
        validation=best.validation,
        holdout=holdout,
        candidates=candidates,
        windows=split.windows,
    )
