"""Drift that means something: bars calibrated on the reference window's own variation.

A fixed PSI bar (0.1 / 0.25) is crossed every day by features that move week to week by nature
(7- and 28-day delay statistics, a week of weather: one observation per airport and day, so a
week fills few of the reference's bins and PSI's empty-bin terms alone exceed the bar), and by
calendar features whose support differs from any training window by construction (the month):
such an alarm is a cadence, not a signal. Here, instead:

* **The statistic** is the distance between the current rows' distribution and the
  reference's: for numbers the Kolmogorov-Smirnov distance (the largest gap between the two
  cumulative shares, on the reference's percentiles), for categories the total variation
  distance (half the sum of the share differences). Both lie in [0, 1], neither blows up on an
  empty bin, and a week of values beyond anything in the reference scores near 1.
* **Calendar-bound features** (:data:`CALENDAR_BOUND`) are left out of the alarm: their drift is
  still computed and shown, marked ``excluded``, with the reason.
* **Each feature's bar is calibrated** on the reference (the champion's training window, one
  row per flight with its ``day``): for every window of ``window_days`` consecutive days inside
  it, the distance of that window's rows from the rest of the reference (the window left out)
  is one draw of "how far a stretch of days strays from the others when nothing is wrong". The
  window has as many days as the current traffic covers (the trailing week, fewer at a
  replay's start). A feature warns when today's distance reaches the ``drift_warn_quantile`` of
  those draws and errs when it reaches the ``drift_error_quantile`` (and the KS / chi-square
  test is significant at ``ks_pvalue``); neither bar is below ``drift_floor`` (warn: half of
  it), so a feature that never moved inside the reference does not alarm on a negligible shift.
* **The alarm weighs features by their importance to the champion** (permutation importance,
  logged with the model): it fires when the features at error level carry at least
  ``drift_importance_share`` of the importance of the features in the alarm. Without logged
  importance every feature weighs the same (and the metadata says so).
* **Prediction drift** (the distribution of the champion's scores) is calibrated the same way,
  on the reference's out-of-sample days (validation and holdout: on its training rows a model
  is more confident than anywhere else), and reported beside the features; with
  ``prediction_in_alarm`` its error level raises the alarm too.

PSI is still computed for every feature (the ``psi`` column, and the fixed rule of
:func:`measures.feature_drift` that came before). Plain numpy and pandas; no Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.monitoring import measures
from dagster_project.monitoring.measures import Thresholds

DAY = "day"  # reference column: the flight's local (New York) date, ISO
SPLIT = "split"  # reference column: train, validation or holdout
PROBABILITY = "probability"  # reference column: the model's score
PREDICTION = "prediction"  # the name prediction drift goes by in the tables
OUT_OF_SAMPLE = ("validation", "holdout")
FINE_BINS = 100  # the reference's percentiles: where the KS distance is measured
# Left out of the alarm, with the reason the check's metadata gives.
CALENDAR_BOUND: dict[str, str] = {
    "dep_month": (
        "calendar-bound: the trailing week's month lies outside the reference window's months "
        "by construction (a seasonal comparison needs a year of history); shown, not alarmed"
    ),
}
COLUMNS = (
    "feature",
    "kind",
    "distance",
    "psi",
    "p_value",
    "warn_bar",
    "error_bar",
    "ratio",
    "weight",
    "level",
)


@dataclass(frozen=True)
class Bar:
    """One feature's calibrated bars, the draws they came from, and where it is measured."""

    feature: str
    kind: str  # numeric, categorical or prediction
    warn: float
    error: float
    windows: int  # reference windows drawn (0: too few rows or days; the floor applies)
    median: float  # of the draws (nan without any)
    maximum: float
    cuts: tuple[float, ...] = ()  # numbers: the reference's percentiles

    def as_dict(self) -> dict[str, Any]:
        return {
            "warn": round(self.warn, 4),
            "error": round(self.error, 4),
            "windows": self.windows,
            "median": None if np.isnan(self.median) else round(self.median, 4),
            "max": None if np.isnan(self.maximum) else round(self.maximum, 4),
        }


@dataclass(frozen=True)
class Calibration:
    """Per-feature bars, the features left out of the alarm and the importance weights."""

    bars: dict[str, Bar]
    excluded: dict[str, str]
    weights: dict[str, float]  # over the features in the alarm, summing to 1
    weights_source: str
    window_days: int
    reference_days: str  # first..last day of the reference
    prediction: Bar | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the check's metadata shows: how the bars were made, and each bar."""
        return {
            "statistic": "KS distance (numbers), total variation distance (categories)",
            "reference_days": self.reference_days,
            "window_days": self.window_days,
            "weights_source": self.weights_source,
            "excluded": dict(self.excluded),
            "bars": {name: bar.as_dict() for name, bar in self.bars.items()},
            "prediction": self.prediction.as_dict() if self.prediction else None,
            "notes": list(self.notes),
        }


