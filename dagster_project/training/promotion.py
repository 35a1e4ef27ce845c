"""The promotion gate: challenger vs champion (and the frozen baseline, where one is
registered) on the same holdout window, plus absolute floors.

A holdout of two weeks is small: two models of equal worth differ on it by a few thousandths
of ROC AUC either way, and a gate that promotes on the point difference promotes such noise
(the half-year replay did, seven times, and served slightly worse than its frozen first
champion; docs/operations.md). The gain must therefore hold with ``confidence`` in a paired
bootstrap that resamples the holdout's days (flights of one day share weather and delays):
its lower bound must reach ``min_auc_margin``, against the champion and against the frozen
``baseline``.

A gain that held on the holdout did not hold in the weeks after it either: the half-year
replay promoted two such models, and both served worse than the frozen first champion over the
next fortnight. So a challenger that passes is not promoted at once where there is a champion:
it becomes the **candidate**, scored in shadow on the days after its training window, on the
features the endpoint logged for them (nothing is served), and :func:`review` promotes it only
when its mean daily ROC AUC gain over the champion, and over the frozen baseline, holds with
``confidence`` over ``shadow_days`` judged days (a bootstrap of the days); else it is rejected.
``shadow_days: 0`` promotes on the holdout alone."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from dagster_project.features.engineering import LABEL
from dagster_project.platform import names
from dagster_project.training import evaluation, pipeline, tracking
from dagster_project.training.preprocess import (
    CATEGORICAL,
    NUMERIC_V1,
    STREAM_NUMERIC,
    input_frame,
)


@dataclass(frozen=True)
class PromotionPolicy:
    # the lower bound of the challenger's AUC gain (at ``confidence``) must reach this margin
    min_auc_margin: float = 0.0
    # one-sided level of that bound (paired day-block bootstrap over the holdout); 0: the point
    # gain decides
    confidence: float = 0.9
    bootstrap_rounds: int = 400
    # also beat the registry's frozen `baseline` (a replay's first champion), where there is one
    beat_baseline: bool = True
    # judged days a challenger that passed is scored in shadow after its training window
    # before :func:`review` decides on it (0: the holdout decides alone)
    shadow_days: int = 14
    # judged days a promoted champion keeps being compared with the frozen `baseline` on served
    # traffic: behind it at ``confidence`` over its last this many, it is rolled back to the
    # baseline by :func:`guard` (0: never)
    rollback_days: int = 28
    min_auc: float = 0.62
    max_calibration_error: float = 0.08
    # p95 of single-flight predictions through the pyfunc model (typically 1 to 5 ms here; the
    # budget leaves room for a loaded laptop, not for a model 20 times slower)
    latency_budget_ms: float = 100.0
    latency_samples: int = 50


@dataclass
class ModelReport:
    version: str
    holdout: evaluation.Evaluation
    latency_p95_ms: float
    signature_problems: list[str] = field(default_factory=list)
    scores: np.ndarray | None = field(default=None, repr=False)  # on the holdout's rows

    def numbers(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "roc_auc": round(self.holdout.roc_auc, 5),
            "calibration_error": round(self.holdout.calibration_error, 5),
            "log_loss": round(self.holdout.log_loss, 5),
            "brier": round(self.holdout.brier, 5),
            "latency_p95_ms": round(self.latency_p95_ms, 2),
            "signature_problems": self.signature_problems,
        }


@dataclass(frozen=True)
class Holdout:
    """What the paired bootstrap needs of the holdout: each row's label and day."""

    labels: np.ndarray
    days: np.ndarray


@dataclass(frozen=True)
class Gain:
    """The challenger's holdout AUC minus an incumbent's, with its lower confidence bound."""

    against: str  # "champion" or "baseline"
    version: str
    incumbent_auc: float
    gain: float
    lower: float
    confidence: float

    def passes(self, margin: float) -> bool:
        return self.lower >= margin

    def describe(self, challenger_auc: float, margin: float) -> str:
        bound = f", {self.confidence:.0%} lower bound {self.lower:+.4f}" if self.confidence else ""
        return (
            f"AUC {challenger_auc:.4f} vs {self.against} v{self.version} {self.incumbent_auc:.4f} "
            f"(gain {self.gain:+.4f}{bound}; margin {margin:+.4f})"
        )

    def numbers(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "version": self.version,
            "gain": round(self.gain, 5),
            "lower": round(self.lower, 5),
            "confidence": self.confidence,
        }


