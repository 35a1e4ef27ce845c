"""Monitoring math on constructed data: known PSI, KS, chi-square and AUC values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dagster_project.monitoring import measures
from dagster_project.monitoring.measures import Thresholds

EPS = measures.EPSILON


# --- PSI and KS on numbers --------------------------------------------------------------------


def test_psi_of_identical_and_resampled_distributions_is_about_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=20_000)
    assert measures.psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert measures.psi(a, rng.normal(size=20_000)) < 0.01


def test_psi_matches_a_hand_computed_value():
    # Reference 0..7, 4 bins: quartile cuts 1.75, 3.5, 5.25 -> shares 1/4 each.
    ref = np.arange(8, dtype=float)
    cur = np.array([0, 0, 0, 0, 2, 4, 6, 6], dtype=float)  # shares 1/2, 1/8, 1/8, 1/4
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + 2 * (0.125 - 0.25) * math.log(0.125 / 0.25)
    assert expected == pytest.approx(0.5 * math.log(2))
    assert measures.psi(ref, cur, bins=4) == pytest.approx(expected, abs=1e-6)


def test_psi_gives_empty_bins_the_epsilon_share():
    ref = np.arange(8, dtype=float)
    cur = np.array([0, 1, 2, 3, 0, 1, 2, 3], dtype=float)  # shares 1/2, 1/2, 0, 0
    expected = 2 * (0.5 - 0.25) * math.log(2) + 2 * (EPS - 0.25) * math.log(EPS / 0.25)
    assert measures.psi(ref, cur, bins=4) == pytest.approx(expected, abs=1e-6)


def test_psi_sees_values_beyond_the_reference_range():
    # Outer edges are infinite: values far outside the reference land in the outer bins.
    ref = np.arange(100, dtype=float)
    assert measures.psi(ref, np.full(50, 1e6)) > 1.0
    assert measures.psi(ref, np.full(50, -1e6)) > 1.0


def test_shifted_normal_is_major_drift_for_psi_and_ks():
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(size=5000), rng.normal(loc=1.0, size=2000)
    assert measures.psi(ref, cur) > 0.25
    statistic, p_value = measures.ks(ref, cur)
    assert statistic > 0.3
    assert p_value < 0.01
    same_stat, same_p = measures.ks(ref, rng.normal(size=2000))
    assert same_stat < 0.05
    assert same_p > 0.01


def test_nans_are_dropped_and_empty_sides_are_neutral():
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=1000), rng.normal(loc=0.5, size=500)
    with_nans = np.r_[cur, [np.nan] * 300]
    assert measures.psi(ref, with_nans) == pytest.approx(measures.psi(ref, cur))
    assert measures.ks(ref, with_nans) == pytest.approx(measures.ks(ref, cur))
    assert measures.psi(ref, np.array([np.nan, np.nan])) == 0.0
    assert measures.ks(np.array([]), cur) == (0.0, 1.0)


def test_constant_reference_sees_a_shift_either_way():
    ref = np.full(500, 3.0)
    assert measures.psi(ref, np.full(100, 3.0)) == pytest.approx(0.0)
    assert measures.psi(ref, np.full(100, 4.0)) > 1.0
    assert measures.psi(ref, np.full(100, 2.0)) > 1.0


# --- categories ---------------------------------------------------------------------------------


def test_categorical_psi_on_known_shares():
    ref = pd.Series(["a"] * 50 + ["b"] * 50)
    cur = pd.Series(["a"] * 80 + ["b"] * 20)
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert measures.categorical_psi(ref, cur) == pytest.approx(expected, abs=1e-9)
    assert measures.categorical_psi(ref, ref.sample(frac=1, random_state=0)) == 0.0


def test_categorical_psi_handles_unseen_categories():
    ref = pd.Series(["a", "b"] * 50)
    cur = pd.Series(["a", "c"] * 50)  # b vanished, c is new
    expected = 2 * (0.5 - EPS) * math.log(0.5 / EPS)
    value = measures.categorical_psi(ref, cur)
    assert math.isfinite(value)
    assert value == pytest.approx(expected, abs=1e-9)


def test_chi_square_on_known_counts():
    ref = pd.Series(["a"] * 500 + ["b"] * 500)
    cur = pd.Series(["a"] * 60 + ["b"] * 40)  # expected 50/50: chi2 = 2 * 10**2 / 50 = 4
    statistic, p_value = measures.chi_square(ref, cur)
    assert statistic == pytest.approx(4.0)
    assert p_value == pytest.approx(stats.chi2.sf(4.0, df=1))
    assert measures.chi_square(ref, pd.Series(["a"] * 50 + ["b"] * 50)) == pytest.approx((0.0, 1.0))


def test_chi_square_pools_rare_and_unseen_categories():
    ref = pd.Series(["a"] * 495 + ["b"] * 495 + ["rare"] * 10)
    same = pd.Series(["a"] * 50 + ["b"] * 50)
    statistic, p_value = measures.chi_square(ref, same)
    assert math.isfinite(statistic)
    assert p_value > 0.5
    unseen = pd.Series(["a"] * 40 + ["b"] * 40 + ["zz"] * 20)
    statistic, p_value = measures.chi_square(ref, unseen)
    assert math.isfinite(statistic)
    assert p_value < 0.01
    assert measures.chi_square(ref, pd.Series([], dtype=object)) == (0.0, 1.0)


# --- feature and prediction drift ----------------------------------------------------------------


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 5000
    ref = pd.DataFrame(
        {
            "stable": rng.normal(size=n),
            "shifted": rng.normal(size=n),
            "nudged": rng.normal(size=n),
            "carrier": rng.choice(["AA", "UA", "B6"], n),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        }
    )
    cur = pd.DataFrame(
        {
            "stable": rng.normal(size=n),
            "shifted": rng.normal(loc=2.0, size=n),
            "nudged": rng.normal(loc=0.4, size=n),
            "carrier": rng.choice(["AA", "UA", "B6", "9E"], n, p=[0.1, 0.1, 0.1, 0.7]),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
        }
    )
    return ref, cur


def test_feature_drift_levels_and_order():
    ref, cur = _frames()
    drift = measures.feature_drift(
        ref, cur, ["stable", "shifted", "nudged", "absent"], ["carrier", "origin"], Thresholds()
    )
    assert list(drift.columns) == ["feature", "kind", "psi", "statistic", "p_value", "level"]
    assert set(drift["feature"]) == {"stable", "shifted", "nudged", "carrier", "origin"}
    assert list(drift["psi"]) == sorted(drift["psi"], reverse=True)
    level = dict(zip(drift["feature"], drift["level"], strict=True))
    kind = dict(zip(drift["feature"], drift["kind"], strict=True))
    assert level == {
        "shifted": "error",
        "carrier": "error",
        "nudged": "warn",
        "stable": "ok",
        "origin": "ok",
    }
    assert kind["carrier"] == "categorical"
    assert kind["shifted"] == "numeric"
    nudged = drift.set_index("feature").loc["nudged"]
    assert 0.1 <= nudged["psi"] < 0.25


def test_feature_drift_needs_a_significant_test_for_error():
    ref, cur = _frames()
    strict = Thresholds(ks_pvalue=0.0)  # no p-value is below 0: nothing can be an error
    drift = measures.feature_drift(ref, cur, ["shifted"], ["carrier"], strict)
    assert set(drift["level"]) == {"warn"}


def test_feature_drift_with_nothing_in_common_is_an_empty_frame():
    drift = measures.feature_drift(
        pd.DataFrame({"a": [1.0]}), pd.DataFrame({"b": [1.0]}), ["a", "b"], [], Thresholds()
    )
    assert drift.empty
    assert list(drift.columns) == list(measures.DRIFT_COLUMNS)


def test_prediction_drift():
    rng = np.random.default_rng(4)
    ref = rng.beta(2, 5, size=4000)
    same = measures.prediction_drift(ref, rng.beta(2, 5, size=4000))
    assert same["psi"] < 0.02
    assert same["ks_p_value"] > 0.01
    moved = measures.prediction_drift(ref, rng.beta(5, 2, size=4000))
    assert moved["psi"] > 0.25
    assert moved["ks_p_value"] < 0.01
    assert moved["reference_mean"] == pytest.approx(ref.mean())
    assert moved["current_mean"] == pytest.approx(5 / 7, abs=0.02)


# --- daily quality -----------------------------------------------------------------------------


def _day(probs: list[float], labels: list[float], repeat: int) -> pd.DataFrame:
    p = np.tile(probs, repeat)
    return pd.DataFrame({"probability": p, "delayed": p >= 0.5, "label": np.tile(labels, repeat)})


def test_daily_quality_perfect_ranking():
    q = measures.daily_quality(_day([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 60), Thresholds())
    assert q["roc_auc"] == 1.0
    assert q["accuracy"] == 1.0
    assert q["volume"] == q["labeled"] == 240
    assert q["judged"] is True


def test_daily_quality_hand_built_auc_brier_and_breaches():
    # Positive 0.4 beats negative 0.1 but loses to 0.6; positive 0.9 beats both: AUC 3/4.
    day = _day([0.1, 0.6, 0.4, 0.9], [0, 0, 1, 1], 100)
    q = measures.daily_quality(day, Thresholds())
    assert q["roc_auc"] == pytest.approx(0.75)
    assert q["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert q["calibration_error"] == pytest.approx((0.1 + 0.6 + 0.6 + 0.1) / 4)
    assert q["positive_rate"] == pytest.approx(0.5)
    assert q["predicted_positive_rate"] == pytest.approx(0.5)
    assert q["mean_probability"] == pytest.approx(0.5)
    assert q["accuracy"] == pytest.approx(0.5)
    assert q["judged"] is True
    assert q["breaches"] == ["calibration error 0.350 above max 0.15"]
    strict = measures.daily_quality(day, Thresholds(auc_floor=0.8, calibration_error_max=0.5))
    assert strict["breaches"] == ["ROC AUC 0.750 below floor 0.8"]


def test_daily_quality_is_not_judged_on_few_labels():
    day = _day([0.1, 0.6, 0.4, 0.9], [0, 0, 1, 1], 10)
    day.loc[:9, "label"] = np.nan  # outcomes not in yet
    q = measures.daily_quality(day, Thresholds(auc_floor=0.99))
    assert q["volume"] == 40
    assert q["labeled"] == 30
    assert q["roc_auc"] is not None
    assert q["judged"] is False
    assert q["breaches"] == []


def test_daily_quality_single_class_and_no_labels():
    one_class = _day([0.2, 0.7], [0, 0], 150)
    q = measures.daily_quality(one_class, Thresholds())
    assert q["roc_auc"] is None
    assert q["brier"] == pytest.approx((0.04 + 0.49) / 2)
    unlabeled = _day([0.2, 0.7], [np.nan, np.nan], 5)
    q = measures.daily_quality(unlabeled, Thresholds())
    assert q["labeled"] == 0
    assert q["roc_auc"] is None
    assert q["brier"] is None
    assert q["positive_rate"] is None
    assert q["predicted_positive_rate"] == pytest.approx(0.5)


# --- the prediction log and labels ----------------------------------------------------------------


def _record(flight_id: str | None, p: float, logged_at: str, version: str = "3") -> dict:
    return {
        "request_id": f"r-{flight_id}-{logged_at}",
        "logged_at": logged_at,
        "scheduled_date": "2013-08-01",
        "flight": {
            "flight_id": flight_id,
            "carrier": "UA",
            "origin": "EWR",
            "dest": "ORD",
            "tailnum": "N24211",
            "scheduled_departure": "2013-08-01T08:00:00",
            "distance": 719.0,
        },
        "probability": p,
        "delayed": p >= 0.4,
        "threshold": 0.4,
        "model_name": "flight_delay",
        "model_version": version,
        "model_kind": "xgboost",
        "features": {"carrier": "UA", "origin": "EWR", "temp": 71.5, "wind_gust": None},
        "fallback": False,
        "fallbacks": [],
        "missing_features": ["wind_gust"],
    }


def test_predictions_frame_flattens_records():
    df = measures.predictions_frame(
        [_record("f1", 0.7, "2013-08-01T06:00:00+00:00"), _record(None, 0.1, "2013-08-01T07:00")]
    )
    assert len(df) == 2
    assert df.loc[0, "flight_id"] == "f1"
    assert df.loc[0, "carrier"] == "UA"
    assert df.loc[0, "temp"] == 71.5
    assert df["wind_gust"].dtype == "float64"
    assert df["wind_gust"].isna().all()
    assert df["delayed"].tolist() == [True, False]
    assert df.loc[0, "model_version"] == "3"
    for c in measures.PREDICTION_COLUMNS:
        assert c in df.columns
    assert list(measures.predictions_frame([]).columns)[: len(measures.PREDICTION_COLUMNS)] == (
        list(measures.PREDICTION_COLUMNS)
    )


def test_join_labels_keeps_the_last_prediction_and_drops_cancelled():
    records = [
        _record("f1", 0.9, "2013-08-01T10:00:00+00:00", version="4"),  # later, logged first
        _record("f1", 0.2, "2013-08-01T09:00:00+00:00", version="3"),
        _record("f2", 0.5, "2013-08-01T09:00:00+00:00"),
        _record("f3", 0.3, "2013-08-01T09:00:00+00:00"),
        _record(None, 0.3, "2013-08-01T09:00:00+00:00"),
    ]
    outcomes = pd.DataFrame(
        {"flight_id": ["f1", "f2", "f3", "f9"], "label": [1, np.nan, 0, 1]}
    )  # f2 cancelled, f9 never predicted
    joined = measures.join_labels(measures.predictions_frame(records), outcomes)
    assert sorted(joined["flight_id"]) == ["f1", "f3"]
    f1 = joined.set_index("flight_id").loc["f1"]
    assert f1["probability"] == 0.9
    assert f1["model_version"] == "4"
    assert joined["label"].dtype == "int64"
    assert dict(zip(joined["flight_id"], joined["label"], strict=True)) == {"f1": 1, "f3": 0}


def test_join_labels_without_logged_at_keeps_the_last_row_and_honours_cancelled():
    preds = pd.DataFrame({"flight_id": ["a", "a", "b"], "probability": [0.1, 0.8, 0.4]})
    outcomes = pd.DataFrame({"flight_id": ["a", "b"], "label": [0, 1], "cancelled": [False, True]})
    joined = measures.join_labels(preds, outcomes)
    assert joined["flight_id"].tolist() == ["a"]
    assert joined["probability"].tolist() == [0.8]
