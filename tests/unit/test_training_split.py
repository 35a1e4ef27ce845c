"""The split is by time, never random; the holdout is the latest window."""

import pytest

from dagster_project.training import pipeline
from tests.unit.synthetic import frame


def test_split_is_ordered_in_time_and_covers_every_row():
    df = frame(3000, days=30)
    split = pipeline.time_split(df, holdout_days=7, validation_days=5)
    train, val, hold = (
        pipeline.flight_dates(p) for p in (split.train, split.validation, split.holdout)
    )
    assert train.max() < val.min()
    assert val.max() < hold.min()
    assert len(split.train) + len(split.validation) + len(split.holdout) == len(df)
    assert (hold.max() - hold.min()).days == 6
    assert split.windows["holdout"] == f"{hold.min()}..{hold.max()}"


def test_too_short_a_range_names_the_empty_window():
    with pytest.raises(ValueError, match="train window has 0 rows"):
        pipeline.time_split(frame(500, days=10), holdout_days=7, validation_days=5)


def test_options_reject_unknown_model_kinds():
    with pytest.raises(ValueError, match="model_kinds"):
        pipeline.TrainingOptions(model_kinds=("svm",))
