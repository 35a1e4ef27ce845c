"""Retraining rules: breaches, drift, new labels, cooldown, the sliding window."""

import ast
import dataclasses
from pathlib import Path

import pandas as pd

from dagster_project.defs.run_config import retrain_run_config
from dagster_project.monitoring import retraining

POLICY = retraining.RetrainPolicy(breach_days=2, new_label_days=3, window_days=30, cooldown_days=5)


def _day(day, judged=True, breaches=(), drift=()):
    return retraining.DayStatus(day, judged, list(breaches), list(drift))


def test_two_bad_days_in_a_row_trigger_one_keyed_retrain():
    history = [_day("2013-07-01", breaches=["AUC low"]), _day("2013-07-02", breaches=["AUC low"])]
    trigger = retraining.breach_trigger(history, POLICY)
    assert trigger is not None
    assert trigger.key == "quality:2013-07-01..2013-07-02"
    assert trigger.day == "2013-07-02"
    assert "AUC low" in trigger.reason


def test_one_bad_day_or_a_healthy_one_triggers_nothing():
    assert retraining.breach_trigger([_day("2013-07-01", breaches=["x"])], POLICY) is None
    mixed = [_day("2013-07-01", breaches=["x"]), _day("2013-07-02")]
    assert retraining.breach_trigger(mixed, POLICY) is None
    unjudged = [_day("2013-07-01", False, ["x"]), _day("2013-07-02", False, ["x"])]
    assert retraining.breach_trigger(unjudged, POLICY) is None


def test_persistent_drift_on_an_important_feature_triggers():
    history = [_day("2013-07-01", drift=["visib"]), _day("2013-07-02", drift=["visib", "temp"])]
    trigger = retraining.breach_trigger(history, POLICY)
    assert trigger is not None
    assert trigger.key.startswith("drift:")
    assert "visib" in trigger.reason
    unimportant = [_day("2013-07-01", drift=["temp"]), _day("2013-07-02", drift=["temp"])]
    assert retraining.breach_trigger(unimportant, POLICY) is None


def test_the_recorded_drift_alarm_decides_when_there_is_one():
    # the calibrated alarm: whatever drifted, the alarm monitoring recorded is what counts
    on = [
        retraining.DayStatus("2013-07-01", True, [], ["temp"], drift_alarm=True),
        retraining.DayStatus("2013-07-02", True, [], ["temp", "humid"], drift_alarm=True),
    ]
    trigger = retraining.breach_trigger(on, POLICY)
    assert trigger is not None
    assert trigger.key == "drift:2013-07-01..2013-07-02"
    assert "temp, humid" in trigger.reason
    # drifted features, even important ones, without the alarm: no retrain
    off = [
        retraining.DayStatus("2013-07-01", True, [], ["visib"], drift_alarm=False),
        retraining.DayStatus("2013-07-02", True, [], ["visib"], drift_alarm=True),
    ]
    assert retraining.breach_trigger(off, POLICY) is None
    # only the score distribution drifted: the reason says what the alarm said
    scores = [
        retraining.DayStatus(d, True, [], [], drift_alarm=True, drift_reason="scores drifted")
        for d in ("2013-07-01", "2013-07-02")
    ]
    assert "scores drifted" in retraining.breach_trigger(scores, POLICY).reason


def test_cooldown_after_the_last_retrain():
    history = [_day("2013-07-03", breaches=["x"]), _day("2013-07-04", breaches=["x"])]
    assert retraining.breach_trigger(history, POLICY, last_trigger="2013-07-01") is None
    later = [_day("2013-07-06", breaches=["x"]), _day("2013-07-07", breaches=["x"])]
    assert retraining.breach_trigger(later, POLICY, last_trigger="2013-07-01") is not None


def test_new_labels_trigger_after_enough_labeled_days():
    assert retraining.labels_trigger([_day("2013-07-01"), _day("2013-07-02")], POLICY) is None
    days = [_day(f"2013-07-0{i}") for i in range(1, 4)] + [_day("2013-07-04", judged=False)]
    trigger = retraining.labels_trigger(days, POLICY)
    assert trigger is not None
    assert trigger.key == "labels:2013-07-03"


def test_sliding_window_and_run_config():
    assert retraining.training_window("2013-09-30", POLICY) == ("2013-09-01", "2013-09-30")
    assert retraining.training_window("2013-01-10", POLICY) == ("2013-01-01", "2013-01-10")
    config = retrain_run_config(retraining.Trigger("k", "2013-09-30", "r"), POLICY)
    assert config["ops"]["training_set"]["config"] == {
        "start_date": "2013-09-01",
        "end_date": "2013-09-30",
        "feature_service": "flight_delay_v2",  # the policy's defaults: v2, 60 minutes ahead
        "prediction_time": "lead",
        "prediction_lead_minutes": 60,
    }
    daily = dataclasses.replace(
        POLICY, feature_service="flight_delay_v1", prediction_time="day_start"
    )
    config = retrain_run_config(retraining.Trigger("k", "2013-09-30", "r"), daily)
    assert config["ops"]["training_set"]["config"]["prediction_time"] == "day_start"
    assert config["ops"]["training_set"]["config"]["feature_service"] == "flight_delay_v1"
    assert config["ops"]["flight_delay_model"]["config"]["holdout_days"] == POLICY.holdout_days


