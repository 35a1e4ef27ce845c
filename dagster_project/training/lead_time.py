"""How good a model is as a function of how early it scores: its holdout ROC AUC with the
features as of each prediction time (the day's start, 180, 120, 60 and 30 minutes before the
scheduled departure), each built by the offline store's point-in-time join."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.features import engineering
from dagster_project.training import evaluation
from dagster_project.training.promotion import model_input

LEADS: tuple[str, ...] = ("day_start", "lead_180", "lead_120", "lead_60", "lead_30")

# (entity rows, FeatureService) -> point-in-time rows (FeatureStoreClient.historical_features)
Historical = Callable[[pd.DataFrame, str], pd.DataFrame]


def minutes_before(label: str) -> int | None:
    kind, lead = engineering.parse_prediction_label(label)
    return lead if kind == "lead" else None


def auc_by_lead(
    model: Any,
    flights: pd.DataFrame,
    service: str,
    historical: Historical,
    leads: Sequence[str] = LEADS,
) -> pd.DataFrame:
    """One row per prediction time: rows scored, positive rate and ROC AUC of ``model`` (an
    MLflow pyfunc) on ``flights`` (validated flights of the holdout window)."""
    rows = []
    for label in leads:
        kind, lead = engineering.parse_prediction_label(label)
        entities = engineering.training_entities(flights, kind, lead)
        frame = historical(entities, service)
        y = frame[engineering.LABEL].to_numpy()
        p = np.asarray(model.predict(model_input(model, frame)), dtype="float64").reshape(-1)
        rows.append(
            {
                "prediction_time": label,
                "minutes_before_departure": minutes_before(label),
                "rows": len(frame),
                "positive_rate": float(y.mean()) if len(y) else float("nan"),
                "roc_auc": evaluation.evaluate(y, p, 0.5).roc_auc,
            }
        )
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, title: str, path: Path) -> Path:
    """AUC against the prediction time, earliest on the left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    labels = [
        "day start" if m is None or m != m else f"{int(m)} min"
        for m in table["minutes_before_departure"]
    ]
    ax.plot(labels, table["roc_auc"], marker="o")
    for x, y in zip(labels, table["roc_auc"], strict=True):
        ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.margins(y=0.2)  # room for the labels above the points
    ax.set_xlabel("prediction time (before the scheduled departure)")
    ax.set_ylabel("holdout ROC AUC")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tag_value(table: pd.DataFrame) -> str:
    """The table as one registry tag: ``day_start=0.6686,lead_180=0.7589,...``."""
    return ",".join(f"{r.prediction_time}={r.roc_auc:.4f}" for r in table.itertuples(index=False))
