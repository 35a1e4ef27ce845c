"""The ASOF offline store over parquet in S3 (the lake of the server tiers), without DuckDB's
`httpfs` extension: the point-in-time join reads the objects through the platform's fsspec
storage and answers as Feast's own store does on the same rows locally; materialization
(Feast's `pull_latest` path) loads the latest rows from S3 into the online store."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64

from dagster_project.platform import storage
from tests.features.test_asof_store import ASOF, _assert_same

pytestmark = pytest.mark.integration

T0 = datetime(2013, 1, 1)


@pytest.fixture
def s3_lake(s3_endpoint, monkeypatch) -> str:
    import boto3

    for key, value in {
        "MLOPS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/ns/lake"


def _store(root: Path, offline_type: str, path: str) -> FeatureStore:
    root.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(
        config=RepoConfig(
            project="asof_s3",
            provider="local",
            registry=str(root / "registry.db"),
            online_store={"type": "sqlite", "path": str(root / "online.db")},
            offline_store={"type": offline_type},
            entity_key_serialization_version=3,
            repo_path=str(root),
        )
    )
    key = Entity(name="k", join_keys=["k"], value_type=ValueType.STRING)
    view = FeatureView(
        name="fv",
        entities=[key],
        ttl=timedelta(hours=6),
        source=FileSource(
            name="src", path=path, timestamp_field="ts", created_timestamp_column="created"
        ),
        schema=[Field(name="value", dtype=Float64), Field(name="n", dtype=Int64)],
    )
    store.apply([key, view])
    return store


def _rows() -> pd.DataFrame:
    rows = [
        (k, T0 + timedelta(hours=h), T0 + timedelta(hours=h, minutes=c), float(10 * h + c), h)
        for k in "ab"
        for h in range(0, 24, 3)
        for c in (0, 1)
    ]
    return pd.DataFrame(rows, columns=["k", "ts", "created", "value", "n"]).assign(
        ts=lambda d: d["ts"].dt.tz_localize("UTC"),
        created=lambda d: d["created"].dt.tz_localize("UTC"),
    )


def test_point_in_time_join_and_materialization_read_s3_without_httpfs(s3_lake, tmp_path):
    with pytest.raises(duckdb.Error, match="httpfs"):  # not installed: nothing may need it
        duckdb.connect().execute("LOAD httpfs")
    features = _rows()
    remote = storage.join(s3_lake, "features", "fv.parquet")
    storage.write_parquet(remote, features)
    features.to_parquet(tmp_path / "fv.parquet", index=False)
    entity = pd.DataFrame(
        {
            "k": ["a", "b", "a", "c", "b"],
            "event_timestamp": pd.to_datetime(
                [
                    "2013-01-01 04:00",
                    "2013-01-01 10:30",
                    "2013-01-01 23:59",
                    "2013-01-01 05:00",
                    "2013-01-02 08:00",
                ],
                utc=True,
            ),
        }
    )
    ours = _store(tmp_path / "ours", ASOF, remote)
    feast = _store(tmp_path / "feast", "duckdb", str(tmp_path / "fv.parquet"))

    def ask(store: FeatureStore) -> pd.DataFrame:
        out = store.get_historical_features(entity_df=entity, features=["fv:value", "fv:n"])
        return out.to_df().sort_values(["k", "event_timestamp"]).reset_index(drop=True)

    answer = ask(ours)
    _assert_same(answer, ask(feast))
    assert answer["value"].notna().sum() == 3  # c has no rows; b on day 2 is past the ttl

    ours.materialize(T0, T0 + timedelta(days=1))
    online = ours.get_online_features(["fv:value", "fv:n"], [{"k": "a"}, {"k": "b"}]).to_dict()
    assert online["n"] == [21, 21]
    assert online["value"] == [211.0, 211.0]  # the latest created row of the latest hour