def ks_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Largest gap between the cumulative shares of two count vectors over the same ordered
    bins (the two-sample KS statistic measured at the bins' edges); 0.0 when either is empty."""
    r_total, c_total = float(np.sum(reference)), float(np.sum(current))
    if r_total <= 0 or c_total <= 0:
        return 0.0
    gap = np.cumsum(current) / c_total - np.cumsum(reference) / r_total
    return float(np.max(np.abs(gap)))


def tv_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Total variation distance between two count vectors over the same categories: half the
    sum of the share differences (0: the same mix, 1: nothing in common); 0.0 when either is
    empty."""
    r_total, c_total = float(np.sum(reference)), float(np.sum(current))
    if r_total <= 0 or c_total <= 0:
        return 0.0
    return float(0.5 * np.sum(np.abs(current / c_total - reference / r_total)))


def _day_numbers(days: pd.Series) -> np.ndarray:
    """Days as integers (days since the first one); the reference's ``day`` may be text,
    ``date`` or timestamps."""
    ordinals = np.array([date.fromisoformat(str(d)[:10]).toordinal() for d in days], dtype="int64")
    return ordinals - (ordinals.min() if len(ordinals) else 0)


def _window_counts(
    day_numbers: np.ndarray, codes: np.ndarray, n_codes: int, window: int, min_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """The counts per code of every window of ``window`` consecutive days (rows: windows with at
    least ``min_rows`` rows) and of the whole reference."""
    total = np.bincount(codes, minlength=n_codes).astype("float64")
    if len(codes) == 0:
        return np.zeros((0, n_codes)), total
    n_days = int(day_numbers.max()) + 1
    if n_days < window:
        return np.zeros((0, n_codes)), total
    daily = np.bincount(day_numbers * n_codes + codes, minlength=n_days * n_codes).reshape(
        n_days, n_codes
    )
    running = np.vstack([np.zeros((1, n_codes)), np.cumsum(daily, axis=0)])
    windows = running[window:] - running[:-window]
    return windows[windows.sum(axis=1) >= min_rows], total


def _numbers(values: Any) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )


def fine_cuts(values: Any, bins: int = FINE_BINS) -> np.ndarray:
    """The reference's percentiles (deduplicated): the edges the KS distance is measured at."""
    x = _numbers(values)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return np.zeros(0)
    return np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def _bar(
    name: str, kind: str, draws: np.ndarray, t: Thresholds, cuts: np.ndarray | None = None
) -> Bar:
    edges = tuple(float(c) for c in cuts) if cuts is not None else ()
    floor_warn, floor_error = t.drift_floor / 2.0, t.drift_floor
    if len(draws) < t.drift_min_windows:
        return Bar(name, kind, floor_warn, floor_error, len(draws), np.nan, np.nan, edges)
    return Bar(
        name,
        kind,
        warn=max(floor_warn, float(np.quantile(draws, t.drift_warn_quantile))),
        error=max(floor_error, float(np.quantile(draws, t.drift_error_quantile))),
        windows=len(draws),
        median=float(np.median(draws)),
        maximum=float(draws.max()),
        cuts=edges,
    )


def _numeric_bar(name: str, kind: str, values: Any, days: np.ndarray, t: Thresholds) -> Bar:
    x = _numbers(values)
    keep = ~np.isnan(x)
    cuts = fine_cuts(x[keep])
    codes = np.searchsorted(cuts, x[keep], side="right")
    windows, total = _window_counts(
        days[keep], codes, len(cuts) + 1, t.drift_window_days, t.drift_min_window_rows
    )
    draws = np.array([ks_distance(total - w, w) for w in windows], dtype="float64")
    return _bar(name, kind, draws, t, cuts)


def _categorical_bar(name: str, values: Any, days: np.ndarray, t: Thresholds) -> Bar:
    labels = measures.category_labels(values)
    codes, uniques = pd.factorize(labels, sort=True)
    windows, total = _window_counts(
        days, codes.astype("int64"), len(uniques), t.drift_window_days, t.drift_min_window_rows
    )
    draws = np.array([tv_distance(total - w, w) for w in windows], dtype="float64")
    return _bar(name, "categorical", draws, t)


def normalised_weights(
    features: Sequence[str], importance: Mapping[str, float] | None
) -> tuple[dict[str, float], str]:
    """Importance of each feature in the alarm as a share summing to 1 (negative importance
    counts as none); equal shares without importance, or when it is zero everywhere."""
    if importance:
        raw = {f: max(0.0, float(importance.get(f, 0.0))) for f in features}
        total = sum(raw.values())
        if total > 0:
            return {f: v / total for f, v in raw.items()}, "permutation importance"
    share = 1.0 / len(features) if features else 0.0
    return {f: share for f in features}, "uniform (no importance logged with the champion)"


def calibrate(
    reference: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    thresholds: Thresholds,
    importance: Mapping[str, float] | None = None,
) -> Calibration:
    """Bars for every feature present in ``reference`` (see the module doc), for windows of
    ``thresholds.drift_window_days`` days. Without a ``day`` column (a reference logged before
    days were) there are no windows to draw: every bar is the floor, and the notes say so."""
    t = thresholds
    present_num = [c for c in numeric if c in reference.columns]
    present_cat = [c for c in categorical if c in reference.columns]
    excluded = {c: CALENDAR_BOUND[c] for c in (*present_num, *present_cat) if c in CALENDAR_BOUND}
    alarmed = [c for c in (*present_num, *present_cat) if c not in excluded]
    weights, source = normalised_weights(alarmed, importance)
    notes: list[str] = []
    has_days = DAY in reference.columns and not reference.empty
    days = _day_numbers(reference[DAY]) if has_days else np.zeros(len(reference), dtype="int64")
    if not has_days:
        notes.append("the reference has no days: every bar is the floor (drift_floor)")
    # Without days every row sits on one "day": no window is drawn and the floors apply.
    t_eff = t if has_days else Thresholds(drift_floor=t.drift_floor, drift_min_windows=10**9)
    bars: dict[str, Bar] = {}
    for c in present_num:
        bars[c] = _numeric_bar(c, "numeric", reference[c], days, t_eff)
    for c in present_cat:
        bars[c] = _categorical_bar(c, reference[c], days, t_eff)
    prediction: Bar | None = None
    if PROBABILITY in reference.columns:
        scored = prediction_reference(reference)
        scored_days = _day_numbers(scored[DAY]) if has_days else np.zeros(len(scored), "int64")
        prediction = _numeric_bar(PREDICTION, PREDICTION, scored[PROBABILITY], scored_days, t_eff)
    if has_days:
        ordered = sorted(str(d)[:10] for d in reference[DAY].unique())
        reference_days = f"{ordered[0]}..{ordered[-1]}"
        thin = [name for name, bar in bars.items() if bar.windows < t.drift_min_windows]
        if thin:
            notes.append(f"too few reference windows, floor bars: {', '.join(sorted(thin))}")
    else:
        reference_days = "n/a"
    return Calibration(
        bars=bars,
        excluded=excluded,
        weights=weights,
        weights_source=source,
        window_days=t.drift_window_days,
        reference_days=reference_days,
        prediction=prediction,
        notes=notes,
    )


def prediction_reference(reference: pd.DataFrame) -> pd.DataFrame:
    """The reference rows whose scores are out of sample (validation and holdout days), when the
    reference says which rows those are and has any; else all of it."""
    if SPLIT in reference.columns:
        out = reference[reference[SPLIT].isin(OUT_OF_SAMPLE)]
        if len(out):
            return out
    return reference


def _level(value: float, p_value: float, bar: Bar, t: Thresholds) -> str:
    if value >= bar.error and p_value < t.ks_pvalue:
        return "error"
    if value >= bar.warn:
        return "warn"
    return "ok"


def _numeric_distance(reference: Any, current: Any, cuts: Sequence[float]) -> float:
    ref, cur = _numbers(reference), _numbers(current)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    edges = np.asarray(cuts, dtype="float64")
    n = len(edges) + 1
    return ks_distance(
        np.bincount(np.searchsorted(edges, ref, side="right"), minlength=n),
        np.bincount(np.searchsorted(edges, cur, side="right"), minlength=n),
    )


def _categorical_distance(reference: Any, current: Any) -> float:
    ref, cur = measures.category_labels(reference), measures.category_labels(current)
    union = sorted(set(ref) | set(cur))
    return tv_distance(
        ref.value_counts().reindex(union, fill_value=0).to_numpy(dtype="float64"),
        cur.value_counts().reindex(union, fill_value=0).to_numpy(dtype="float64"),
    )


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    calibration: Calibration,
    thresholds: Thresholds,
) -> pd.DataFrame:
    """Each calibrated feature's distance (the current rows against the whole reference) against
    its bars: columns :data:`COLUMNS`; ``ratio`` is the distance over the error bar, ``weight``
    the feature's share of the alarm, ``level`` ``ok`` / ``warn`` / ``error`` or ``excluded``
    (calendar-bound: computed, never alarmed); ``psi`` for reference. Sorted by ratio, largest
    first, excluded features last."""
    rows = []
    for name, bar in calibration.bars.items():
        if name not in current.columns:
            continue
        ref, cur = reference[name], current[name]
        if bar.kind == "categorical":
            distance = _categorical_distance(ref, cur)
            value = measures.categorical_psi(ref, cur)
            _, p_value = measures.chi_square(ref, cur)
        else:
            distance = _numeric_distance(ref, cur, bar.cuts)
            value = measures.psi(ref.to_numpy(), cur.to_numpy())
            _, p_value = measures.ks(ref.to_numpy(), cur.to_numpy())
        rows.append(
            {
                "feature": name,
                "kind": bar.kind,
                "distance": distance,
                "psi": value,
                "p_value": p_value,
                "warn_bar": bar.warn,
                "error_bar": bar.error,
                "ratio": distance / bar.error if bar.error > 0 else float("inf"),
                "weight": calibration.weights.get(name, 0.0),
                "level": "excluded"
                if name in calibration.excluded
                else _level(distance, p_value, bar, thresholds),
            }
        )
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    if out.empty:
        return out.astype({"distance": "float64", "ratio": "float64", "weight": "float64"})
    order = np.where(out["level"] == "excluded", -np.inf, out["ratio"].astype("float64"))
    return out.iloc[np.argsort(-order, kind="mergesort")].reset_index(drop=True)


