"""The promotion gate: challenger vs champion on the same holdout window, plus absolute floors."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.features.engineering import LABEL
from dagster_project.platform import names
from dagster_project.training import evaluation, tracking
from dagster_project.training.preprocess import (
    CATEGORICAL,
    NUMERIC_V1,
    STREAM_NUMERIC,
    input_frame,
)


@dataclass(frozen=True)
class PromotionPolicy:
    min_auc_margin: float = 0.002  # challenger AUC must beat champion AUC by this much
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


@dataclass
class Decision:
    promote: bool
    reasons: list[str]
    challenger: ModelReport
    champion: ModelReport | None
    policy: PromotionPolicy
    holdout_window: str

    @property
    def outcome(self) -> str:
        return "promoted" if self.promote else "rejected"

    def summary(self) -> str:
        return f"v{self.challenger.version} {self.outcome}: " + "; ".join(self.reasons)

    def record(self) -> dict[str, Any]:
        return {
            "decision": self.outcome,
            "reasons": self.reasons,
            "holdout_window": self.holdout_window,
            "challenger": self.challenger.numbers(),
            "champion": self.champion.numbers() if self.champion else None,
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
    )


def decide(
    challenger: ModelReport,
    champion: ModelReport | None,
    policy: PromotionPolicy,
    holdout_window: str,
) -> Decision:
    """Floors first (they apply to the first model too), then the margin over the champion."""
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
        return Decision(False, failures, challenger, champion, policy, holdout_window)
    if champion is None:
        reason = f"first model: AUC {c.roc_auc:.4f}, calibration error {c.calibration_error:.4f}"
        return Decision(True, [reason], challenger, None, policy, holdout_window)
    gain = c.roc_auc - champion.holdout.roc_auc
    verdict = (
        f"AUC {c.roc_auc:.4f} vs champion v{champion.version} {champion.holdout.roc_auc:.4f} "
        f"(gain {gain:+.4f}, margin {policy.min_auc_margin:.4f})"
    )
    if gain < policy.min_auc_margin:
        return Decision(
            False, [f"not better: {verdict}"], challenger, champion, policy, holdout_window
        )
    return Decision(True, [f"better: {verdict}"], challenger, champion, policy, holdout_window)


def run_gate(
    registry: tracking.Registry,
    holdout: pd.DataFrame,
    holdout_window: str,
    available: set[str],
    policy: PromotionPolicy,
) -> Decision:
    """Score challenger and champion on ``holdout``, decide, move the alias if promoted and tag
    the challenger version and its training run with the decision and the numbers."""
    challenger_v = registry.by_alias(names.CHALLENGER)
    if challenger_v is None:
        raise LookupError(f"registered model '{registry.name}' has no '{names.CHALLENGER}' alias")
    champion_v = registry.by_alias(names.CHAMPION)
    challenger = report(registry, challenger_v, holdout, available, policy)
    champion = None
    if champion_v is not None and champion_v.version != challenger_v.version:
        champion = report(registry, champion_v, holdout, available, policy)
    decision = decide(challenger, champion, policy, holdout_window)
    if decision.promote:
        registry.set_alias(names.CHAMPION, challenger_v.version)
    tags = {
        "promotion_decision": decision.outcome,
        "promotion_reason": "; ".join(decision.reasons)[:4000],
        "promotion_record": json.dumps(decision.record())[:4000],
    }
    registry.tag(challenger_v.version, tags)
    registry.client.set_tag(challenger_v.run_id, "promotion_decision", decision.outcome)
    registry.client.set_tag(challenger_v.run_id, "promotion_reason", tags["promotion_reason"])
    return decision
