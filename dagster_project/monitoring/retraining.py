"""The closed loop's rules, without Dagster: labels, when to retrain, on which window, and the
record of every retrain (the prediction log is :mod:`dagster_project.serving.prediction_log`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from dagster_project.features.engineering import DEFAULT_LEAD_MINUTES, DELAY_THRESHOLD_MIN
from dagster_project.platform import storage
from dagster_project.platform.names import FEATURE_SERVICE

# Run tags a triggered retrain carries (the promotion gate copies them into the retrain record).
TAG_TRIGGER = "retrain/trigger"
TAG_REASON = "retrain/reason"
TAG_DAY = "retrain/day"
TAG_BREACH_AT = "retrain/breach_recorded_at"
TAG_REPLAY = "replay/id"  # every run a replay starts: its retrains are the replay's
# The trigger of a record that says what became of a candidate (a challenger the gate passed,
# scored in shadow): promoted or rejected by the review of its shadow days
REVIEW_TRIGGER = "candidate_review"
# a promoted champion the frozen baseline beat on served traffic, rolled back to it
ROLLBACK_TRIGGER = "champion_rollback"

# The fixed drift rule's features (drift_mode="fixed"): drift on one of them alone justified a
# retrain. The calibrated rule weighs every feature by the champion's own importance instead.
IMPORTANT_FEATURES = (
    "carrier_mean_dep_delay_7d",
    "carrier_delayed_share_7d",
    "route_mean_dep_delay_28d",
    "route_delayed_share_28d",
    "precip",
    "visib",
    "wind_speed",
    "dep_hour",
)


def labels(validated_flights: pd.DataFrame) -> pd.DataFrame:
    """Outcomes as labels: delayed beyond the threshold (1) or not (0); cancelled flights have
    none."""
    done = validated_flights[~validated_flights["cancelled"]]
    return pd.DataFrame(
        {
            "flight_id": done["flight_id"],
            "label": (done["dep_delay"] > DELAY_THRESHOLD_MIN).astype("int64"),
        }
    )


@dataclass(frozen=True)
class RetrainPolicy:
    breach_days: int = 2  # consecutive judged days below the quality floor (or drifted)
    cooldown_days: int = 14  # at least this many days between two triggered retrains
    new_label_days: int = 28  # labeled days since the last retrain that warrant one anyway
    # the training window ends on the last labeled day and spans a year (within 2013: from its
    # start), so a retrain keeps every season the first champion learned from ...
    window_days: int = 365
    holdout_days: int = 14  # ... whose last days are the gate's holdout
    validation_days: int = 14
    n_trials: int = 3
    important_features: tuple[str, ...] = IMPORTANT_FEATURES
    # What a retrained model is trained on and when it scores (the daily clock: v1 at the
    # day's start; the intraday clock: v2, 60 minutes before departure)
    feature_service: str = FEATURE_SERVICE
    prediction_time: str = f"lead_{DEFAULT_LEAD_MINUTES}"


@dataclass(frozen=True)
class DayStatus:
    """What monitoring concluded about one day (read back from its materialization)."""

    day: str
    judged: bool
    breaches: list[str] = field(default_factory=list)
    drift_errors: list[str] = field(default_factory=list)
    recorded_at: float = 0.0  # when monitoring recorded the verdict (epoch seconds)
    # The day's drift alarm as monitoring decided it (None: a record from before the alarm
    # was recorded; then the fixed rule decides: an error on an important feature).
    drift_alarm: bool | None = None
    drift_reason: str = ""


@dataclass(frozen=True)
class Trigger:
    key: str  # the Dagster run_key: one breach, one retrain
    day: str
    reason: str


def _cooling_down(day: str, last_trigger: str | None, policy: RetrainPolicy) -> bool:
    if not last_trigger:
        return False
    return (date.fromisoformat(day) - date.fromisoformat(last_trigger)).days < policy.cooldown_days


def breach_trigger(
    history: list[DayStatus], policy: RetrainPolicy, last_trigger: str | None = None
) -> Trigger | None:
    """Retrain when the last ``breach_days`` judged days all breached the quality floor, or all
    raised the drift alarm (see ``monitoring.drift``). ``history`` holds the days after
    ``last_trigger`` (the previous retrain's day), in any order; no retrain within
    ``cooldown_days`` of the previous one."""
    judged = sorted((s for s in history if s.judged), key=lambda s: s.day)
    recent = judged[-policy.breach_days :]
    if len(recent) < policy.breach_days or _cooling_down(recent[-1].day, last_trigger, policy):
        return None
    span = f"{recent[0].day}..{recent[-1].day}"
    if all(s.breaches for s in recent):
        return Trigger(
            key=f"quality:{span}",
            day=recent[-1].day,
            reason=f"quality below floor on {span}: {'; '.join(recent[-1].breaches)}",
        )
    if all(_drifted(s, policy) for s in recent):
        last = recent[-1]
        why = ", ".join(last.drift_errors) or last.drift_reason or "the score distribution"
        return Trigger(key=f"drift:{span}", day=last.day, reason=f"drift on {span} in {why}")
    return None


def _drifted(status: DayStatus, policy: RetrainPolicy) -> bool:
    if status.drift_alarm is not None:
        return status.drift_alarm
    return any(f in policy.important_features for f in status.drift_errors)


def labels_trigger(history: list[DayStatus], policy: RetrainPolicy) -> Trigger | None:
    """Retrain when ``new_label_days`` days of labeled predictions arrived since the last one."""
    labeled = sorted(s.day for s in history if s.judged)
    if len(labeled) < policy.new_label_days:
        return None
    return Trigger(
        key=f"labels:{labeled[-1]}",
        day=labeled[-1],
        reason=f"{len(labeled)} newly labeled days ({labeled[0]}..{labeled[-1]})",
    )


def training_window(last_day: str, policy: RetrainPolicy) -> tuple[str, str]:
    """The sliding window ending on the last labeled day."""
    end = date.fromisoformat(last_day)
    start = max(date(2013, 1, 1), end - timedelta(days=policy.window_days - 1))
    return start.isoformat(), end.isoformat()


@dataclass
class RetrainRecord:
    """Why a training ran, on which data, and what the gate said."""

    recorded_at: str
    dagster_run_id: str
    trigger: str  # sensor or schedule name, "manual", "demo", ...
    reason: str
    day: str | None
    data_window: str
    challenger_version: str
    decision: str
    auc_before: float | None
    auc_after: float | None
    champion_version: str
    replay_id: str | None = None  # the replay that started the run (None: not a replay's)


def append_retrain(url: str | Path, record: RetrainRecord) -> str:
    """Add ``record`` to the retrain records at ``url`` (a folder or an ``s3://`` prefix): one
    JSON object per record, written atomically under a name no other writer uses, so steps
    on different machines add records without a shared file to append to. Returns its URL."""
    stamp = "".join(c for c in record.recorded_at if c.isalnum())
    target = storage.join(str(url), f"{stamp}-{uuid.uuid4().hex}.json")
    storage.write_bytes_atomic(target, json.dumps(asdict(record)).encode())
    return target


def read_retrains(url: str | Path) -> list[dict[str, Any]]:
    """Every retrain record at ``url``, oldest first."""
    return [json.loads(storage.read_bytes(u)) for u in storage.list_files(str(url), ".json")]


def retrain_events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retrains as the report shows them: one row per training run (``day``, ``reason``,
    ``outcome``, ``auc_before``, ``auc_after``, ``version``, ``rolled_back``). A challenger the
    gate passed was the candidate, in shadow; the record of its review (trigger
    :data:`REVIEW_TRIGGER`) gives its outcome (promoted or rejected) and joins its reason. One
    without a review (replaced by a newer candidate, or the replay ended first) stays
    ``shadow``. A promoted version later rolled back to the baseline (trigger
    :data:`ROLLBACK_TRIGGER`) keeps its row, with the rollback's day and reason joined."""
    joined = (REVIEW_TRIGGER, ROLLBACK_TRIGGER)
    reviews = {r["challenger_version"]: r for r in records if r["trigger"] == REVIEW_TRIGGER}
    rollbacks = {r["challenger_version"]: r for r in records if r["trigger"] == ROLLBACK_TRIGGER}
    rows = []
    for r in records:
        if r["trigger"] in joined:
            continue
        review = reviews.get(r["challenger_version"])
        rollback = rollbacks.get(r["challenger_version"])
        rows.append(
            {
                # a retrain without a monitored day (bootstrap, by hand): its data's last day
                "day": r["day"] or r["data_window"].split("..")[-1],
                "reason": r["reason"]
                + (f" -> reviewed {review['day']}: {review['reason']}" if review else "")
                + (f" -> rolled back {rollback['day']}: {rollback['reason']}" if rollback else ""),
                "outcome": (review or r)["decision"],
                "auc_before": r["auc_before"],
                "auc_after": r["auc_after"],
                "version": r["challenger_version"],
                "rolled_back": rollback["day"] if rollback else None,
            }
        )
    return rows


@dataclass(frozen=True)
class ReplayRecord:
    """The replay a state folder last ran: the report covers its days and its retrains."""

    replay_id: str
    start: str
    end: str
    started_at: str
    baseline_version: str | None
    drift_mode: str

    def covers(self, day: str) -> bool:
        return self.start <= str(day)[:10] <= self.end


def write_replay(url: str | Path, record: ReplayRecord) -> None:
    """Record the replay at ``url`` (a path or an ``s3://`` URL), atomically."""
    storage.write_bytes_atomic(str(url), json.dumps(asdict(record), indent=1).encode())


def read_replay(url: str | Path) -> ReplayRecord | None:
    """The last replay's record, or None when this state folder has seen no replay."""
    if not storage.exists(str(url)):
        return None
    return ReplayRecord(**json.loads(storage.read_bytes(str(url))))
