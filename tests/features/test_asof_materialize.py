"""Materialization through the ASOF store (its own DuckDB reads of the parquet) puts the same
rows in the online store as Feast's DuckDB store: with Feast's default read (all rows of the
window, deduplicated by the compute engine) and with ``pull_latest_features`` (the latest row
per key read directly); windows that cut rows off, ties on the event time broken by the
created time, a field mapping, keys without rows in the window, a static view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.repo_config import RepoConfig
from feast.type_map import feast_value_type_to_python_type
from feast.types import Float64, Int64

from dagster_project.features.offline_store import AsofDuckDBOfflineStore

ASOF = "dagster_project.features.offline_store.AsofDuckDBOfflineStore"
T0 = datetime(2013, 1, 1, tzinfo=UTC)
KEYS = ["a", "b", "c", "d"]


def _objects(root: Path) -> list:
    k = Entity(name="k", join_keys=["k"], value_type=ValueType.STRING)
    hourly = FeatureView(
        name="hourly",
        entities=[k],
        ttl=timedelta(hours=3),
        source=FileSource(
            name="hourly_src",
            path=str(root / "hourly.parquet"),
            timestamp_field="ts",
            created_timestamp_column="created",
            field_mapping={"raw_value": "value"},
        ),
        schema=[Field(name="value", dtype=Float64), Field(name="n", dtype=Int64)],
    )
    static = FeatureView(
        name="static",
        entities=[k],
        ttl=timedelta(0),
        source=FileSource(
            name="static_src", path=str(root / "static.parquet"), timestamp_field="ts"
        ),
        schema=[Field(name="size", dtype=Int64)],
    )
    return [k, hourly, static]


def _tables(root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = 200
    hours = rng.integers(0, 48, rows)
    pd.DataFrame(
        {
            "k": rng.choice(KEYS[:3], rows),  # "d" has no rows
            "ts": [T0 + timedelta(hours=int(h)) for h in hours],
            # a few (key, ts) ties, each broken by a distinct created time
            "created": [T0 + timedelta(hours=int(h) + 1, seconds=i) for i, h in enumerate(hours)],
            "raw_value": rng.normal(size=rows).round(4),
            "n": rng.integers(0, 1000, rows),
        }
    ).to_parquet(root / "hourly.parquet", index=False)
    pd.DataFrame(
        {
            "k": KEYS[:3],
            "ts": [T0 - timedelta(days=400)] * 3,
            "size": [10, 20, 30],
        }
    ).to_parquet(root / "static.parquet", index=False)


def _store(root: Path, offline: str, pull_latest: bool) -> FeatureStore:
    root.mkdir(parents=True, exist_ok=True)
    cfg = RepoConfig(
        project="asof_mat",
        provider="local",
        registry=str(root / "registry.db"),
        online_store={"type": "sqlite", "path": str(root / "online.db")},
        offline_store={"type": offline},
        entity_key_serialization_version=3,
        repo_path=str(root),
        materialization={"pull_latest_features": pull_latest},
    )
    store = FeatureStore(config=cfg)
    store.apply(_objects(root.parent))
    return store


def _online(store: FeatureStore) -> dict:
    """Every key's stored row per view: (event time, values)."""
    provider = store._get_provider()
    out = {}
    for view in store.list_feature_views():
        rows = provider.online_read(
            config=store.config,
            table=view,
            entity_keys=[
                EntityKey(join_keys=["k"], entity_values=[Value(string_val=k)]) for k in KEYS
            ],
            requested_features=[f.name for f in view.features],
        )
        for key, (ts, values) in zip(KEYS, rows, strict=True):
            out[(view.name, key)] = (
                ts,
                {n: feast_value_type_to_python_type(v) for n, v in (values or {}).items()},
            )
    return out


@pytest.mark.parametrize("window", [(0, 48), (5, 30), (30, 31)], ids=["all", "middle", "one-hour"])
def test_online_store_gets_the_same_rows(tmp_path, window):
    """Against Feast's store with Feast's default read: ours with either read, and Feast's
    own with ``pull_latest_features`` (what the tiers' configs set; it is what a source the
    ASOF store does not read itself goes through)."""
    _tables(tmp_path, seed=window[0])
    start, end = (T0 + timedelta(hours=h) for h in window)
    stores = {
        (kind, latest): _store(tmp_path / f"{kind}-{latest}", kind, latest)
        for kind, latest in ((ASOF, False), (ASOF, True), ("duckdb", True), ("duckdb", False))
    }
    online = {}
    for name, store in stores.items():
        store.materialize(start, end, feature_views=["hourly"])
        store.materialize(T0 - timedelta(days=1000), end, feature_views=["static"])
        online[name] = _online(store)
    reference = online.pop(("duckdb", False))
    assert any(ts is not None for ts, _ in reference.values())
    for name, rows in online.items():
        assert rows == reference, name


def test_pulls_read_what_feasts_do(tmp_path):
    """The two reads themselves, against Feast's (whose ibis read gives some event times back
    as text): the same rows and values."""
    _tables(tmp_path, seed=1)
    store = _store(tmp_path / "feast", "duckdb", False)
    view = store.get_feature_view("hourly")
    config = store.config
    args = (config, view.batch_source, ["k"], ["raw_value", "n"], "ts", "created")
    window = (T0 + timedelta(hours=3), T0 + timedelta(hours=20))
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStore

    for pull in ("pull_all_from_table_or_query", "pull_latest_from_table_or_query"):
        ours = getattr(AsofDuckDBOfflineStore, pull)(*args, *window).to_df()
        theirs = getattr(DuckDBOfflineStore, pull)(*args, *window).to_df()
        for df in (ours, theirs):
            for c in ("ts", "created"):
                df[c] = pd.to_datetime(df[c], utc=True)
        cols = ["k", "ts", "created", "raw_value", "n"]
        a = ours[cols].sort_values(cols).reset_index(drop=True)
        b = theirs[cols].sort_values(cols).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
        assert len(a) > 0
