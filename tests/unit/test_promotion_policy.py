"""The gate's decision rule, on constructed reports."""

from dataclasses import replace

import numpy as np

from dagster_project.training import evaluation, promotion

POLICY = promotion.PromotionPolicy(min_auc_margin=0.01, min_auc=0.6, max_calibration_error=0.05)


def _report(version: str, auc_target: float, ece: float = 0.01, latency: float = 5.0):
    y = np.array([0, 1] * 100)
    ev = evaluation.evaluate(y, np.where(y == 1, 0.7, 0.3), 0.5)
    ev = replace(ev, roc_auc=auc_target, calibration_error=ece)
    return promotion.ModelReport(version, ev, latency)


def test_first_model_is_promoted_if_it_passes_the_floors():
    d = promotion.decide(_report("1", 0.7), None, POLICY, "w")
    assert d.promote
    assert "first model" in d.reasons[0]


def test_floors_apply_to_the_first_model_too():
    d = promotion.decide(_report("1", 0.55, ece=0.2, latency=500), None, POLICY, "w")
    assert not d.promote
    assert len(d.reasons) == 3
    assert any("latency" in r for r in d.reasons)


def test_better_by_the_margin_is_promoted_and_a_small_gain_is_not():
    champion = _report("1", 0.70)
    assert promotion.decide(_report("2", 0.72), champion, POLICY, "w").promote
    small = promotion.decide(_report("3", 0.705), champion, POLICY, "w")
    assert not small.promote
    assert "not better" in small.reasons[0]


def test_signature_problems_block():
    bad = _report("2", 0.9)
    bad.signature_problems = ["input 'foo' is not served by the feature service"]
    assert not promotion.decide(bad, None, POLICY, "w").promote


def test_record_has_the_numbers():
    rec = promotion.decide(
        _report("2", 0.72), _report("1", 0.7), POLICY, "2013-07-01..07-31"
    ).record()
    assert rec["decision"] == "promoted"
    assert rec["challenger"]["roc_auc"] == 0.72
    assert rec["champion"]["version"] == "1"
    assert rec["policy"]["min_auc_margin"] == 0.01
