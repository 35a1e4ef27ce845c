import numpy as np
import pytest

from dagster_project.training import evaluation


def test_metrics_on_a_perfect_and_a_useless_model():
    y = np.array([0, 0, 1, 1] * 50)
    perfect = evaluation.evaluate(y, y * 0.8 + 0.1, threshold=0.5)
    assert perfect.roc_auc == 1.0
    assert perfect.f1 == 1.0
    assert perfect.confusion == (100, 0, 0, 100)
    flat = evaluation.evaluate(y, np.full(len(y), 0.5), threshold=0.5)
    assert flat.roc_auc == 0.5
    assert flat.calibration_error == pytest.approx(0.0)  # 0.5 is the base rate: calibrated


def test_calibration_error_sees_overconfidence():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=5000)
    y = (rng.uniform(size=5000) < p).astype(int)
    assert evaluation.evaluate(y, p, 0.5).calibration_error < 0.03
    assert evaluation.evaluate(y, np.clip(p * 1.6, 0, 1), 0.5).calibration_error > 0.1


def test_threshold_maximises_f1():
    y = np.array([0] * 80 + [1] * 20)
    p = np.r_[np.linspace(0, 0.4, 80), np.linspace(0.3, 1, 20)]
    t = evaluation.best_f1_threshold(y, p)
    assert 0.29 <= t <= 0.42  # between the first positive and just past the last negative


def test_single_class_is_a_clear_error():
    with pytest.raises(ValueError, match="single class"):
        evaluation.evaluate(np.zeros(10), np.full(10, 0.2), 0.5)


def test_plot_is_written(tmp_path):
    y = np.array([0, 1] * 100)
    p = np.clip(y * 0.6 + np.random.default_rng(1).uniform(0, 0.4, 200), 0, 1)
    ev = evaluation.evaluate(y, p, 0.5)
    out = evaluation.plot_evaluation(y, p, ev, "test", tmp_path / "eval.png")
    assert out.stat().st_size > 10_000


def _flagged_share(p, t):
    return float((np.asarray(p) >= t).mean())


@pytest.mark.parametrize("base_rate", [0.05, 0.2, 0.35, 0.6])
def test_base_rate_policy_flags_the_share_that_is_delayed(base_rate):
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=4000) < base_rate).astype(int)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, size=4000), 0, 1)
    t = evaluation.ThresholdPolicy().pick(y, p)
    assert abs(_flagged_share(p, t) - y.mean()) <= 0.001


def test_base_rate_policy_with_ties_picks_the_nearest_cut():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    t = evaluation.ThresholdPolicy().pick(y, p)
    assert t == 0.9  # 1 flagged (0.1 away from 0.2) beats 5 flagged (0.3 away)


def test_cost_policy_minimises_the_stated_cost_against_brute_force():
    rng = np.random.default_rng(5)
    y = (rng.uniform(size=600) < 0.25).astype(int)
    p = np.round(np.clip(0.35 * y + rng.uniform(0, 0.65, size=600), 0, 1), 2)  # many ties
    for ratio in (0.2, 1.0, 3.0, 10.0):
        policy = evaluation.ThresholdPolicy("cost", ratio)
        t = policy.pick(y, p)

        def cost(cut, ratio=ratio):
            flagged = p >= cut
            return ratio * int((~flagged & (y == 1)).sum()) + int((flagged & (y == 0)).sum())

        best = min(cost(c) for c in [*np.unique(p), 1.01])
        assert cost(t) == pytest.approx(best), ratio
        assert policy.label == f"cost:{ratio:g}"


def test_f1_policy_is_the_earlier_rule_and_unknown_policies_are_refused():
    y = np.array([0] * 80 + [1] * 20)
    p = np.r_[np.linspace(0, 0.4, 80), np.linspace(0.3, 1, 20)]
    assert evaluation.ThresholdPolicy("f1").pick(y, p) == evaluation.best_f1_threshold(y, p)
    with pytest.raises(ValueError, match="threshold_policy must be one of"):
        evaluation.ThresholdPolicy("accuracy")
    with pytest.raises(ValueError, match="miss_cost_ratio"):
        evaluation.ThresholdPolicy("cost", 0)