def _auc(y: np.ndarray, ranks: np.ndarray) -> float:
    """ROC AUC from the scores' ranks (ties averaged): the Mann-Whitney statistic."""
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def paired_auc_gain(
    holdout: Holdout, challenger: np.ndarray, incumbent: np.ndarray, rounds: int, seed: int = 0
) -> np.ndarray:
    """ROC AUC of ``challenger`` minus ``incumbent`` on ``rounds`` resamples of the holdout's
    days (whole days, with replacement; both models see the same resample). Resamples holding
    a single class are dropped."""
    days, codes = np.unique(holdout.days, return_inverse=True)
    rows = [np.flatnonzero(codes == i) for i in range(len(days))]
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(rounds):
        idx = np.concatenate([rows[i] for i in rng.integers(0, len(rows), len(rows))])
        y = holdout.labels[idx]
        if y.min() == y.max():
            continue
        gains.append(_auc(y, rankdata(challenger[idx])) - _auc(y, rankdata(incumbent[idx])))
    return np.asarray(gains, dtype="float64")


SHADOW = "shadow"  # the outcome of a challenger that passed the gate: scored in shadow next


@dataclass
class Decision:
    promote: bool
    reasons: list[str]
    challenger: ModelReport
    champion: ModelReport | None
    policy: PromotionPolicy
    holdout_window: str
    baseline: ModelReport | None = None
    gains: list[Gain] = field(default_factory=list)
    shadow: bool = False  # passed: the candidate now, promoted or not by :func:`review`

    @property
    def outcome(self) -> str:
        return "promoted" if self.promote else SHADOW if self.shadow else "rejected"

    def summary(self) -> str:
        return f"v{self.challenger.version} {self.outcome}: " + "; ".join(self.reasons)

    def record(self) -> dict[str, Any]:
        return {
            "decision": self.outcome,
            "reasons": self.reasons,
            "holdout_window": self.holdout_window,
            "challenger": self.challenger.numbers(),
            "champion": self.champion.numbers() if self.champion else None,
            "baseline": self.baseline.numbers() if self.baseline else None,
            "gains": [g.numbers() for g in self.gains],
            "policy": asdict(self.policy),
        }


def signature_problems(model: Any, available: set[str]) -> list[str]:
    """Inputs the model's signature asks for that the feature service and request do not give."""
    signature = model.metadata.signature
    if signature is None:
        return ["model has no signature"]
    wanted = set(signature.inputs.input_names())
    return [f"input '{c}' is not served by the feature service" for c in sorted(wanted - available)]