def prediction_drift(
    reference: pd.DataFrame, current_probs: Any, calibration: Calibration, thresholds: Thresholds
) -> dict[str, Any]:
    """The score distribution against the reference's out-of-sample scores, with its calibrated
    bars: ``distance`` (KS), ``psi``, ``ks_p_value``, ``warn_bar``, ``error_bar``, ``level``,
    ``reference_mean``, ``current_mean`` (empty without reference scores)."""
    bar = calibration.prediction
    if bar is None or PROBABILITY not in reference.columns:
        return {}
    scored = prediction_reference(reference)[PROBABILITY].to_numpy()
    current = np.asarray(current_probs, dtype="float64")
    base = measures.prediction_drift(scored, current)
    distance = _numeric_distance(scored, current, bar.cuts)
    return base | {
        "distance": distance,
        "warn_bar": bar.warn,
        "error_bar": bar.error,
        "level": _level(distance, base["ks_p_value"], bar, thresholds),
    }


@dataclass(frozen=True)
class Verdict:
    """The day's drift alarm: whether it fired, the importance share that drifted, and why."""

    alarm: bool
    score: float  # share of the alarm's importance at error level (0..1)
    drifted: list[str]  # features at error level, most important first
    prediction_level: str
    reason: str
    mode: str = "calibrated"


