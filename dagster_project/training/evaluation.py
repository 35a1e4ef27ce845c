"""Model quality: metrics, the decision threshold, calibration and the plots people look at."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm


@dataclass(frozen=True)
class Evaluation:
    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float
    calibration_error: float  # expected calibration error over 10 equal-width bins
    threshold: float
    precision: float
    recall: float
    f1: float
    positive_rate: float
    predicted_positive_rate: float
    rows: int
    confusion: tuple[int, int, int, int]  # tn, fp, fn, tp at the threshold
    calibration_curve: tuple[tuple[float, float, int], ...]  # (mean predicted, observed, n)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The scalar metrics, for MLflow and Dagster metadata."""
        names = (
            "roc_auc",
            "pr_auc",
            "log_loss",
            "brier",
            "calibration_error",
            "threshold",
            "precision",
            "recall",
            "f1",
            "positive_rate",
            "predicted_positive_rate",
        )
        return {f"{prefix}{n}": float(getattr(self, n)) for n in names}

    def as_dict(self) -> dict[str, Any]:
        tn, fp, fn, tp = self.confusion
        return {
            **self.metrics(),
            "rows": self.rows,
            "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
            "calibration_curve": [
                {"mean_predicted": p, "observed": o, "count": n}
                for p, o, n in self.calibration_curve
            ],
        }


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut that maximises F1 (chosen on validation, never on the holdout)."""
    precision, recall, thresholds = skm.precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    if len(thresholds) == 0:
        return 0.5
    return float(thresholds[int(np.argmax(f1[:-1]))])


THRESHOLD_POLICIES = ("base_rate", "cost", "f1")


def _cut_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores in descending order, and for each "flag everything scoring at least this" cut
    (only at the end of a run of tied scores): how many are flagged and how many of those
    are delayed."""
    order = np.argsort(-p, kind="stable")
    scores, labels = p[order], y[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    flagged = np.flatnonzero(last_of_tie) + 1
    return scores[flagged - 1], flagged, np.cumsum(labels)[flagged - 1]


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the decision threshold is chosen, on the validation window (never the holdout).

    - ``base_rate`` (the default): flag as many flights as are delayed, so the predicted
      delayed share matches the validation window's base rate;
    - ``cost``: minimise ``miss_cost_ratio`` x missed delays + false alarms (a missed delay
      costs ``miss_cost_ratio`` false alarms);
    - ``f1``: maximise F1 (the earlier rule; it flags far more flights than are delayed).
    """

    name: str = "base_rate"
    miss_cost_ratio: float = 3.0

    def __post_init__(self) -> None:
        if self.name not in THRESHOLD_POLICIES:
            raise ValueError(
                f"threshold_policy must be one of {THRESHOLD_POLICIES}, got {self.name!r}"
            )
        if not self.miss_cost_ratio > 0:
            raise ValueError(f"miss_cost_ratio must be positive, got {self.miss_cost_ratio}")

    @property
    def label(self) -> str:
        """What the model version, its metadata and every prediction name the rule by."""
        return f"cost:{self.miss_cost_ratio:g}" if self.name == "cost" else self.name

    def pick(self, y: np.ndarray, p: np.ndarray) -> float:
        y = np.asarray(y, dtype="int64")
        p = np.asarray(p, dtype="float64")
        if self.name == "f1":
            return best_f1_threshold(y, p)
        scores, flagged, hits = _cut_points(y, p)
        if self.name == "base_rate":
            # the cut whose flagged share is nearest the share delayed
            i = int(np.argmin(np.abs(flagged - y.sum())))
        else:
            misses = y.sum() - hits
            false_alarms = flagged - hits
            cost = self.miss_cost_ratio * misses + false_alarms
            i = int(np.argmin(cost))
            if self.miss_cost_ratio * y.sum() <= cost[i]:  # flagging nothing is cheaper
                return float(np.nextafter(scores[0], np.inf))
        return float(scores[i])


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[float, list]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    curve, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        if n == 0:
            continue
        mean_p, observed = float(p[mask].mean()), float(y[mask].mean())
        curve.append((mean_p, observed, n))
        ece += n / len(p) * abs(mean_p - observed)
    return float(ece), curve


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float) -> Evaluation:
    y = np.asarray(y, dtype="int64")
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    if len(np.unique(y)) < 2:
        raise ValueError(f"cannot evaluate on {len(y)} rows holding a single class")
    pred = (p >= threshold).astype("int64")
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[0, 1]).ravel())
    ece, curve = calibration(y, p)
    return Evaluation(
        roc_auc=float(skm.roc_auc_score(y, p)),
        pr_auc=float(skm.average_precision_score(y, p)),
        log_loss=float(skm.log_loss(y, p, labels=[0, 1])),
        brier=float(skm.brier_score_loss(y, p)),
        calibration_error=ece,
        threshold=float(threshold),
        precision=float(skm.precision_score(y, pred, zero_division=0)),
        recall=float(skm.recall_score(y, pred, zero_division=0)),
        f1=float(skm.f1_score(y, pred, zero_division=0)),
        positive_rate=float(y.mean()),
        predicted_positive_rate=float(pred.mean()),
        rows=len(y),
        confusion=(tn, fp, fn, tp),
        calibration_curve=tuple(curve),
    )


def permutation_sensitivity(
    predict: Any,
    frame: Any,
    groups: Mapping[str, Sequence[str]],
    seed: int = 0,
) -> dict[str, float]:
    """How much a model's output depends on each group of columns: the mean absolute change
    of the predicted probability over ``frame``'s rows when the group's values are shuffled
    across rows together (one permutation per group, seeded), the other columns kept.

    This is permutation importance measured on the output rather than on a metric: it needs
    no labels, and it counts a feature that moves every score of a day up or down (weather,
    a carrier's recent delays) as much as one that ranks flights within a day, which is what
    matters when that feature drifts. Shuffling correlated columns together keeps a group's
    members from standing in for each other. ``predict`` maps a frame to probabilities."""
    rng = np.random.default_rng(seed)
    base = np.asarray(predict(frame), dtype="float64").reshape(-1)
    out: dict[str, float] = {}
    for name, columns in groups.items():
        order = rng.permutation(len(frame))
        shuffled = frame.copy()
        for column in columns:
            shuffled[column] = frame[column].to_numpy()[order]
        p = np.asarray(predict(shuffled), dtype="float64").reshape(-1)
        out[str(name)] = float(np.mean(np.abs(p - base))) if len(base) else 0.0
    return out


def plot_evaluation(y: np.ndarray, p: np.ndarray, ev: Evaluation, title: str, out: Path) -> Path:
    """One PNG with the ROC curve, precision-recall curve, calibration curve and confusion matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    fpr, tpr, _ = skm.roc_curve(y, p)
    axes[0].plot(fpr, tpr, label=f"AUC {ev.roc_auc:.3f}")
    axes[0].plot([0, 1], [0, 1], ls="--", c="grey")
    axes[0].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    prec, rec, _ = skm.precision_recall_curve(y, p)
    axes[1].plot(rec, prec, label=f"AP {ev.pr_auc:.3f}")
    axes[1].axhline(ev.positive_rate, ls="--", c="grey", label="base rate")
    axes[1].set(title="Precision-recall", xlabel="recall", ylabel="precision")
    means = [c[0] for c in ev.calibration_curve]
    observed = [c[1] for c in ev.calibration_curve]
    axes[2].plot([0, 1], [0, 1], ls="--", c="grey")
    axes[2].plot(means, observed, marker="o", label=f"ECE {ev.calibration_error:.3f}")
    axes[2].set(title="Calibration", xlabel="mean predicted", ylabel="observed delayed share")
    for ax in axes[:3]:
        ax.legend(loc="best")
    tn, fp, fn, tp = ev.confusion
    grid = np.array([[tn, fp], [fn, tp]])
    axes[3].imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        axes[3].text(j, i, f"{v:,}", ha="center", va="center")
    axes[3].set(
        title=f"Confusion at threshold {ev.threshold:.2f}",
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["on time", "delayed"],
        yticklabels=["on time", "delayed"],
        xlabel="predicted",
        ylabel="actual",
    )
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
