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


RULE = outcomes.DropRule(auc_floor=0.6, auc_margin=0.03, baseline_days=6, window_days=3)


def test_a_drop_is_a_week_below_the_floor_or_below_the_median_before_it():
    # weeks of 3 judged days, baselines of up to 6 judged days before them
    auc = [0.72, 0.70, 0.71, 0.72, 0.70, 0.71, 0.72, 0.62, 0.60, 0.74, 0.61, 0.74, 0.75, 0.74]
    auc += [0.5, 0.5, 0.5]
    judged = [True] * len(auc)
    judged[9] = False  # an unjudged day: neither a drop nor the end of one
    drops = outcomes.quality_drops(_history(auc, judged=judged), RULE)
    # no week before 3 judged days, no baseline before 3 more
    assert np.isnan(drops.loc[1, "week_auc"])
    assert np.isnan(drops.loc[4, "baseline"])
    assert drops.loc[5, "baseline"] == pytest.approx(np.median([0.72, 0.70, 0.71]))
    # 8 July: the week 0.71, 0.72, 0.62 (mean 0.683) is not 0.03 below the median 0.71 before
    assert drops.loc[7, "week_auc"] == pytest.approx(np.mean([0.71, 0.72, 0.62]))
    assert not drops.loc[7, "drop"]
    # 9 July: 0.72, 0.62, 0.60 (mean 0.647) is: a drop starts
    assert drops.loc[8, "drop"]
    assert drops.loc[8, "onset"]
    assert "median before" in drops.loc[8, "why"]
    # it runs on over the unjudged 10 July to 12 July; a second drop starts on 16 July
    assert drops["drop"].tolist() == [False] * 8 + [True, False, True, True] + [False] * 3 + [
        True,
        True,
    ]
    assert drops.loc[drops["onset"], "day"].tolist() == ["2013-07-09", "2013-07-16"]
    assert "floor" in drops.loc[15, "why"]  # a week mean of 0.58 is below the floor 0.6


def _dropping(n: int, at: list[int]) -> list[float]:
    """Steady days with a week of bad ones from each index in ``at``."""
    auc = [0.72] * n
    for i in at:
        for k in range(i, min(n, i + 3)):
            auc[k] = 0.55
    return auc


def test_alarm_precision_and_recall_on_a_known_timeline():
    n = 40
    auc = _dropping(n, [12, 30])  # drops start on days 13 and 31 (index 12 and 30)
    alarms = [False] * n
    alarms[8] = alarms[20] = True  # the first 4 days before a drop, the other not
    h = _history(auc, alarms=alarms)
    drops = outcomes.quality_drops(h, RULE)
    assert drops.loc[drops["onset"], "day"].tolist() == ["2013-07-13", "2013-07-31"]
    score = outcomes.judge_alarms(h, "calibrated_alarm", drops, 7)
    assert (score.alarms, score.followed, score.drops, score.preceded) == (2, 1, 2, 1)
    assert score.precision == pytest.approx(0.5)
    assert score.recall == pytest.approx(0.5)
    assert score.missed == ["2013-07-31"]
    assert score.alarm_days == ["2013-07-09", "2013-07-21"]
    # 14 of the 40 days have an onset within the 7 days after them
    assert score.base_rate == pytest.approx(14 / 40)
    # the same day does not count: an alarm must come before the drop starts
    same = [False] * n
    same[12] = True
    s = outcomes.judge_alarms(_history(auc, alarms=same), "calibrated_alarm", drops, 7)
    assert (s.followed, s.preceded) == (0, 0)
    # a horizon too short to reach the onset
    short = outcomes.judge_alarms(h, "calibrated_alarm", drops, 3)
    assert short.followed == 0


def test_no_alarm_or_no_drop_leaves_precision_or_recall_undefined():
    h = _history([0.7] * 20)
    drops = outcomes.quality_drops(h, RULE)
    s = outcomes.judge_alarms(h, "calibrated_alarm", drops, 7)
    assert s.precision is None
    assert s.recall is None
    always = outcomes.judge_alarms(h, "fixed_alarm", drops, 7)
    assert always.alarms == 20
    assert always.precision == 0.0
    assert always.base_rate == 0.0


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
    auc = _dropping(30, [20])
    alarms = [False] * 30
    alarms[15] = True
    h = _history(auc, alarms=alarms, shadow=[0.7] * 30)
    t = Thresholds(
        drift_mode="calibrated",
        auc_floor=0.6,
        alarm_horizon_days=7,
        drop_window_days=3,
        drop_baseline_days=6,
    )
    a = outcomes.assess(h, [{"outcome": "promoted", "version": "1", "day": "2013-07-02"}], t)
    figures = a.figures()
    assert figures["drift_mode"] == "calibrated"
    assert (figures["alarms"], figures["alarm_precision"], figures["alarm_recall"]) == (1, 1.0, 1.0)
    assert figures["quality_drops"] == 1
    fixed = figures["by_rule"]["fixed"]
    # always on: its precision is the base rate, 7 of the 30 days precede the drop's start
    assert fixed["alarms"] == 30
    assert fixed["precision"] == pytest.approx(7 / 30)
    assert fixed["base_rate"] == pytest.approx(7 / 30)
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
