"""The split is by time, never random; the holdout is the latest window."""

import pytest

from dagster_project.training import pipeline, preprocess
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


class _Model:
    """A stand-in model that looks only at the carrier's recent delays and the wind."""

    preprocessor = preprocess.Preprocessor(numeric=list(preprocess.NUMERIC))

    def predict_proba(self, df):
        import numpy as np

        x = 0.8 * df["carrier_delayed_share_7d"].fillna(0) + 0.2 * df["wind_speed"].fillna(0)
        return 1 / (1 + np.exp(-x.to_numpy(dtype="float64")))


def test_the_drift_reference_covers_the_whole_window_with_days_and_splits():
    split = pipeline.time_split(frame(3000, days=30), holdout_days=7, validation_days=5)
    ref = pipeline.reference_sample(_Model(), split)
    assert len(ref) == 3000
    assert set(ref["split"]) == {"train", "validation", "holdout"}
    assert (
        ref.loc[ref["split"] == "holdout", "day"].min()
        > ref.loc[ref["split"] == "train", "day"].max()
    )
    assert ref["day"].str.match(r"\d{4}-\d{2}-\d{2}$").all()
    assert ref["probability"].between(0, 1).all()
    sample = pipeline.reference_sample(_Model(), split, rows=500)
    assert len(sample) == 500
    assert set(sample["split"]) == {"train", "validation", "holdout"}


def test_feature_importance_follows_what_the_model_reads_grouped_by_feature_table():
    groups = pipeline.feature_groups()
    assert groups["carrier_delay_stats"] == (
        "carrier_departures_7d",
        "carrier_mean_dep_delay_7d",
        "carrier_delayed_share_7d",
    )
    assert "wind_speed" in groups["origin_weather"]
    assert groups["dep_hour"] == ("dep_hour",)  # request-time features stand alone
    assert groups["plane_today"] == ("plane_departures_today", "plane_last_dep_delay_today")
    assert "origin_pending_60m" in groups["origin_traffic"]
    everything = sorted(c for members in groups.values() for c in members)
    assert everything == sorted(preprocess.FEATURES)
    split = pipeline.time_split(frame(3000, days=30), holdout_days=7, validation_days=5)
    importance = pipeline.feature_importance(_Model(), split.validation)
    features, by_group = importance["features"], importance["groups"]
    assert by_group["carrier_delay_stats"] > by_group["origin_weather"] > 0
    assert by_group["dep_hour"] == 0.0  # never read: shuffling it changes nothing
    # within a group, the group's value goes to the members the model reads
    assert features["carrier_delayed_share_7d"] == by_group["carrier_delay_stats"]
    assert features["carrier_mean_dep_delay_7d"] == 0.0
    assert features["wind_speed"] == by_group["origin_weather"]
