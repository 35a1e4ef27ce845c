"""Catalog plots: small, valid PNGs that Dagster's Markdown metadata shows inline."""

import base64
import struct

import numpy as np
import pandas as pd
import pytest

from dagster_project.monitoring import plots


def _size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    return width, height


def test_distributions_are_small_pngs_with_one_panel_per_column():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=500), "b": rng.integers(0, 9, 500), "c": np.nan})
    df.loc[::7, "a"] = np.nan
    png = plots.distributions(df, ["a", "b"], "t")
    width, height = _size(png)
    assert width <= 600
    assert height <= 400
    assert len(png) < 60_000
    with pytest.raises(ValueError, match="no numeric column"):
        plots.distributions(df, [], "t")


def test_numeric_columns_skip_text_booleans_and_all_missing():
    df = pd.DataFrame(
        {
            "name": ["x", "y"],
            "flag": [True, False],
            "empty": [np.nan, np.nan],
            "n": [1, 2],
            "ts": pd.to_datetime(["2013-01-01", "2013-01-02"]),
            "f": [0.5, None],
        }
    )
    assert plots.numeric_columns(df) == ["n", "f"]
    assert plots.numeric_columns(df, limit=1) == ["n"]


def test_metric_bars_and_calibration_render_and_refuse_empty_input():
    bars = plots.metric_bars({"roc_auc": 0.71, "f1": 0.45}, "v1 holdout")
    curve = [(0.05, 0.04, 100), (0.3, 0.35, 50), (0.7, 0.6, 10)]
    cal = plots.calibration(curve, 0.03, "v1 calibration")
    assert _size(bars) == _size(cal) == (int(4 * plots.DPI), int(3 * plots.DPI))
    with pytest.raises(ValueError, match="no metric"):
        plots.metric_bars({}, "x")
    with pytest.raises(ValueError, match="empty calibration curve"):
        plots.calibration([], 0.0, "x")


def test_markdown_image_embeds_the_png_as_a_data_uri():
    png = plots.metric_bars({"roc_auc": 0.7}, "m")
    md = plots.markdown_image("holdout [v1]", png)
    assert md.startswith("![holdout [v1)](data:image/png;base64,")
    assert base64.b64decode(md.split("base64,", 1)[1].rstrip(")")) == png
