"""The gate's decision rule, on constructed reports and on constructed holdout scores (the
paired day bootstrap)."""

from dataclasses import replace

import numpy as np
import pytest

from dagster_project.training import evaluation, promotion

# the point gain decides here (confidence 0) and promotes at once (no shadow days); the
# bootstrap's and the shadow review's tests are below
POLICY = promotion.PromotionPolicy(
    min_auc_margin=0.01, min_auc=0.6, max_calibration_error=0.05, confidence=0.0, shadow_days=0
)


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


# Fourteen days of 800 flights: a latent signal with a day effect, labels drawn from it; the
# incumbent sees the signal through noise 1.5.
_RNG = np.random.default_rng(1)
_DAYS = np.repeat(np.arange(14), 800)
_SIGNAL = _RNG.normal(size=len(_DAYS)) + 0.3 * _RNG.normal(size=14)[_DAYS]
_LABELS = (_RNG.random(len(_DAYS)) < 1 / (1 + np.exp(-_SIGNAL))).astype("int64")
_HOLDOUT = promotion.Holdout(_LABELS, _DAYS.astype(str))
_INCUMBENT = _SIGNAL + _RNG.normal(scale=1.5, size=len(_DAYS))
BOOTSTRAP = promotion.PromotionPolicy(min_auc=0.55, max_calibration_error=1.0, shadow_days=0)


def _scored(version: str, scores: np.ndarray) -> promotion.ModelReport:
    ev = evaluation.evaluate(_LABELS, 1 / (1 + np.exp(-scores)), 0.5)
    return promotion.ModelReport(version, ev, 5.0, scores=scores)


def _noise(seed: int, scale: float) -> np.ndarray:
    return _SIGNAL + np.random.default_rng(seed).normal(scale=scale, size=len(_DAYS))


def test_a_gain_within_the_holdouts_noise_is_not_promoted():
    """A model of the incumbent's worth, drawn again: its point gain (+0.003) beat the old
    0.002 margin; its 90 % lower bound is below 0, so the gate keeps the champion."""
    champion, challenger = _scored("1", _INCUMBENT), _scored("2", _noise(101, 1.5))
    d = promotion.decide(challenger, champion, BOOTSTRAP, "w", holdout=_HOLDOUT)
    [gain] = d.gains
    assert 0.002 < gain.gain < 0.01
    assert gain.lower < 0 < gain.gain
    assert not d.promote
    assert "not better" in d.reasons[0]
    assert "90% lower bound" in d.reasons[0]


def test_a_real_gain_is_promoted_and_its_bound_recorded():
    champion, challenger = _scored("1", _INCUMBENT), _scored("2", _noise(7, 1.0))
    d = promotion.decide(challenger, champion, BOOTSTRAP, "w", holdout=_HOLDOUT)
    assert d.promote, d.reasons
    [gain] = d.record()["gains"]
    assert gain["against"] == "champion"
    assert 0 < gain["lower"] < gain["gain"]


def test_a_challenger_must_also_beat_the_frozen_baseline():
    """The champion drifted below the frozen first champion: beating the champion alone is not
    enough; without the rule (beat_baseline=False) the same challenger is promoted."""
    baseline = _scored("1", _noise(7, 1.0))
    champion = _scored("2", _INCUMBENT)
    challenger = _scored("3", _noise(11, 1.2))
    d = promotion.decide(challenger, champion, BOOTSTRAP, "w", baseline, _HOLDOUT)
    assert [g.against for g in d.gains] == ["champion", "baseline"]
    assert d.gains[0].passes(0.0)
    assert not d.gains[1].passes(0.0)
    assert not d.promote
    assert "not better" in d.reasons[1]
    assert "baseline v1" in d.reasons[1]
    lax = replace(BOOTSTRAP, beat_baseline=False)
    assert promotion.decide(challenger, champion, lax, "w", baseline, _HOLDOUT).promote


def test_the_bound_needs_the_holdout():
    champion, challenger = _scored("1", _INCUMBENT), _scored("2", _noise(7, 1.0))
    with pytest.raises(ValueError, match="needs both models' holdout scores"):
        promotion.decide(challenger, champion, BOOTSTRAP, "w")


def test_the_paired_bootstrap_resamples_whole_days():
    """A challenger better on one day only: resampling days (not flights) spreads its gain over
    the resamples that hold that day and those that do not."""
    better_on_day_0 = np.where(_DAYS == 0, _SIGNAL, _INCUMBENT)
    gains = promotion.paired_auc_gain(_HOLDOUT, better_on_day_0, _INCUMBENT, 200)
    assert len(gains) == 200
    # about (13/14)^14 = 35 % of the resamples leave day 0 out: their gain is exactly 0
    assert 0.2 < np.mean(gains == 0) < 0.5


# The shadow review: a candidate scored on the days after its window, against the champion
# (and the frozen baseline) on the same days' served features.
SHADOW = promotion.PromotionPolicy(shadow_days=14)


def _days(gain: float, spread: float, n: int = 14, baseline_gap: float = 0.0, seed: int = 3):
    """``n`` days whose champion AUC swings with the weather (0.62..0.82) and whose candidate
    differs from it by ``gain`` plus day-to-day noise of ``spread``; the frozen baseline sits
    ``baseline_gap`` above the champion."""
    rng = np.random.default_rng(seed)
    champion = rng.uniform(0.62, 0.82, n)
    candidate = champion + gain + rng.normal(scale=spread, size=n)
    return [
        promotion.ShadowDay(f"2013-08-{i + 1:02d}", c, m, m + baseline_gap)
        for i, (c, m) in enumerate(zip(candidate, champion, strict=True))
    ]


