"""A small training-set-shaped frame whose label depends on a few features (for fast tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dagster_project.features.engineering import LABEL
from dagster_project.training.preprocess import CATEGORICAL, NUMERIC


def frame(rows: int = 3000, days: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.normal(size=rows) for c in NUMERIC})
    df["carrier"] = rng.choice(["AA", "UA", "B6", "DL"], rows)
    df["origin"] = rng.choice(["EWR", "JFK", "LGA"], rows)
    df["route"] = df["origin"] + "-" + rng.choice(["ORD", "LAX", "ATL"], rows)
    start = pd.Timestamp("2013-03-01 12:00", tz="America/New_York").timestamp()
    df["sched_dep_epoch_s"] = (start + np.sort(rng.uniform(0, days * 86400, rows))).astype("int64")
    logit = 1.5 * df["carrier_delayed_share_7d"] + 1.0 * (df["carrier"] == "B6") - 1.0
    df[LABEL] = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    df.loc[rng.choice(rows, rows // 20, replace=False), "wind_gust"] = np.nan
    assert set(CATEGORICAL) <= set(df.columns)
    return df
