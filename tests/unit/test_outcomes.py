"""Alarms judged against later quality drops, and the served model against the frozen one, on
hand-built histories with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dagster_project.monitoring import outcomes
from dagster_project.monitoring.measures import Thresholds
from dagster_project.training.preprocess import CATEGORICAL, NUMERIC


def _days(n: int, start: str = "2013-07-01") -> list[str]:
    return list(pd.date_range(start, periods=n, freq="D").strftime("%Y-%m-%d"))


def _history(auc, alarms=None, shadow=None, judged=None, versions=None) -> pd.DataFrame:
    n = len(auc)
    return pd.DataFrame(
        {
            "day": _days(n),
            "roc_auc": auc,
            "judged": judged if judged is not None else [True] * n,
            "calibrated_alarm": alarms if alarms is not None else [False] * n,
            "fixed_alarm": [True] * n,
            "shadow_roc_auc": shadow if shadow is not None else [np.nan] * n,
            "shadow_version": ["1"] * n,
            "model_version": versions if versions is not None else ["1"] * n,
        }
    )


RULE = outcomes.DropRule(auc_floor=0.6, auc_margin=0.05, baseline_days=3)


def test_a_drop_is_below_the_floor_or_below_the_trailing_median_by_the_margin():
    auc = [0.72, 0.70, 0.71, 0.64, 0.70, 0.58, np.nan, 0.72]
    judged = [True, True, True, True, True, True, True, False]
    drops = outcomes.quality_drops(_history(auc, judged=judged), RULE)
    assert drops["drop"].tolist() == [False, False, False, True, False, True, False, False]
    # day 4: median of 0.72, 0.70, 0.71 is 0.71; 0.64 < 0.71 - 0.05
    assert drops.loc[3, "baseline"] == pytest.approx(0.71)
    assert "trailing median" in drops.loc[3, "why"]
    assert "floor" in drops.loc[5, "why"]
    # only the last 3 judged AUCs make the baseline (0.71, 0.64, 0.70 before day 6)
    assert drops.loc[5, "baseline"] == pytest.approx(0.70)
    # a day without labels to judge (last) never drops, whatever its AUC
    assert not drops["drop"].iloc[-1]
    assert np.isnan(drops.loc[0, "baseline"])


def test_alarm_precision_and_recall_on_a_known_timeline():
    # alarms on days 1 and 8; drops on days 3 (within 7 days of 1) and 20 (no alarm before)
    n = 25
    auc = [0.72] * n
    auc[2] = auc[19] = 0.55
    alarms = [False] * n
    alarms[0] = alarms[7] = True
    drops = outcomes.quality_drops(_history(auc, alarms=alarms), RULE)
    score = outcomes.judge_alarms(_history(auc, alarms=alarms), "calibrated_alarm", drops, 7)
    assert (score.alarms, score.followed, score.drops, score.preceded) == (2, 1, 2, 1)
    assert score.precision == pytest.approx(0.5)
    assert score.recall == pytest.approx(0.5)
    assert score.missed == ["2013-07-20"]
    assert score.alarm_days == ["2013-07-01", "2013-07-08"]
    # the same day does not count: an alarm must come before the drop
    same = [False] * n
    same[2] = True
    s = outcomes.judge_alarms(_history(auc, alarms=same), "calibrated_alarm", drops, 7)
    assert (s.followed, s.preceded) == (0, 0)
    # a horizon too short to reach the drop on day 3 from day 1
    short = outcomes.judge_alarms(_history(auc, alarms=alarms), "calibrated_alarm", drops, 1)
    assert short.followed == 0


def test_no_alarm_or_no_drop_leaves_precision_or_recall_undefined():
    h = _history([0.7] * 10)
    drops = outcomes.quality_drops(h, RULE)
    s = outcomes.judge_alarms(h, "calibrated_alarm", drops, 7)
    assert s.precision is None
    assert s.recall is None
    always = outcomes.judge_alarms(h, "fixed_alarm", drops, 7)
    assert always.alarms == 10
    assert always.precision == 0.0


def test_block_bootstrap_interval_covers_the_mean_and_is_reproducible():
    rng = np.random.default_rng(0)
    gain = 0.01 + rng.normal(0, 0.02, 180)
    low, high = outcomes.block_bootstrap_mean(gain, block=7, seed=3)
    assert low < gain.mean() < high
    assert (low, high) == outcomes.block_bootstrap_mean(gain, block=7, seed=3)
    # about the width the standard error gives for independent days (1.96 * 0.02 / sqrt(180))
    assert 0.004 < high - low < 0.009
    # constant gains: a zero-width interval at the value
    assert outcomes.block_bootstrap_mean(np.full(30, 0.02)) == pytest.approx((0.02, 0.02))
    assert np.isnan(outcomes.block_bootstrap_mean([])[0])


def test_block_bootstrap_widens_for_autocorrelated_days():
    rng = np.random.default_rng(1)
    noise = np.repeat(rng.normal(0, 0.02, 26), 7)[:180]  # week-long runs of the same gain
    iid_low, iid_high = outcomes.block_bootstrap_mean(noise, block=1)
    blk_low, blk_high = outcomes.block_bootstrap_mean(noise, block=7)
    assert blk_high - blk_low > 1.5 * (iid_high - iid_low)


def test_retraining_value_is_the_mean_gain_over_days_with_both_models():
    served = [0.70, 0.72, 0.74, np.nan, 0.76]
    frozen = [0.70, 0.70, 0.70, 0.70, np.nan]
    value = outcomes.retraining_value(_history(served, shadow=frozen))
    assert value.days == 3
    assert value.mean_gain == pytest.approx((0.0 + 0.02 + 0.04) / 3)
    assert value.low <= value.mean_gain <= value.high
    assert value.frozen_version == "1"
    assert "+0.0200" in value.describe()
    none = outcomes.retraining_value(_history([0.7, 0.7]))
    assert none.mean_gain is None
    assert "no day" in none.describe()


def test_each_promotion_gets_the_mean_auc_of_both_models_over_its_first_days():
    served = [0.70] * 10 + [0.75] * 20
    frozen = [0.70] * 10 + [0.71] * 20
    versions = ["1"] * 10 + ["2"] * 20
    h = _history(served, shadow=frozen, versions=versions)
    (row,) = outcomes.promotion_windows(h, [{"version": "2"}], days=14)
    assert row["first_served"] == "2013-07-11"
    assert row["days"] == 14
    assert row["served_auc"] == pytest.approx(0.75)
    assert row["frozen_auc"] == pytest.approx(0.71)
    (never,) = outcomes.promotion_windows(h, [{"version": "3"}], days=14)
    assert never["first_served"] is None
    assert never["served_auc"] is None


def test_assess_judges_both_rules_and_names_the_one_that_drove():
    auc = [0.72] * 20
    auc[5] = 0.5
    alarms = [False] * 20
    alarms[3] = True
    h = _history(auc, alarms=alarms, shadow=[0.7] * 20)
    t = Thresholds(drift_mode="calibrated", auc_floor=0.6, alarm_horizon_days=7)
    a = outcomes.assess(h, [{"outcome": "promoted", "version": "1", "day": "2013-07-02"}], t)
    figures = a.figures()
    assert figures["drift_mode"] == "calibrated"
    assert (figures["alarms"], figures["alarm_precision"], figures["alarm_recall"]) == (1, 1.0, 1.0)
    assert figures["by_rule"]["fixed"]["alarms"] == 20
    # always on: of its 20 alarm days, the 5 before day 6 are followed by its drop
    assert figures["by_rule"]["fixed"]["precision"] == pytest.approx(5 / 20)
    assert figures["mean_auc_gain"] == pytest.approx(np.mean(np.array(auc) - 0.7))
    assert a.promotions[0]["first_served"] == "2013-07-01"
    empty = outcomes.assess(pd.DataFrame(columns=["day"]), [], t)
    assert empty.figures()["alarms"] == 0
    assert empty.value.mean_gain is None


class _Doubler:
    """A stand-in model: twice the logged wind speed, capped at 1."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.minimum(1.0, frame["wind_speed"].to_numpy() / 20)


def test_the_shadow_scores_the_logged_features_of_the_labeled_flights():
    rng = np.random.default_rng(0)
    labeled = pd.DataFrame({c: np.nan for c in NUMERIC}, index=range(400))
    labeled[list(CATEGORICAL)] = ["UA", "EWR", "EWR-ORD"]
    labeled["wind_speed"] = rng.uniform(0, 20, 400)
    labeled["probability"], labeled["delayed"] = 0.5, False
    labeled["label"] = (labeled["wind_speed"] > 10).astype(int)
    q = outcomes.shadow_quality(_Doubler(), labeled, Thresholds())
    assert q["roc_auc"] == pytest.approx(1.0)
    assert q["labeled"] == 400
    assert q["brier"] is not None