def model_input(model: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` as the inputs the model's signature names (a v1 model reads fewer numbers than
    a v2 one; both read them from the same lead-time holdout)."""
    metadata = getattr(model, "metadata", None)
    signature = metadata.get_input_schema() if metadata is not None else None
    if signature is not None:
        names = [n for n in signature.input_names() if n not in CATEGORICAL]
    else:  # no signature to read: the model inputs that the rows hold
        names = [c for c in (*NUMERIC_V1, *STREAM_NUMERIC) if c in rows.columns]
    return input_frame(rows, names or None)


def latency_p95_ms(model: Any, rows: pd.DataFrame, samples: int) -> float:
    """p95 wall time of one-flight predictions (what the endpoint does per request)."""
    frame = model_input(model, rows.head(samples))
    for _ in range(3):  # warm-up
        model.predict(frame.iloc[[0]])
    timings = []
    for i in range(len(frame)):
        started = time.perf_counter()
        model.predict(frame.iloc[[i]])
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 95))


def report(
    registry: tracking.Registry,
    version: tracking.VersionInfo,
    holdout: pd.DataFrame,
    available: set[str],
    policy: PromotionPolicy,
) -> ModelReport:
    model = registry.load(version.version)
    p = np.asarray(model.predict(model_input(model, holdout)), dtype="float64").reshape(-1)
    ev = evaluation.evaluate(holdout[LABEL].to_numpy(), p, version.threshold)
    return ModelReport(
        version=version.version,
        holdout=ev,
        latency_p95_ms=latency_p95_ms(model, holdout, policy.latency_samples),
        signature_problems=signature_problems(model, available),
        scores=p,
    )


def gain_over(
    challenger: ModelReport,
    incumbent: ModelReport,
    against: str,
    policy: PromotionPolicy,
    holdout: Holdout | None,
) -> Gain:
    """The challenger's AUC gain over ``incumbent`` and its lower bound at the policy's
    confidence (the point gain where the confidence is 0)."""
    gain = challenger.holdout.roc_auc - incumbent.holdout.roc_auc
    confidence, lower = 0.0, gain
    if policy.confidence > 0:
        if holdout is None or challenger.scores is None or incumbent.scores is None:
            raise ValueError(
                f"a {policy.confidence:.0%} bound on the gain needs both models' holdout scores "
                "and the holdout's labels and days"
            )
        gains = paired_auc_gain(
            holdout, challenger.scores, incumbent.scores, policy.bootstrap_rounds
        )
        confidence = policy.confidence
        lower = float(np.quantile(gains, 1 - confidence)) if len(gains) else float("-inf")
    return Gain(against, incumbent.version, incumbent.holdout.roc_auc, gain, lower, confidence)


def decide(
    challenger: ModelReport,
    champion: ModelReport | None,
    policy: PromotionPolicy,
    holdout_window: str,
    baseline: ModelReport | None = None,
    holdout: Holdout | None = None,
) -> Decision:
    """Floors first (they apply to the first model too), then the gain over the champion and,
    where the policy asks, over the frozen ``baseline``: each gain's lower bound must reach the
    margin."""
    c = challenger.holdout
    failures = []
    if c.roc_auc < policy.min_auc:
        failures.append(f"AUC {c.roc_auc:.4f} below floor {policy.min_auc:.4f}")
    if c.calibration_error > policy.max_calibration_error:
        failures.append(
            f"calibration error {c.calibration_error:.4f} above {policy.max_calibration_error:.4f}"
        )
    if challenger.latency_p95_ms > policy.latency_budget_ms:
        failures.append(
            f"p95 latency {challenger.latency_p95_ms:.1f} ms over budget {policy.latency_budget_ms:.1f} ms"
        )
    failures += challenger.signature_problems
    if failures:
        return Decision(False, failures, challenger, champion, policy, holdout_window, baseline)
    if champion is None:
        reason = f"first model: AUC {c.roc_auc:.4f}, calibration error {c.calibration_error:.4f}"
        return Decision(True, [reason], challenger, None, policy, holdout_window, baseline)
    incumbents = [("champion", champion)]
    if policy.beat_baseline and baseline is not None and baseline.version != champion.version:
        incumbents.append(("baseline", baseline))
    gains = [gain_over(challenger, m, name, policy, holdout) for name, m in incumbents]
    reasons = [
        ("better: " if g.passes(policy.min_auc_margin) else "not better: ")
        + g.describe(c.roc_auc, policy.min_auc_margin)
        for g in gains
    ]
    passed = all(g.passes(policy.min_auc_margin) for g in gains)
    shadow = passed and policy.shadow_days > 0
    if shadow:
        reasons.append(
            f"candidate: scored in shadow on {policy.shadow_days} judged days after its "
            "training window before a review promotes it"
        )
    return Decision(
        passed and not shadow,
        reasons,
        challenger,
        champion,
        policy,
        holdout_window,
        baseline,
        gains,
        shadow,
    )


def run_gate(
    registry: tracking.Registry,
    holdout: pd.DataFrame,
    holdout_window: str,
    available: set[str],
    policy: PromotionPolicy,
) -> Decision:
    """Score challenger, champion and frozen baseline on ``holdout`` (training-set rows), decide, move the alias if promoted and tag the challenger version and its
    training run with the decision and the numbers."""
    challenger_v = registry.by_alias(names.CHALLENGER)
    if challenger_v is None:
        raise LookupError(f"registered model '{registry.name}' has no '{names.CHALLENGER}' alias")
    champion_v = registry.by_alias(names.CHAMPION)
    challenger = report(registry, challenger_v, holdout, available, policy)
    champion = None
    if champion_v is not None and champion_v.version != challenger_v.version:
        champion = report(registry, champion_v, holdout, available, policy)
    baseline_v = registry.by_alias(names.BASELINE) if policy.beat_baseline else None
    baseline = None
    if baseline_v is not None and baseline_v.version not in (
        challenger_v.version,
        champion_v.version if champion_v else None,
    ):
        baseline = report(registry, baseline_v, holdout, available, policy)
    days = pipeline.flight_dates(holdout).astype(str).to_numpy()
    sample = Holdout(holdout[LABEL].to_numpy(dtype="int64"), days)
    decision = decide(challenger, champion, policy, holdout_window, baseline, sample)
    if decision.promote:
        registry.set_alias(names.CHAMPION, challenger_v.version)
    elif decision.shadow:  # replaces a candidate still in shadow: the newer window
        registry.set_alias(names.CANDIDATE, challenger_v.version)
    tags = {
        "promotion_decision": decision.outcome,
        "promotion_reason": "; ".join(decision.reasons)[:4000],
        "promotion_record": json.dumps(decision.record())[:4000],
    }
    registry.tag(challenger_v.version, tags)
    registry.client.set_tag(challenger_v.run_id, "promotion_decision", decision.outcome)
    registry.client.set_tag(challenger_v.run_id, "promotion_reason", tags["promotion_reason"])
    return decision


@dataclass(frozen=True)
class ShadowDay:
    """One judged day after the candidate's training window: ROC AUC on the day's labeled
    flights of the candidate and the champion (and the frozen baseline, NaN where there is
    none), each scoring the features the endpoint logged for them."""

    day: str
    candidate_auc: float
    champion_auc: float
    baseline_auc: float = float("nan")


def mean_gain_lower(daily: np.ndarray, confidence: float, rounds: int, seed: int = 0) -> float:
    """Lower bound at ``confidence`` of the mean daily gain: the ``1 - confidence`` quantile of
    the mean over ``rounds`` resamples of the days (with replacement); the mean itself where
    the confidence is 0."""
    mean = float(np.mean(daily))
    if confidence <= 0:
        return mean
    rng = np.random.default_rng(seed)
    means = daily[rng.integers(0, len(daily), (rounds, len(daily)))].mean(axis=1)
    return float(np.quantile(means, 1 - confidence))


@dataclass
class Review:
    """What :func:`review` concluded about the candidate: still in ``shadow`` (too few judged
    days yet), ``promoted`` or ``rejected``."""

    candidate: str
    champion: str
    status: str
    reasons: list[str]
    days: list[str]
    policy: PromotionPolicy
    gains: list[Gain] = field(default_factory=list)

    def summary(self) -> str:
        return f"candidate v{self.candidate} {self.status}: " + "; ".join(self.reasons)

    def record(self) -> dict[str, Any]:
        return {
            "decision": self.status,
            "reasons": self.reasons,
            "candidate": self.candidate,
            "champion": self.champion,
            "shadow_days": self.days,
            "gains": [g.numbers() for g in self.gains],
            "policy": asdict(self.policy),
        }


def review(
    candidate: str,
    champion: str,
    baseline: str | None,
    days: list[ShadowDay],
    policy: PromotionPolicy,
) -> Review:
    """Decide on the candidate once it has ``policy.shadow_days`` judged shadow days (its first
    ones, in day order): promoted when the lower bound of its mean daily ROC AUC gain reaches
    the margin against the champion and, where the policy asks and there is one, against the
    frozen ``baseline``; rejected otherwise."""
    need = max(1, policy.shadow_days)
    shown = sorted(days, key=lambda d: d.day)[:need]
    names_ = [d.day for d in shown]
    if len(shown) < need:
        return Review(
            candidate,
            champion,
            SHADOW,
            [f"{len(shown)} of {need} judged days in shadow"],
            names_,
            policy,
        )
    ours = np.array([d.candidate_auc for d in shown], dtype="float64")
    incumbents = [("champion", champion, np.array([d.champion_auc for d in shown]))]
    frozen = np.array([d.baseline_auc for d in shown], dtype="float64")
    if policy.beat_baseline and baseline and baseline != champion and not np.isnan(frozen).any():
        incumbents.append(("baseline", baseline, frozen))
    gains = []
    for name, version, theirs in incumbents:
        daily = ours - theirs
        gains.append(
            Gain(
                name,
                version,
                float(np.mean(theirs)),
                float(np.mean(daily)),
                mean_gain_lower(daily, policy.confidence, policy.bootstrap_rounds),
                max(policy.confidence, 0.0),
            )
        )
    passed = all(g.passes(policy.min_auc_margin) for g in gains)
    reasons = [
        ("better in shadow: " if g.passes(policy.min_auc_margin) else "not better in shadow: ")
        + g.describe(float(ours.mean()), policy.min_auc_margin).replace("AUC", "mean daily AUC", 1)
        + f" over {names_[0]}..{names_[-1]}"
        for g in gains
    ]
    return Review(
        candidate,
        champion,
        "promoted" if passed else "rejected",
        reasons,
        names_,
        policy,
        gains,
    )


ROLLED_BACK = "rolled back"


@dataclass(frozen=True)
class ServedDay:
    """One judged day the champion served: its ROC AUC and the frozen baseline's (scored in
    shadow) on the day's labeled flights."""

    day: str
    champion_auc: float
    baseline_auc: float


@dataclass
class Guard:
    """What :func:`guard` concluded about a promoted champion: ``kept`` (not behind the
    baseline at the policy's confidence, or too few served days yet) or ``rolled back``.
    The mean daily AUCs of both over ``days``, and the upper bound at ``confidence`` of the
    champion's gain (NaN until there are enough days)."""

    champion: str
    baseline: str
    status: str
    reasons: list[str]
    days: list[str]
    champion_auc: float = float("nan")
    baseline_auc: float = float("nan")
    upper: float = float("nan")
    confidence: float = 0.0

    @property
    def gain(self) -> float:
        return self.champion_auc - self.baseline_auc

    def summary(self) -> str:
        return f"champion v{self.champion} {self.status}: " + "; ".join(self.reasons)

    def record(self) -> dict[str, Any]:
        return {
            "decision": self.status,
            "reasons": self.reasons,
            "champion": self.champion,
            "baseline": self.baseline,
            "served_days": self.days,
            "champion_auc": round(self.champion_auc, 5),
            "baseline_auc": round(self.baseline_auc, 5),
            "gain": round(self.gain, 5),
            "upper": round(self.upper, 5),
            "confidence": self.confidence,
        }


def guard(champion: str, baseline: str, days: list[ServedDay], policy: PromotionPolicy) -> Guard:
    """Judge a promoted champion on its last ``policy.rollback_days`` judged served days: rolled
    back when the frozen ``baseline`` beat it there with the gate's confidence (the upper
    bound of the champion's mean daily AUC gain over the baseline below 0, in a paired day
    bootstrap), kept otherwise. A champion that won its shadow days can still fall behind the
    model it replaced weeks later, when the season turns; serving the baseline again bounds
    what retraining can lose."""
    need = policy.rollback_days
    if need <= 0:
        return Guard(champion, baseline, "kept", ["no rollback (rollback_days 0)"], [])
    last = sorted(days, key=lambda d: d.day)[-need:]
    names_ = [d.day for d in last]
    if len(last) < need:
        return Guard(
            champion, baseline, "kept", [f"{len(last)} of {need} judged served days"], names_
        )
    ours = np.array([d.champion_auc for d in last], dtype="float64")
    theirs = np.array([d.baseline_auc for d in last], dtype="float64")
    # the upper bound of the champion's gain is minus the lower bound of the baseline's
    upper = -mean_gain_lower(theirs - ours, policy.confidence, policy.bootstrap_rounds)
    rolled = upper < 0
    confidence = max(policy.confidence, 0.0)
    reason = (
        f"mean daily AUC {ours.mean():.4f} vs frozen baseline v{baseline} {theirs.mean():.4f} "
        f"(gain {ours.mean() - theirs.mean():+.4f}, {confidence:.0%} upper bound {upper:+.4f}) over "
        f"{names_[0]}..{names_[-1]}"
    )
    return Guard(
        champion,
        baseline,
        ROLLED_BACK if rolled else "kept",
        [("behind the baseline: " if rolled else "not behind the baseline: ") + reason],
        names_,
        float(ours.mean()),
        float(theirs.mean()),
        upper,
        confidence,
    )
