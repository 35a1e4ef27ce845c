"""Both model families learn, save and load back to identical predictions."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dagster_project.features.engineering import LABEL
from dagster_project.training import models, pipeline
from tests.unit.synthetic import frame

PARAMS = {
    "xgboost": {"max_depth": 3, "eta": 0.1, "num_boost_round": 100},
    "torch": {
        "hidden": 16,
        "layers": 1,
        "dropout": 0.0,
        "lr": 5e-3,
        "weight_decay": 1e-6,
        "batch_size": 256,
        "max_epochs": 4,
    },
}


@pytest.mark.parametrize("kind", models.KINDS)
def test_fit_learns_and_round_trips(kind, tmp_path):
    split = pipeline.time_split(frame(4000), holdout_days=6, validation_days=6)
    model = models.FITTERS[kind](split.train, split.validation, PARAMS[kind])
    p = model.predict_proba(split.holdout)
    assert p.shape == (len(split.holdout),)
    assert ((p > 0) & (p < 1)).all()
    assert roc_auc_score(split.holdout[LABEL], p) > 0.6
    model.save(tmp_path / kind)
    again = models.load(tmp_path / kind).predict_proba(split.holdout)
    np.testing.assert_allclose(again, p, rtol=1e-6, atol=1e-7)


def test_torch_uses_cuda_only_when_present():
    import torch

    assert models.torch_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_load_rejects_an_unknown_kind(tmp_path):
    (tmp_path / "meta.json").write_text('{"kind": "svm", "params": {}}')
    (tmp_path / "preprocessor.json").write_text(
        '{"categories": {}, "medians": {}, "means": {}, "stds": {}}'
    )
    with pytest.raises(ValueError, match="svm"):
        models.load(tmp_path)


@pytest.mark.parametrize("kind", models.KINDS)
def test_request_columns_predict_like_the_frame(kind):
    """The endpoint's hot path hands the model its input columns, not a frame: same numbers."""
    from dagster_project.training.preprocess import FEATURES, input_frame

    split = pipeline.time_split(frame(2000), holdout_days=6, validation_days=6)
    model = models.FITTERS[kind](split.train, split.validation, PARAMS[kind])
    rows = input_frame(split.holdout.head(40))
    rows.loc[3, "carrier"] = "ZZ"  # unseen category
    rows.loc[5, "temp"] = np.nan  # missing number
    columns = {c: rows[c].tolist() for c in FEATURES}
    np.testing.assert_allclose(model.predict_proba(columns), model.predict_proba(rows), rtol=1e-6)


def test_xgboost_predicts_from_many_threads_at_once():
    """Concurrent requests share one booster: small and large batches at the same time used to
    fail with XGBoost's "need_configuration_" when each call set the thread count."""
    from concurrent.futures import ThreadPoolExecutor

    split = pipeline.time_split(frame(6000), holdout_days=6, validation_days=6)
    model = models.fit_xgboost(split.train, split.validation, PARAMS["xgboost"])
    big = split.train.sample(models.SMALL_BATCH + 10, replace=True, random_state=0)
    small = split.holdout.head(1)
    expected_small, expected_big = model.predict_proba(small), model.predict_proba(big)
    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(model.predict_proba, big if i % 5 == 0 else small) for i in range(200)]
        for i, job in enumerate(jobs):
            np.testing.assert_allclose(job.result(), expected_big if i % 5 == 0 else expected_small)
