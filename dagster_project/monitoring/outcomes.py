"""Monitoring judged by what happened: alarms against later quality drops, and retraining
against a frozen model.

* **Alarm precision and recall.** Every monitored day says whether its drift alarm fired. One
  day's ROC AUC swings with its weather far more than its sampling error (0.59 to 0.84 within
  a fortnight of July), so a *quality drop* is judged on weeks: a judged day is a drop day when
  the mean AUC of the last ``drop_window_days`` judged days (ending on it) is below the floor or
  more than ``drop_auc_margin`` below the median of the ``drop_baseline_days`` judged days
  before that week (see :func:`quality_drops`). A run of drop days is one drop, starting on its
  first day (its *onset*). An alarm on day ``a`` is *followed* by a drop when an onset falls in
  ``a < d <= a + alarm_horizon_days``; precision is the share of alarm days followed by a drop,
  recall the share of drops an alarm preceded within the horizon. The *base rate* is the
  share of all monitored days followed by an onset within the horizon: the precision of an
  alarm that is always on, against which any precision is to be read.
* **The value of retraining.** The replay scores every day's flights with the frozen first
  champion too (a shadow: same logged features, in process, nothing served). The daily gain is
  the served model's ROC AUC minus the frozen one's on the same labeled flights; its mean over
  the replay comes with a moving-block bootstrap interval (days are resampled in blocks of a
  week, as neighbouring days share weather and models).

Plain numpy and pandas; no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.monitoring import measures
from dagster_project.monitoring.measures import Thresholds
from dagster_project.training.promotion import model_input


def _numbers(values: Any) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )


def _flags(values: Any) -> np.ndarray:
    """Booleans from a column that may hold bools, 0/1, text or None (None: False)."""
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(v.strip().lower() in ("true", "1", "yes"))
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(False)
        else:
            out.append(bool(v))
    return np.array(out, dtype=bool)


def shadow_quality(model: Any, labeled: pd.DataFrame, thresholds: Thresholds) -> dict[str, Any]:
    """Quality of a second model on the same labeled flights: ``model`` (anything with
    ``predict(frame)``, such as an MLflow pyfunc) scores the features the endpoint logged for
    them (``labeled`` as :func:`measures.join_labels` returns it). ``roc_auc``, ``brier``,
    ``calibration_error`` and ``labeled``, as :func:`measures.daily_quality` computes them."""
    p = np.asarray(model.predict(model_input(model, labeled)), dtype="float64").reshape(-1)
    quality = measures.daily_quality(
        pd.DataFrame({"probability": p, "delayed": p >= 0.5, "label": labeled["label"]}),
        thresholds,
    )
    return {k: quality[k] for k in ("roc_auc", "brier", "calibration_error", "labeled")}


@dataclass(frozen=True)
class DropRule:
    """What counts as a real quality drop (see the module doc): ranking quality (ROC AUC) over a
    week, not one day's, nor the day's calibration, which swings with the day's delay rate
    whatever the model does."""

    auc_floor: float = Thresholds.auc_floor
    auc_margin: float = Thresholds.drop_auc_margin
    baseline_days: int = Thresholds.drop_baseline_days
    window_days: int = Thresholds.drop_window_days

    @classmethod
    def from_thresholds(cls, t: Thresholds) -> DropRule:
        return cls(t.auc_floor, t.drop_auc_margin, t.drop_baseline_days, t.drop_window_days)

    def describe(self) -> str:
        return (
            f"the mean ROC AUC of the last {self.window_days} judged days is below "
            f"{self.auc_floor:g} or more than {self.auc_margin:g} below the median of the "
            f"{self.baseline_days} judged days before them"
        )


def quality_drops(history: pd.DataFrame, rule: DropRule) -> pd.DataFrame:
    """Per day (sorted): ``day``, ``judged``, ``roc_auc``, ``week_auc`` (mean of the last
    ``window_days`` judged days, ending on the day), ``baseline`` (median AUC of up to
    ``baseline_days`` judged days before that week; NaN with fewer than ``window_days`` of
    them), ``drop`` (bool), ``onset`` (the first day of a run of drop days) and ``why``. Days
    without a judgement never drop; nor does a day with fewer than ``window_days`` judged days
    up to it."""
    h = history.sort_values("day", kind="mergesort").reset_index(drop=True)
    judged = _flags(h["judged"]) if "judged" in h.columns else np.ones(len(h), dtype=bool)
    auc = _numbers(h["roc_auc"]) if "roc_auc" in h.columns else np.full(len(h), np.nan)
    week_auc = np.full(len(h), np.nan)
    baseline = np.full(len(h), np.nan)
    seen: list[float] = []
    drops, onsets, why = [], [], []
    previous = False
    for i in range(len(h)):
        reasons = []
        if judged[i] and not np.isnan(auc[i]):
            seen.append(float(auc[i]))
            if len(seen) >= rule.window_days:
                week = seen[-rule.window_days :]
                week_auc[i] = float(np.mean(week))
                before = seen[: -rule.window_days][-rule.baseline_days :]
                if len(before) >= rule.window_days:
                    baseline[i] = float(np.median(before))
                if week_auc[i] < rule.auc_floor:
                    reasons.append(f"week AUC {week_auc[i]:.3f} < floor {rule.auc_floor:g}")
                if week_auc[i] < baseline[i] - rule.auc_margin:
                    reasons.append(
                        f"week AUC {week_auc[i]:.3f} < {baseline[i]:.3f} (median before) "
                        f"- {rule.auc_margin:g}"
                    )
            dropped = bool(reasons)
            onsets.append(dropped and not previous)
            previous = dropped
        else:  # a day without a judgement neither drops nor ends a run of drops
            dropped = False
            onsets.append(False)
        drops.append(dropped)
        why.append("; ".join(reasons))
    return pd.DataFrame(
        {
            "day": [str(d)[:10] for d in h["day"]],
            "judged": judged,
            "roc_auc": auc,
            "week_auc": week_auc,
            "baseline": baseline,
            "drop": np.array(drops, dtype=bool),
            "onset": np.array(onsets, dtype=bool),
            "why": why,
        }
    )


@dataclass(frozen=True)
class AlarmScore:
    """How an alarm rule did against the drops over one history."""

    rule: str  # the alarm column judged
    alarms: int  # days the alarm fired
    followed: int  # ... followed by the onset of a drop within the horizon
    drops: int  # drops (runs of drop days)
    preceded: int  # ... that an alarm preceded within the horizon
    horizon_days: int
    base_rate: float | None = None  # share of all days followed by an onset within the horizon
    alarm_days: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # onsets no alarm preceded

    @property
    def precision(self) -> float | None:
        return self.followed / self.alarms if self.alarms else None

    @property
    def recall(self) -> float | None:
        return self.preceded / self.drops if self.drops else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "alarms": self.alarms,
            "followed_by_drop": self.followed,
            "precision": self.precision,
            "base_rate": self.base_rate,
            "drops": self.drops,
            "preceded_by_alarm": self.preceded,
            "recall": self.recall,
            "horizon_days": self.horizon_days,
        }


def judge_alarms(
    history: pd.DataFrame, alarm_column: str, drops: pd.DataFrame, horizon_days: int
) -> AlarmScore:
    """Precision and recall of the alarm in ``alarm_column`` against the drops of ``drops`` (as
    :func:`quality_drops` returns them), on calendar days: alarm day ``a`` is followed by the
    drop starting on ``d`` when ``a < d <= a + horizon_days``."""
    h = history.sort_values("day", kind="mergesort")
    fired = _flags(h[alarm_column]) if alarm_column in h.columns else np.zeros(len(h), dtype=bool)
    days = [str(d)[:10] for d in h["day"]]
    alarm_days = sorted(d for d, f in zip(days, fired, strict=True) if f)
    onset_days = sorted(str(d) for d in drops.loc[drops["onset"], "day"]) if len(drops) else []
    alarm_set = {date.fromisoformat(d) for d in alarm_days}
    onset_set = {date.fromisoformat(d) for d in onset_days}
    horizon = [timedelta(days=k) for k in range(1, horizon_days + 1)]

    def ahead(day: date) -> bool:
        return any(day + k in onset_set for k in horizon)

    followed = sum(ahead(a) for a in sorted(alarm_set))
    missed = [
        d for d in onset_days if not any(date.fromisoformat(d) - k in alarm_set for k in horizon)
    ]
    base = [ahead(date.fromisoformat(d)) for d in days]
    return AlarmScore(
        rule=alarm_column,
        alarms=len(alarm_days),
        followed=followed,
        drops=len(onset_days),
        preceded=len(onset_days) - len(missed),
        horizon_days=horizon_days,
        base_rate=float(np.mean(base)) if base else None,
        alarm_days=alarm_days,
        missed=missed,
    )


def block_bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    block: int = 7,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (in time order) by a moving-block
    bootstrap: each resample glues randomly chosen runs of ``block`` consecutive values until
    it is as long as the series. ``block=1`` is the ordinary bootstrap. (nan, nan) when empty."""
    x = np.asarray(values, dtype="float64")
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    b = max(1, min(block, n))
    starts = np.arange(n - b + 1)
    per = -(-n // b)
    rng = np.random.default_rng(seed)
    picks = rng.choice(starts, size=(resamples, per))
    index = (picks[:, :, None] + np.arange(b)[None, None, :]).reshape(resamples, -1)[:, :n]
    means = x[index].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


@dataclass(frozen=True)
class RetrainingValue:
    """The served model against the frozen first champion over the days both were judged."""

    days: int
    served_mean_auc: float | None
    frozen_mean_auc: float | None
    mean_gain: float | None
    low: float | None  # bootstrap interval of the mean gain
    high: float | None
    level: float
    block_days: int
    frozen_version: str | None

    def describe(self) -> str:
        if self.mean_gain is None:
            return "no day with both the served and the frozen model's ROC AUC"
        return (
            f"mean daily ROC AUC gain of the served model over frozen v{self.frozen_version}: "
            f"{self.mean_gain:+.4f} ({self.level:.0%} interval {self.low:+.4f} .. "
            f"{self.high:+.4f}, {self.days} days)"
        )


def retraining_value(
    history: pd.DataFrame,
    block_days: int = 7,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> RetrainingValue:
    """Mean of ``roc_auc - shadow_roc_auc`` over the judged days that have both, with its
    block-bootstrap interval (see :func:`block_bootstrap_mean`)."""
    h = history.sort_values("day", kind="mergesort")
    served = _numbers(h["roc_auc"]) if "roc_auc" in h.columns else np.zeros(0)
    frozen = _numbers(h["shadow_roc_auc"]) if "shadow_roc_auc" in h.columns else np.zeros(0)
    judged = _flags(h["judged"]) if "judged" in h.columns else np.ones(len(h), dtype=bool)
    both = (~np.isnan(served)) & (~np.isnan(frozen)) & judged if len(frozen) else np.zeros(0, bool)
    versions = (
        [str(v) for v in h["shadow_version"] if v is not None and str(v) not in ("", "nan")]
        if "shadow_version" in h.columns
        else []
    )
    frozen_version = versions[0] if versions else None
    if not both.any():
        return RetrainingValue(0, None, None, None, None, None, level, block_days, frozen_version)
    gain = served[both] - frozen[both]
    low, high = block_bootstrap_mean(gain, block_days, resamples, level, seed)
    return RetrainingValue(
        days=int(both.sum()),
        served_mean_auc=float(served[both].mean()),
        frozen_mean_auc=float(frozen[both].mean()),
        mean_gain=float(gain.mean()),
        low=low,
        high=high,
        level=level,
        block_days=block_days,
        frozen_version=frozen_version,
    )


def promotion_windows(
    history: pd.DataFrame, promotions: Sequence[dict[str, Any]], days: int = 14
) -> list[dict[str, Any]]:
    """For each promoted version (``version`` key), the mean daily ROC AUC of the served and of
    the frozen model over the ``days`` calendar days from the first day that version served
    (``model_version`` of the history); ``served_auc`` / ``frozen_auc`` are None when no day in
    that span has both."""
    h = history.sort_values("day", kind="mergesort").reset_index(drop=True)
    day = [str(d)[:10] for d in h["day"]]
    versions = [None if v is None else str(v) for v in h.get("model_version", [None] * len(h))]
    served = _numbers(h["roc_auc"]) if "roc_auc" in h.columns else np.full(len(h), np.nan)
    frozen = (
        _numbers(h["shadow_roc_auc"]) if "shadow_roc_auc" in h.columns else np.full(len(h), np.nan)
    )
    out = []
    for p in promotions:
        version = str(p.get("version"))
        first = next((d for d, v in zip(day, versions, strict=True) if v == version), None)
        row: dict[str, Any] = {
            "version": version,
            "first_served": first,
            "days": 0,
            "served_auc": None,
            "frozen_auc": None,
        }
        if first is not None:
            end = (date.fromisoformat(first) + timedelta(days=days - 1)).isoformat()
            span = np.array([first <= d <= end for d in day], dtype=bool)
            both = span & ~np.isnan(served) & ~np.isnan(frozen)
            if both.any():
                row |= {
                    "days": int(both.sum()),
                    "served_auc": float(served[both].mean()),
                    "frozen_auc": float(frozen[both].mean()),
                }
        out.append(row)
    return out


ALARM_RULES = {"calibrated": "calibrated_alarm", "fixed": "fixed_alarm"}


@dataclass
class Assessment:
    """Everything the report judges over one replay's days."""

    drops: pd.DataFrame
    rule: DropRule
    driving: str  # the drift mode whose alarm drove the retrains
    alarms: dict[str, AlarmScore]  # per alarm rule (calibrated, fixed)
    value: RetrainingValue
    promotions: list[dict[str, Any]]
    promotion_days: int

    def figures(self) -> dict[str, Any]:
        """The headline numbers (for metadata and the command line)."""
        driving = self.alarms.get(self.driving)
        return {
            "drift_mode": self.driving,
            "alarms": driving.alarms if driving else 0,
            "alarm_precision": driving.precision if driving else None,
            "alarm_recall": driving.recall if driving else None,
            "quality_drops": int(self.drops["onset"].sum()) if len(self.drops) else 0,
            "drop_days": int(self.drops["drop"].sum()) if len(self.drops) else 0,
            "horizon_days": driving.horizon_days if driving else None,
            "mean_auc_gain": self.value.mean_gain,
            "auc_gain_low": self.value.low,
            "auc_gain_high": self.value.high,
            "auc_gain_days": self.value.days,
            "frozen_version": self.value.frozen_version,
            "by_rule": {name: score.as_dict() for name, score in self.alarms.items()},
        }


def assess(
    history: pd.DataFrame,
    retrains: Sequence[dict[str, Any]],
    thresholds: Thresholds,
    promotion_days: int = 14,
) -> Assessment:
    """Drops, each alarm rule's precision and recall, the value of retraining and the
    promotions' following days, over ``history`` (one row per monitored day)."""
    rule = DropRule.from_thresholds(thresholds)
    if history.empty or "day" not in history.columns:
        drops = quality_drops(pd.DataFrame({"day": []}), rule)
    else:
        drops = quality_drops(history, rule)
    alarms = {
        name: judge_alarms(history, column, drops, thresholds.alarm_horizon_days)
        for name, column in ALARM_RULES.items()
        if not history.empty and column in history.columns
    }
    promoted = [
        r for r in retrains if r.get("outcome") == "promoted" and r.get("version") is not None
    ]
    return Assessment(
        drops=drops,
        rule=rule,
        driving=thresholds.drift_mode,
        alarms=alarms,
        value=retraining_value(history if "day" in history.columns else drops),
        promotions=promotion_windows(history, promoted, promotion_days) if len(history) else [],
        promotion_days=promotion_days,
    )
