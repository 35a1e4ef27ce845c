import numpy as np
import pandas as pd
import pytest

from dagster_project.training.preprocess import CATEGORICAL, NUMERIC, Preprocessor, input_frame
from tests.unit.synthetic import frame


def test_json_round_trip_gives_identical_inputs():
    df = frame()
    pre = Preprocessor.fit(df)
    back = Preprocessor.from_json(pre.to_json())
    # JSON sorts the keys: the transform must not depend on dict order.
    np.testing.assert_array_equal(pre.numbers(df, scale=True), back.numbers(df, scale=True))
    np.testing.assert_array_equal(pre.tree_matrix(df), back.tree_matrix(df))


def test_unknown_categories_map_to_zero_and_missing_numbers_to_the_median():
    df = frame()
    pre = Preprocessor.fit(df)
    row = df.head(1).copy()
    row["carrier"] = "ZZ"
    row["temp"] = np.nan
    codes = pre.codes(row)
    assert codes[0, CATEGORICAL.index("carrier")] == 0
    assert codes[0, CATEGORICAL.index("origin")] > 0
    numbers = pre.numbers(row, scale=False)
    assert numbers[0, NUMERIC.index("temp")] == pytest.approx(pre.medians["temp"], rel=1e-6)


def test_scaled_numbers_are_standardised_on_the_training_rows():
    df = frame()
    scaled = Preprocessor.fit(df).numbers(df, scale=True)
    assert np.allclose(np.nanmean(scaled, axis=0), 0, atol=0.05)
    assert not np.isnan(scaled).any()


def test_fit_names_missing_columns():
    with pytest.raises(ValueError, match="carrier"):
        Preprocessor.fit(frame().drop(columns=["carrier"]))


def test_input_frame_has_the_signature_columns_and_types():
    out = input_frame(frame(10))
    assert list(out.columns) == [*CATEGORICAL, *NUMERIC]
    assert all(out[c].dtype == object for c in CATEGORICAL)
    assert all(pd.api.types.is_float_dtype(out[c]) for c in NUMERIC)
