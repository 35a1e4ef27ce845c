"""The batch/stream parity assertion shared by the local and the Redis stream tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dagster_project.streaming import traffic


def assert_live_matches_batch(pushed: list[pd.DataFrame], batch: pd.DataFrame) -> int:
    """Every row the consumer pushed equals the batch table's row for the same origin and
    boundary (counts exactly, means to rounding); returns how many rows were compared."""
    live = pd.concat(pushed, ignore_index=True)
    both = live.merge(batch, on=["origin", "event_timestamp"], suffixes=("_live", "_batch"))
    assert len(both) == len(live), "a pushed boundary is missing from the batch table"
    assert (both[f"{traffic.COUNT}_live"] == both[f"{traffic.COUNT}_batch"]).all()
    np.testing.assert_allclose(
        both[f"{traffic.MEAN_DELAY}_live"].astype(float),
        both[f"{traffic.MEAN_DELAY}_batch"].astype(float),
        rtol=1e-9,
        equal_nan=True,
    )
    return len(both)