def test_labels_drop_cancelled_flights():
    flights = pd.DataFrame(
        {
            "flight_id": ["a", "b", "c"],
            "dep_delay": [30.0, 2.0, None],
            "cancelled": [False, False, True],
        }
    )
    assert retraining.labels(flights).to_dict("records") == [
        {"flight_id": "a", "label": 1},
        {"flight_id": "b", "label": 0},
    ]


def test_retrain_record_round_trip(tmp_path):
    record = retraining.RetrainRecord(
        "2013-07-02T00:00:00",
        "run",
        "quality_breach_sensor",
        "why",
        "2013-07-02",
        "2013-03-04..2013-07-02",
        "3",
        "promoted",
        0.70,
        0.72,
        "3",
    )
    retraining.append_retrain(tmp_path / "r", record)
    retraining.append_retrain(tmp_path / "r", record)
    rows = retraining.read_retrains(tmp_path / "r")
    assert len(rows) == 2
    assert rows[0]["decision"] == "promoted"


def _record(trigger: str, day: str, version: str, decision: str, reason: str = "why") -> dict:
    return dataclasses.asdict(
        retraining.RetrainRecord(
            f"{day}T00:00:00", "run", trigger, reason, day, "2013-03-04..2013-07-02", version,
            decision, 0.70, 0.72, "1",
        )
    )  # fmt: skip


def test_a_candidates_review_gives_its_retrain_row_its_outcome():
    """A retrain the gate passed (shadow) shows what its review decided; one the review never
    reached stays in shadow; the reviews are not retrains of their own."""
    rows = retraining.retrain_events(
        [
            _record("quality_breach_sensor", "2013-07-05", "2", "shadow"),
            _record("new_labels_sensor", "2013-07-10", "3", "rejected"),
            _record(
                retraining.REVIEW_TRIGGER, "2013-07-19", "2", "rejected", "not better in shadow"
            ),
            _record("quality_breach_sensor", "2013-07-25", "4", "shadow"),
            _record("quality_breach_sensor", "2013-08-10", "5", "shadow"),
            _record(retraining.REVIEW_TRIGGER, "2013-08-24", "5", "promoted", "better in shadow"),
        ]
    )
    assert [(r["version"], r["outcome"]) for r in rows] == [
        ("2", "rejected"),
        ("3", "rejected"),
        ("4", "shadow"),
        ("5", "promoted"),
    ]
    assert rows[0]["reason"] == "why -> reviewed 2013-07-19: not better in shadow"
    assert rows[0]["day"] == "2013-07-05"


def test_a_rollback_joins_the_promoted_versions_row_and_is_no_retrain_of_its_own():
    rows = retraining.retrain_events(
        [
            _record("quality_breach_sensor", "2013-08-25", "7", "shadow"),
            _record(retraining.REVIEW_TRIGGER, "2013-09-08", "7", "promoted", "better in shadow"),
            _record("new_labels_sensor", "2013-09-22", "8", "rejected"),
            _record(retraining.ROLLBACK_TRIGGER, "2013-10-29", "7", "rolled back", "behind v1"),
        ]
    )
    assert [(r["version"], r["outcome"], r["rolled_back"]) for r in rows] == [
        ("7", "promoted", "2013-10-29"),
        ("8", "rejected", None),
    ]
    assert rows[0]["reason"] == (
        "why -> reviewed 2013-09-08: better in shadow -> rolled back 2013-10-29: behind v1"
    )


def test_the_airflow_weekly_retrain_trains_on_the_policys_window():
    """The DAGs' package cannot import the platform (import contract), so it keeps copies of the
    policy's window; they must not drift apart (they once did: 120 days vs the policy's 365)."""
    operators = (
        Path(__file__).resolve().parents[2] / "airflow_dags" / "dagster_trigger" / "operators.py"
    )
    copies = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(operators.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in {"WINDOW_DAYS", "HOLDOUT_DAYS", "VALIDATION_DAYS"}
    }
    policy = retraining.RetrainPolicy()
    assert copies == {
        "WINDOW_DAYS": policy.window_days,
        "HOLDOUT_DAYS": policy.holdout_days,
        "VALIDATION_DAYS": policy.validation_days,
    }