def test_a_challenger_that_passes_the_gate_is_a_candidate_not_yet_the_champion():
    d = promotion.decide(
        _report("2", 0.72), _report("1", 0.7), replace(POLICY, shadow_days=14), "w"
    )
    assert not d.promote
    assert d.shadow
    assert d.outcome == "shadow"
    assert "in shadow on 14 judged days" in d.reasons[-1]
    # the first model has no champion to be compared with in shadow: promoted at once
    assert promotion.decide(_report("1", 0.7), None, replace(POLICY, shadow_days=14), "w").promote


def test_the_review_waits_for_its_shadow_days():
    r = promotion.review("3", "1", "1", _days(0.02, 0.01, n=9), SHADOW)
    assert r.status == "shadow"
    assert r.reasons == ["9 of 14 judged days in shadow"]


def test_a_candidate_that_serves_better_is_promoted_and_one_that_serves_worse_is_not():
    better = promotion.review("3", "2", "1", _days(0.02, 0.01), SHADOW)
    assert better.status == "promoted", better.reasons
    assert [g.against for g in better.gains] == ["champion", "baseline"]
    assert all(0 < g.lower < g.gain for g in better.gains)
    worse = promotion.review("3", "2", "1", _days(-0.005, 0.01), SHADOW)
    assert worse.status == "rejected"
    assert "not better in shadow" in worse.reasons[0]
    assert worse.record()["shadow_days"][0] == "2013-08-01"


def test_a_gain_within_the_days_noise_is_not_promoted():
    """Drawn at +0.002 a day, the days spread by 0.02: +0.004 on these 14, the 90 % bound
    below 0."""
    r = promotion.review("3", "2", None, _days(0.002, 0.02, seed=2), SHADOW)
    assert 0 < r.gains[0].gain < 0.012
    assert r.gains[0].lower < 0
    assert r.status == "rejected"


def test_the_review_also_asks_for_a_gain_over_the_frozen_baseline():
    """Better than a champion that fell behind the frozen baseline, not better than the
    baseline: rejected; without the rule, promoted."""
    days = _days(0.01, 0.005, baseline_gap=0.02)
    r = promotion.review("3", "2", "1", days, SHADOW)
    assert [g.against for g in r.gains] == ["champion", "baseline"]
    assert r.gains[0].passes(0.0)
    assert not r.gains[1].passes(0.0)
    assert r.status == "rejected"
    assert promotion.review("3", "2", "1", days, replace(SHADOW, beat_baseline=False)).status == (
        "promoted"
    )


def test_the_review_decides_on_its_first_shadow_days_only():
    """Days after the first ``shadow_days`` (a review that ran late) do not change the verdict."""
    first = _days(0.02, 0.005)
    late = [promotion.ShadowDay(f"2013-09-{i + 1:02d}", 0.5, 0.8, 0.8) for i in range(10)]
    assert promotion.review("3", "2", "1", first + late, SHADOW).status == "promoted"


def _served(gain: float, spread: float, n: int = 28, seed: int = 5) -> list[promotion.ServedDay]:
    """``n`` served days whose frozen baseline's AUC swings with the weather and whose champion
    differs from it by exactly ``gain`` on average, plus day-to-day noise of ``spread``."""
    rng = np.random.default_rng(seed)
    frozen = rng.uniform(0.62, 0.82, n)
    noise = rng.normal(scale=spread, size=n)
    served = frozen + gain + noise - noise.mean()
    start = np.datetime64("2013-09-01")
    return [
        promotion.ServedDay(str(start + i), float(s), float(f))
        for i, (s, f) in enumerate(zip(served, frozen, strict=True))
    ]


def test_a_champion_the_frozen_baseline_beats_on_served_days_is_rolled_back():
    g = promotion.guard("7", "1", _served(-0.006, 0.008), SHADOW)
    assert g.status == promotion.ROLLED_BACK, g.reasons
    assert g.upper < 0
    assert g.gain < g.upper
    assert len(g.days) == SHADOW.rollback_days
    assert g.reasons[0].startswith("behind the baseline: ")
    assert g.record()["decision"] == "rolled back"


def test_a_champion_level_with_or_ahead_of_the_baseline_is_kept():
    for gain in (0.0, 0.006):
        g = promotion.guard("7", "1", _served(gain, 0.008), SHADOW)
        assert g.status == "kept", (gain, g.reasons)
        assert g.upper >= 0


def test_a_loss_within_the_days_noise_keeps_the_champion():
    """Behind by 0.002 a day with days spread by 0.03: the 90 % upper bound holds 0."""
    g = promotion.guard("7", "1", _served(-0.002, 0.03, seed=1), SHADOW)
    assert g.gain < 0 < g.upper
    assert g.status == "kept"


def test_the_guard_waits_for_its_days_and_judges_the_last_ones():
    assert promotion.guard("7", "1", _served(-0.02, 0.005, n=27), SHADOW).reasons == [
        "27 of 28 judged served days"
    ]
    # ahead for two months, then behind for the last 28 days: rolled back
    early = _served(0.01, 0.005, n=60, seed=2)
    late = [
        promotion.ServedDay(f"2013-12-{i + 1:02d}", d.champion_auc, d.baseline_auc)
        for i, d in enumerate(_served(-0.01, 0.005, seed=4))
    ]
    g = promotion.guard("7", "1", early + late, SHADOW)
    assert g.status == promotion.ROLLED_BACK
    assert g.days[0] == "2013-12-01"
    assert promotion.guard("7", "1", late, replace(SHADOW, rollback_days=0)).status == "kept"
