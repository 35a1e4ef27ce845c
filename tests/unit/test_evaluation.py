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