def verdict(table: pd.DataFrame, prediction: Mapping[str, Any], thresholds: Thresholds) -> Verdict:
    """Weigh the error-level features by importance; the alarm fires when they carry at least
    ``drift_importance_share`` (or, with ``prediction_in_alarm``, when the scores drifted at
    error level)."""
    t = thresholds
    errors = table[table["level"] == "error"] if len(table) else table
    ranked = (
        errors.sort_values("weight", ascending=False, kind="mergesort") if len(errors) else errors
    )
    drifted = [str(f) for f in ranked["feature"]] if len(ranked) else []
    score = float(ranked["weight"].sum()) if len(ranked) else 0.0
    level = str(prediction.get("level", "n/a"))
    parts = []
    if score >= t.drift_importance_share and drifted:
        parts.append(
            f"features carrying {score:.0%} of the champion's importance drifted beyond their "
            f"calibrated bars: {', '.join(drifted)}"
        )
    if t.prediction_in_alarm and level == "error":
        parts.append(
            f"the score distribution drifted (KS {float(prediction['distance']):.3f} >= "
            f"{float(prediction['error_bar']):.3f})"
        )
    return Verdict(
        alarm=bool(parts),
        score=score,
        drifted=drifted,
        prediction_level=level,
        reason="; ".join(parts)
        or (
            f"{score:.0%} of the importance drifted (alarm at "
            f"{t.drift_importance_share:.0%}); scores {level}"
        ),
    )


def fixed_verdict(table: pd.DataFrame, important: Sequence[str], thresholds: Thresholds) -> Verdict:
    """The rule before calibration: any of ``important`` at PSI >= psi_error with a significant
    test (``table`` as :func:`measures.feature_drift` returns it)."""
    errors = [str(f) for f in table.loc[table["level"] == "error", "feature"]] if len(table) else []
    drifted = [f for f in errors if f in important]
    return Verdict(
        alarm=bool(drifted),
        score=float(len(drifted)) / max(1, len(important)),
        drifted=drifted,
        prediction_level="n/a",
        reason=(
            f"PSI >= {thresholds.psi_error:g} on {', '.join(drifted)}"
            if drifted
            else f"no important feature at PSI >= {thresholds.psi_error:g}"
        ),
        mode="fixed",
    )
