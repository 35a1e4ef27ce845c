"""Monitoring math: prediction quality against delayed labels, and feature / prediction drift.

Plain numpy, pandas, scipy and scikit-learn (no Dagster): the monitoring assets call these
functions on the prediction log (JSON lines written by the serving app), the labels that land
a day later, and the champion's training set (the drift reference).

Population stability index (PSI), used for numbers and for categories::

    PSI = sum over bins i of (c_i - r_i) * ln(c_i / r_i)

where ``r_i`` and ``c_i`` are the shares of the reference and the current rows in bin (or
category) ``i``; an empty bin's share is replaced by ``EPSILON`` (1e-4) so the logarithm stays
finite. Rules of thumb: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm

from dagster_project.training.evaluation import calibration

EPSILON = 1e-4  # share given to an empty bin or a category one side never saw
MISSING = "__missing__"  # the category a missing categorical value counts as
OTHER = "__other__"  # the pooled bucket of rare and unseen categories in the chi-square test
MIN_EXPECTED = 5.0  # chi-square: categories expecting fewer current rows are pooled
DRIFT_COLUMNS = ("feature", "kind", "psi", "statistic", "p_value", "level")


DRIFT_MODES = ("calibrated", "fixed")


@dataclass(frozen=True)
class Thresholds:
    """When monitoring raises its voice (all of it is config).

    Fixed rule (``drift_mode="fixed"``, the rule before calibration): a feature warns at PSI
    ``psi_warn`` and errs at ``psi_error`` when the KS (numbers) or chi-square (categories)
    p-value is below ``ks_pvalue``; the alarm is an error on one of the retrain policy's
    important features. Calibrated rule (the default, :mod:`monitoring.drift`): each feature's
    bars are the ``drift_warn_quantile`` / ``drift_error_quantile`` of its distance (KS or total
    variation) between windows of ``drift_window_days`` days of the reference and the rest of
    it (never below ``drift_floor``, warn half of it), an error also needs p < ``ks_pvalue``,
    and the alarm fires when the features at error level carry at least
    ``drift_importance_share`` of the champion's importance. A day's quality is judged only
    when it has at least ``min_labeled`` labeled predictions (fewer: reported, not judged).
    """

    psi_warn: float = 0.1
    psi_error: float = 0.25
    ks_pvalue: float = 0.01
    auc_floor: float = 0.65
    # One day's delay rate swings with the weather: a daily ECE under 0.08 is rare even for a
    # good model (0.11 to 0.30 seen in July 2013), so the daily bar is looser than the gate's.
    calibration_error_max: float = 0.15
    min_labeled: int = 200
    drift_mode: str = "calibrated"
    drift_window_days: int = 7
    drift_warn_quantile: float = 0.9
    drift_error_quantile: float = 1.0  # 1.0: beyond the reference's own most drifted window
    drift_importance_share: float = 0.1
    drift_floor: float = 0.1  # no error bar below this distance (10 % of the mass moved)
    drift_min_window_rows: int = 100  # a reference window with fewer rows is not a draw
    drift_min_windows: int = 5  # fewer draws: the fixed bars apply
    prediction_in_alarm: bool = False  # the score distribution is judged beside, not in, it
    # Alarms judged against outcomes (monitoring/outcomes.py): an alarm is followed by a drop
    # starting within alarm_horizon_days; a drop day ends drop_window_days judged days whose
    # mean AUC is below the floor or drop_auc_margin below the median of the
    # drop_baseline_days judged days before them.
    alarm_horizon_days: int = 7
    drop_auc_margin: float = 0.03
    drop_baseline_days: int = 28
    drop_window_days: int = 7

    def __post_init__(self) -> None:
        if self.drift_mode not in DRIFT_MODES:
            raise ValueError(f"drift_mode must be one of {DRIFT_MODES}, got {self.drift_mode!r}")
        for name in (
            "drift_warn_quantile",
            "drift_error_quantile",
            "drift_importance_share",
            "drift_floor",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.drift_window_days < 1:
            raise ValueError("drift_window_days must be at least 1")


def _numbers(values: Any) -> np.ndarray:
    """A float array with NaNs (and anything non-numeric) dropped."""
    array = np.asarray(values)
    if array.dtype.kind in "fiub":  # already numbers: no per-value conversion
        out = array.astype("float64").reshape(-1)
    else:
        series = pd.Series(np.asarray(values, dtype=object).reshape(-1))
        out = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return out[~np.isnan(out)]


def _psi_from_shares(reference: np.ndarray, current: np.ndarray) -> float:
    r = np.where(reference == 0, EPSILON, reference)
    c = np.where(current == 0, EPSILON, current)
    return float(np.sum((c - r) * np.log(c / r)))


def bin_cuts(reference: Any, bins: int = 10) -> np.ndarray:
    """Inner bin edges of :func:`psi`: the reference's quantiles at 1/bins, 2/bins, ...
    (deduplicated, so a discrete feature gets fewer bins); a constant reference gets two cuts
    (below, at, above its value). Empty for an empty reference."""
    ref = _numbers(reference)
    if len(ref) == 0:
        return np.zeros(0)
    cuts = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    if len(cuts) == 1 and ref.min() == ref.max():  # constant: below / at / above the value
        cuts = np.array([cuts[0], np.nextafter(cuts[0], np.inf)])
    return cuts


def bin_index(values: Any, cuts: np.ndarray) -> np.ndarray:
    """The bin of each number (NaNs dropped), bins closed on the left: ``[edge_i, edge_i+1)``."""
    return np.searchsorted(cuts, _numbers(values), side="right")


def psi_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI between two vectors of counts over the same bins (0.0 when either is empty)."""
    r_total, c_total = float(np.sum(reference)), float(np.sum(current))
    if r_total <= 0 or c_total <= 0:
        return 0.0
    return _psi_from_shares(
        np.asarray(reference, dtype="float64") / r_total,
        np.asarray(current, dtype="float64") / c_total,
    )


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (see the module doc).

    Bin edges are the reference's quantiles at 1/bins, 2/bins, ... (deduplicated, so a
    discrete feature gets fewer bins) with outer edges -inf and +inf, so every value lands in
    a bin; bins are closed on the left: ``[edge_i, edge_i+1)``. A constant reference gets three
    bins (below, at, above its value). NaNs are dropped; 0.0 when either side is empty.
    """
    ref, cur = _numbers(reference), _numbers(current)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0
    cuts = bin_cuts(ref, bins)
    n_bins = len(cuts) + 1
    return psi_from_counts(
        np.bincount(bin_index(ref, cuts), minlength=n_bins),
        np.bincount(bin_index(cur, cuts), minlength=n_bins),
    )


def category_labels(values: Any) -> pd.Series:
    """Category labels as strings; a missing value is its own category (``__missing__``)."""
    s = pd.Series(values, dtype=object)
    return s.where(s.notna(), MISSING).astype(str)


def categorical_psi(reference: pd.Series, current: pd.Series) -> float:
    """PSI over category shares, on the union of both sides' categories (a category one side
    never saw gets share ``EPSILON`` there). 0.0 when either side is empty."""
    ref, cur = category_labels(reference), category_labels(current)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0
    ref_share = ref.value_counts(normalize=True)
    cur_share = cur.value_counts(normalize=True)
    union = sorted(set(ref_share.index) | set(cur_share.index))
    return _psi_from_shares(
        ref_share.reindex(union, fill_value=0.0).to_numpy(dtype="float64"),
        cur_share.reindex(union, fill_value=0.0).to_numpy(dtype="float64"),
    )


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (NaNs dropped); (0.0, 1.0) when
    either side is empty."""
    ref, cur = _numbers(reference), _numbers(current)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0, 1.0
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def chi_square(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Chi-square goodness of fit of the current category counts to the reference's shares.

    Reference categories that would expect fewer than 5 current rows, and categories the
    reference never saw, are pooled into one "other" bucket (its expected share floored at
    ``EPSILON``, so unseen categories count as strong evidence of drift rather than dividing by
    zero). Missing values are a category. (0.0, 1.0) when either side is empty or fewer than
    two buckets remain.
    """
    ref, cur = category_labels(reference), category_labels(current)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0, 1.0
    n = len(cur)
    ref_share = ref.value_counts(normalize=True)
    cur_count = cur.value_counts()
    kept = [c for c in ref_share.index if ref_share[c] * n >= MIN_EXPECTED]
    observed = [float(cur_count.get(c, 0)) for c in kept]
    expected = [float(ref_share[c]) for c in kept]
    other_observed = float(n - sum(observed))
    other_share = float(1.0 - sum(expected))
    if other_observed > 0 or other_share > 1e-12:
        observed.append(other_observed)
        expected.append(max(other_share, EPSILON))
    if len(observed) < 2:
        return 0.0, 1.0
    shares = np.asarray(expected) / np.sum(expected)
    result = stats.chisquare(np.asarray(observed), shares * n)
    return float(result.statistic), float(result.pvalue)


def _level(psi_value: float, p_value: float, thresholds: Thresholds) -> str:
    if psi_value >= thresholds.psi_error and p_value < thresholds.ks_pvalue:
        return "error"
    if psi_value >= thresholds.psi_warn:
        return "warn"
    return "ok"


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    thresholds: Thresholds,
) -> pd.DataFrame:
    """Drift of each feature between the reference (the champion's training rows) and the
    current rows: PSI plus KS (numbers) or chi-square (categories).

    One row per feature present in both frames, columns ``feature, kind, psi, statistic,
    p_value, level``, sorted by PSI descending. ``level`` is ``error`` when PSI >= psi_error
    and the test's p-value < ks_pvalue, ``warn`` when PSI >= psi_warn (a big shift on too few
    rows to be significant stays a warning), else ``ok``.
    """
    rows: list[dict[str, Any]] = []
    for name in numeric:
        if name not in reference.columns or name not in current.columns:
            continue
        ref, cur = reference[name].to_numpy(), current[name].to_numpy()
        value = psi(ref, cur)
        statistic, p_value = ks(ref, cur)
        rows.append(
            {
                "feature": name,
                "kind": "numeric",
                "psi": value,
                "statistic": statistic,
                "p_value": p_value,
                "level": _level(value, p_value, thresholds),
            }
        )
    for name in categorical:
        if name not in reference.columns or name not in current.columns:
            continue
        value = categorical_psi(reference[name], current[name])
        statistic, p_value = chi_square(reference[name], current[name])
        rows.append(
            {
                "feature": name,
                "kind": "categorical",
                "psi": value,
                "statistic": statistic,
                "p_value": p_value,
                "level": _level(value, p_value, thresholds),
            }
        )
    if not rows:
        return pd.DataFrame(
            {
                "feature": pd.Series(dtype=object),
                "kind": pd.Series(dtype=object),
                "psi": pd.Series(dtype="float64"),
                "statistic": pd.Series(dtype="float64"),
                "p_value": pd.Series(dtype="float64"),
                "level": pd.Series(dtype=object),
            }
        )
    out = pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))
    return out.sort_values("psi", ascending=False, kind="mergesort").reset_index(drop=True)


def prediction_drift(reference_probs: np.ndarray, current_probs: np.ndarray) -> dict[str, float]:
    """Drift of the predicted probabilities: ``psi``, ``ks_statistic``, ``ks_p_value``,
    ``reference_mean`` and ``current_mean`` (NaN for an empty side)."""
    ref, cur = _numbers(reference_probs), _numbers(current_probs)
    statistic, p_value = ks(ref, cur)
    return {
        "psi": psi(ref, cur),
        "ks_statistic": statistic,
        "ks_p_value": p_value,
        "reference_mean": float(ref.mean()) if len(ref) else float("nan"),
        "current_mean": float(cur.mean()) if len(cur) else float("nan"),
    }


def daily_quality(labeled: pd.DataFrame, thresholds: Thresholds) -> dict[str, Any]:
    """Quality of one day's predictions against their labels.

    ``labeled`` has ``probability``, ``delayed`` (the decision) and ``label`` (0/1; missing
    for rows without an outcome yet). Volume, predicted positive rate and mean probability
    count every row; the label metrics (``positive_rate``, ``roc_auc``, ``brier``,
    ``calibration_error``, ``accuracy``) only labeled rows and are None without any
    (``roc_auc`` also with a single class). ``judged`` is labeled >= min_labeled; only then
    does ``breaches`` list what is out of bounds ("ROC AUC 0.612 below floor 0.65").
    ``calibration_curve`` holds (mean predicted, observed share, rows) per non-empty bin.
    """
    volume = len(labeled)
    p_all = pd.to_numeric(labeled["probability"], errors="coerce").to_numpy(dtype="float64")
    decided = labeled["delayed"].astype(bool).to_numpy() if volume else np.zeros(0, dtype=bool)
    label = (
        pd.to_numeric(labeled["label"], errors="coerce")
        if "label" in labeled.columns
        else pd.Series(np.nan, index=labeled.index)
    )
    has = (label.notna() & ~np.isnan(p_all)).to_numpy()
    y = label.to_numpy(dtype="float64", na_value=np.nan)[has].astype("int64")
    p = p_all[has]
    n_labeled = len(y)
    judged = n_labeled >= thresholds.min_labeled

    roc_auc: float | None = None
    brier = ece = positive_rate = accuracy = None
    curve: list[tuple[float, float, int]] = []
    if n_labeled:
        positive_rate = float(y.mean())
        brier = float(skm.brier_score_loss(y, np.clip(p, 0.0, 1.0), pos_label=1))
        ece_value, raw_curve = calibration(y, p)
        ece = float(ece_value)
        curve = [(float(m), float(o), int(k)) for m, o, k in raw_curve]
        accuracy = float((decided[has] == (y == 1)).mean())
        if len(np.unique(y)) == 2:
            roc_auc = float(skm.roc_auc_score(y, p))

    breaches: list[str] = []
    if judged:
        if roc_auc is not None and roc_auc < thresholds.auc_floor:
            breaches.append(f"ROC AUC {roc_auc:.3f} below floor {thresholds.auc_floor:g}")
        if ece is not None and ece > thresholds.calibration_error_max:
            breaches.append(
                f"calibration error {ece:.3f} above max {thresholds.calibration_error_max:g}"
            )
    finite = p_all[~np.isnan(p_all)]
    return {
        "volume": volume,
        "labeled": n_labeled,
        "positive_rate": positive_rate,
        "predicted_positive_rate": float(decided.mean()) if volume else None,
        "mean_probability": float(finite.mean()) if len(finite) else None,
        "roc_auc": roc_auc,
        "brier": brier,
        "calibration_error": ece,
        "accuracy": accuracy,
        "judged": judged,
        "breaches": breaches,
        "calibration_curve": curve,
    }


PREDICTION_COLUMNS = (
    "flight_id",
    "scheduled_date",
    "logged_at",
    "as_of",
    "feature_service",
    "probability",
    "delayed",
    "threshold",
    "model_version",
    "model_kind",
)


def predictions_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Flatten prediction-log records (see the serving app) into one row per prediction:
    ``flight_id`` (from ``flight``), ``scheduled_date``, ``logged_at``, ``probability``,
    ``delayed``, ``threshold``, ``model_version``, ``model_kind``, ``request_id`` and
    ``fallback``, then one column per ``features`` key (a null feature is NaN; a feature
    named like a column above gets a ``feature_`` prefix)."""
    base = (*PREDICTION_COLUMNS, "request_id", "fallback")
    rows = []
    for r in records:
        flight = r.get("flight") or {}
        row: dict[str, Any] = {c: r.get(c) for c in base}
        row["flight_id"] = flight.get("flight_id", r.get("flight_id"))
        for name, value in (r.get("features") or {}).items():
            row[f"feature_{name}" if name in base else name] = value
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in base:
        if c not in df.columns:
            df[c] = pd.Series(dtype=object)
    df["probability"] = pd.to_numeric(df["probability"], errors="coerce").astype("float64")
    df["threshold"] = pd.to_numeric(df["threshold"], errors="coerce").astype("float64")
    df["delayed"] = df["delayed"].fillna(False).astype(bool)
    df["model_version"] = df["model_version"].map(lambda v: None if v is None else str(v))
    for c in df.columns:
        if c in base:
            continue
        values = df[c].dropna()
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def join_labels(predictions: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Predictions joined with their labels on ``flight_id`` (inner join).

    A flight predicted several times keeps its last prediction (latest ``logged_at`` when the
    column is there, else the last row). Outcomes without a label (cancelled flights: NaN
    label, or ``cancelled`` true when that column exists) and predictions without a flight id
    are dropped. ``flight_id`` is compared as text; ``label`` comes back as int 0/1.
    """
    preds = predictions[predictions["flight_id"].notna()].copy()
    preds["flight_id"] = preds["flight_id"].astype(str)
    if "logged_at" in preds.columns:
        order = pd.to_datetime(preds["logged_at"], utc=True, errors="coerce", format="ISO8601")
        preds = preds.assign(_order=order).sort_values(
            "_order", kind="mergesort", na_position="first"
        )
        preds = preds.drop(columns="_order")
    preds = preds.drop_duplicates("flight_id", keep="last")

    out = outcomes.copy()
    out["label"] = pd.to_numeric(out["label"], errors="coerce")
    keep = out["label"].notna() & out["flight_id"].notna()
    if "cancelled" in out.columns:
        keep &= ~out["cancelled"].fillna(False).astype(bool)
    out = out[keep]
    out = pd.DataFrame(
        {"flight_id": out["flight_id"].astype(str), "label": out["label"].astype("int64")}
    ).drop_duplicates("flight_id", keep="last")
    if "label" in preds.columns:
        preds = preds.drop(columns="label")
    return preds.merge(out, on="flight_id", how="inner", validate="one_to_one").reset_index(
        drop=True
    )
