"""More cases asked of both stores (the ASOF JOIN store and Feast's DuckDB store): on-demand
views (pandas and python mode, short and full names), entity columns of every common dtype
and a non-default index, many entity rows sharing a key and a time (the store joins each
distinct (keys, time) once), integer keys, keys DuckDB has to compare itself, two join keys,
projections (alias, join key map), an empty feature table; and ``to_arrow``."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagster_project.features import offline_store

ASOF = "dagster_project.features.offline_store.AsofDuckDBOfflineStore"
T0 = datetime(2013, 1, 1)


def _views(root: Path, key_type: ValueType = ValueType.STRING):
    """`fv` (key `k`, ttl 3 h, field mapping, created column), `pair` (keys `k` and `j`), the
    request source `req` and two on-demand views over `fv` and `req`."""
    k = Entity(name="k", join_keys=["k"], value_type=key_type)
    j = Entity(name="j", join_keys=["j"], value_type=ValueType.STRING)
    src = FileSource(
        name="src",
        path=str(root / "f.parquet"),
        timestamp_field="ts",
        created_timestamp_column="created",
        field_mapping={"raw_value": "value"},
    )
    fv = FeatureView(
        name="fv",
        entities=[k],
        ttl=timedelta(hours=3),
        source=src,
        schema=[Field(name="value", dtype=Float64), Field(name="n", dtype=Int64)],
    )
    pair = FeatureView(
        name="pair",
        entities=[k, j],
        ttl=timedelta(0),
        source=FileSource(name="pair_src", path=str(root / "pair.parquet"), timestamp_field="ts"),
        schema=[Field(name="score", dtype=Float64)],
    )
    req = RequestSource(name="req", schema=[Field(name="x", dtype=Float64)])

    @on_demand_feature_view(
        sources=[fv, req], schema=[Field(name="value_plus_x", dtype=Float64)], mode="pandas"
    )
    def plus(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"value_plus_x": inputs["value"] + inputs["x"]})

    @on_demand_feature_view(
        sources=[fv, req], schema=[Field(name="n_times_x", dtype=Float64)], mode="python"
    )
    def times(inputs: dict) -> dict:
        return {
            "n_times_x": [
                None if n is None else n * x for n, x in zip(inputs["n"], inputs["x"], strict=True)
            ]
        }

    return [k, j, fv, pair, plus, times]


def _store(root: Path, offline_type: str, objects: list) -> FeatureStore:
    root.mkdir(parents=True, exist_ok=True)
    cfg = RepoConfig(
        project="asof_cases",
        provider="local",
        registry=str(root / "registry.db"),
        online_store={"type": "sqlite", "path": str(root / "online.db")},
        offline_store={"type": offline_type},
        entity_key_serialization_version=3,
        repo_path=str(root),
    )
    store = FeatureStore(config=cfg)
    store.apply(objects)
    return store


def _features(rng: np.random.Generator, rows: int, keys: list) -> pd.DataFrame:
    hours = rng.integers(0, 12, rows)
    return pd.DataFrame(
        {
            "k": rng.choice(keys, rows),
            "ts": [T0 + timedelta(hours=int(h)) for h in hours],
            # distinct per (key, ts): the tie-break is defined
            "created": [T0 + timedelta(hours=int(h), minutes=i) for i, h in enumerate(hours)],
            "raw_value": rng.normal(size=rows).round(3),
            "n": rng.integers(0, 99, rows),
        }
    )


def _pair_table(rng: np.random.Generator, keys: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "k": [k for k in keys for _ in "ab"],
            "j": [j for _ in keys for j in "ab"],
            "ts": [T0 + timedelta(hours=int(h)) for h in rng.integers(0, 6, 2 * len(keys))],
            "score": rng.normal(size=2 * len(keys)).round(3),
        }
    )


def ask_both(
    tmp: Path,
    features: pd.DataFrame,
    pair: pd.DataFrame,
    entity: pd.DataFrame,
    refs: list[str],
    full: bool,
    key_type: ValueType = ValueType.STRING,
    views: list | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, object, object]:
    features.to_parquet(tmp / "f.parquet", index=False)
    # typed key columns: an empty table is still comparable with the entity keys
    pair.astype({"k": "string", "j": "string"}).to_parquet(tmp / "pair.parquet", index=False)
    objects = _views(tmp, key_type)
    out = []
    for name, kind in (("ours", ASOF), ("feast", "duckdb")):
        store = _store(tmp / name, kind, objects + (views or []))
        job = store.get_historical_features(
            entity_df=entity, features=refs, full_feature_names=full
        )
        out.append(job)
    ours, feast = (job.to_df() for job in out)
    return ours, feast, out[0], out[1]


def assert_same(ours: pd.DataFrame, feast: pd.DataFrame, by: list[str]) -> None:
    """Same columns, dtypes and cells (NaN equal to NaN), rows matched by ``by``."""
    assert list(ours.columns) == list(feast.columns)
    assert dict(ours.dtypes) == dict(feast.dtypes)
    ours = ours.sort_values(by, kind="stable").reset_index(drop=True)
    feast = feast.sort_values(by, kind="stable").reset_index(drop=True)
    assert len(ours) == len(feast)
    for c in ours.columns:
        a, b = ours[c].astype(object), feast[c].astype(object)
        same = (a == b) | (a.isna() & b.isna())
        assert same.all(), f"column {c} differs:\n{pd.concat([a, b], axis=1)[~same]}"


REFS = ["fv:value", "fv:n", "pair:score", "plus:value_plus_x"]


def _entity(rng: np.random.Generator, rows: int, keys: list, times: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "k": rng.choice(keys, rows),
            "j": rng.choice(list("abc"), rows),
            "event_timestamp": [
                T0 + timedelta(minutes=30 * int(t)) for t in rng.integers(0, times, rows)
            ],
            "x": rng.normal(size=rows).round(3),
        }
    )


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 60),
    times=st.integers(1, 30),
    full=st.booleans(),
)
def test_shared_times_on_demand_views_and_two_keys(tmp_path_factory, seed, rows, times, full):
    """Entity rows drawn from few times (from 1 to 30 half hours): many share a key and a
    time, so the store joins the distinct (keys, time) pairs once and spreads the answer."""
    tmp = tmp_path_factory.mktemp("cases")
    rng = np.random.default_rng(seed)
    keys = ["a", "b", "c"]
    entity = _entity(rng, rows, [*keys, "zz"], times)
    ours, feast, *_ = ask_both(
        tmp, _features(rng, 20, keys), _pair_table(rng, keys), entity, REFS, full
    )
    assert_same(ours, feast, ["id"])
    assert ours["id"].tolist() == entity["id"].tolist()  # entity order


def test_many_rows_share_few_times(tmp_path, monkeypatch):
    """300 entity rows at 4 times: both views (one key, two keys) join distinct (keys, time)
    combinations only."""
    calls = []
    real = offline_store.distinct_rows

    def spy(keys, times):
        out = real(keys, times)
        calls.append(out is not None and len(out[1]) < len(times[0]))
        return out

    monkeypatch.setattr(offline_store, "distinct_rows", spy)
    rng = np.random.default_rng(21)
    keys = ["a", "b", "c"]
    entity = _entity(rng, 300, [*keys, "zz"], 4)
    ours, feast, *_ = ask_both(
        tmp_path, _features(rng, 30, keys), _pair_table(rng, keys), entity, REFS, False
    )
    assert_same(ours, feast, ["id"])
    assert calls == [True, True]


def test_python_mode_view_and_to_arrow(tmp_path):
    rng = np.random.default_rng(7)
    keys = ["a", "b"]
    entity = _entity(rng, 40, keys, 6)
    refs = [*REFS, "times:n_times_x"]
    ours, feast, ours_job, feast_job = ask_both(
        tmp_path, _features(rng, 15, keys), _pair_table(rng, keys), entity, refs, True
    )
    assert_same(ours, feast, ["id"])
    a, b = ours_job.to_arrow().to_pandas(), feast_job.to_arrow().to_pandas()
    assert_same(a, b, ["id"])


def test_entity_dtypes_and_index(tmp_path):
    """Extra entity columns of every common dtype come back as Feast's store gives them back
    (some unchanged, some changed by DuckDB); the entity index is not the answer's."""
    rng = np.random.default_rng(3)
    n = 30
    entity = _entity(rng, n, ["a", "b", "q"], 4)
    entity["i32"] = np.arange(n, dtype="int32")
    entity["f32"] = np.linspace(0, 1, n, dtype="float32")
    entity["f64_nan"] = np.where(np.arange(n) % 3 == 0, np.nan, 1.5)
    entity["flag"] = np.arange(n) % 2 == 0
    entity["s_none"] = [None if i % 4 == 0 else f"s{i}" for i in range(n)]
    entity["s_nan"] = [np.nan if i % 5 == 0 else f"t{i}" for i in range(n)]
    entity["nullable"] = pd.array([None if i % 6 == 0 else i for i in range(n)], dtype="Int64")
    entity["cat"] = pd.Categorical(["u", "v"] * (n // 2))
    entity["naive"] = pd.Timestamp("2013-02-01") + pd.to_timedelta(np.arange(n), unit="min")
    entity["aware"] = pd.date_range("2013-01-01", periods=n, freq="h", tz="America/New_York")
    entity.index = pd.Index(rng.permutation(n) + 100)
    ours, feast, *_ = ask_both(
        tmp_path, _features(rng, 20, ["a", "b"]), _pair_table(rng, ["a", "b"]), entity, REFS, False
    )
    assert_same(ours, feast, ["id"])
    assert list(ours.index) == list(range(n))


def test_integer_keys_and_aware_times(tmp_path):
    rng = np.random.default_rng(11)
    features = _features(rng, 20, [1, 2, 3])
    entity = _entity(rng, 50, [1, 2, 3, 4], 5)
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"]).dt.tz_localize("UTC")
    entity = entity.drop(columns="j")
    ours, feast, *_ = ask_both(
        tmp_path,
        features,
        _pair_table(rng, ["a"]),
        entity,
        ["fv:value", "fv:n", "plus:value_plus_x"],
        False,
        key_type=ValueType.INT64,
    )
    assert_same(ours, feast, ["id"])


def test_keys_duckdb_compares(tmp_path):
    """Entity keys the store does not code (pandas' string dtype, with a missing value):
    DuckDB compares them with the view's keys itself."""
    rng = np.random.default_rng(5)
    features = _features(rng, 20, ["a", "b", "c"])
    entity = _entity(rng, 24, ["b", "c", "q"], 3)
    entity["k"] = pd.array([None if i % 7 == 0 else v for i, v in enumerate(entity["k"])], "string")
    entity = entity.drop(columns="j")
    refs = ["fv:value", "fv:n"]
    ours, feast, *_ = ask_both(tmp_path, features, _pair_table(rng, ["a"]), entity, refs, False)
    assert_same(ours, feast, ["id"])
    assert ours["value"].notna().any()


def test_empty_table(tmp_path):
    """A feature table without rows: every one of its features is null."""
    rng = np.random.default_rng(9)
    keys = ["a", "b"]
    entity = _entity(rng, 30, keys, 4)
    ours, feast, *_ = ask_both(
        tmp_path,
        _features(rng, 20, keys),
        _pair_table(rng, keys).iloc[:0],
        entity,
        ["fv:value", "pair:score"],
        True,
    )
    assert_same(ours, feast, ["id"])
    assert ours["pair__score"].isna().all()


def test_alias_and_join_key_map(tmp_path):
    """A service with the view under another name and its join key renamed (``other_k``)."""
    from feast import FeatureService

    rng = np.random.default_rng(13)
    keys = ["a", "b"]
    _features(rng, 20, keys).to_parquet(tmp_path / "f.parquet", index=False)
    _pair_table(rng, keys).to_parquet(tmp_path / "pair.parquet", index=False)
    objects = _views(tmp_path)
    renamed = objects[2].with_name("fv_again").with_join_key_map({"k": "other_k"})
    service = FeatureService(name="svc", features=[renamed[["value", "n"]], objects[3]])
    entity = _entity(rng, 30, keys, 4).rename(columns={"k": "other_k"})
    entity["k"] = rng.choice(keys, len(entity))
    answers = [
        _store(tmp_path / name, kind, [*objects, service])
        .get_historical_features(entity_df=entity, features=service, full_feature_names=full)
        .to_df()
        for full in (True, False)
        for name, kind in ((f"ours{full}", ASOF), (f"feast{full}", "duckdb"))
    ]
    assert_same(answers[0], answers[1], ["id"])
    assert_same(answers[2], answers[3], ["id"])
    assert {"fv_again__value", "fv_again__n", "pair__score"} <= set(answers[0].columns)
    assert answers[0]["fv_again__value"].notna().any()


def test_view_without_entities(tmp_path):
    """A view without entities (Feast's dummy entity): the join is on the time alone."""
    rng = np.random.default_rng(17)
    keys = ["a", "b"]
    pd.DataFrame(
        {
            "ts": [T0 + timedelta(hours=int(h)) for h in rng.permutation(10)],
            "level": rng.normal(size=10).round(3),
        }
    ).to_parquet(tmp_path / "global.parquet", index=False)
    overall = FeatureView(
        name="overall",
        entities=[],
        ttl=timedelta(hours=2),
        source=FileSource(
            name="global_src", path=str(tmp_path / "global.parquet"), timestamp_field="ts"
        ),
        schema=[Field(name="level", dtype=Float64)],
    )
    for rows, times in ((40, 30), (200, 4)):  # mostly distinct times, and shared ones
        entity = _entity(rng, rows, keys, times)
        ours, feast, *_ = ask_both(
            tmp_path,
            _features(rng, 20, keys),
            _pair_table(rng, keys),
            entity,
            ["fv:value", "overall:level"],
            False,
            views=[overall],
        )
        assert_same(ours, feast, ["id"])
        assert ours["level"].notna().any()


def test_codes_match_duckdb_equality():
    import pyarrow as pa

    entity = pd.Series(["a", None, "c", np.nan, "b", "zz"], dtype=object)
    view = pa.chunked_array([["b", None, "a", "b"]])
    codes = offline_store.key_codes(entity, view)
    assert codes is not None
    left, right, number = codes
    matches = [[j for j, r in enumerate(right) if r == le] for le in left]
    assert matches == [[2], [], [], [], [0, 3], []]
    assert number == 2
    assert offline_store.key_codes(pd.Series([1, 2]), view) is None
    assert offline_store.key_codes(pd.Series(["1"]), pa.chunked_array([[1]])) is None


def test_distinct_rows():
    keys = [(np.array([0, 0, 0, 1, 1, 0, 0]), 2), (np.array([-1, -1, 0, -1, 2, -1, -1]), 3)]
    times = offline_store.time_codes(np.array([5, 5, 5, 7, 7, 7, 5], dtype=np.int64))
    assert offline_store.distinct_rows(keys, times) is None  # 2 x 3 x 4 combinations > 7 rows
    keys = keys[:1]
    inverse, first = offline_store.distinct_rows(keys, times)
    rows = list(zip(keys[0][0], times[0], strict=True))
    assert len(first) == len(set(rows)) == len(set(inverse)) == 3  # one number per distinct row
    for i, r in enumerate(rows):
        assert rows[first[inverse[i]]] == r


def test_a_udf_that_changes_its_input_in_place_does_not_change_the_answer(tmp_path):
    """The pandas UDF gets a copy-on-write view of the joined frame: what it changes in place
    (a source feature, a request column) is not in the answer, as with Feast's store, which
    gives the UDF a frame of its own."""

    @on_demand_feature_view(
        sources=[
            _views(tmp_path)[2],
            RequestSource(name="req", schema=[Field(name="x", dtype=Float64)]),
        ],
        schema=[Field(name="doubled", dtype=Float64)],
        mode="pandas",
    )
    def doubled(inputs: pd.DataFrame) -> pd.DataFrame:
        inputs["value"] *= 2  # in place, on a column of the joined frame
        inputs.loc[:, "x"] = -1.0
        return pd.DataFrame({"doubled": inputs["value"]})

    rng = np.random.default_rng(5)
    keys = ["a", "b"]
    entity = _entity(rng, 30, keys, 5)
    refs = ["fv:value", "doubled:doubled"]
    ours, feast, *_ = ask_both(
        tmp_path,
        _features(rng, 15, keys),
        _pair_table(rng, keys),
        entity,
        refs,
        False,
        views=[doubled],
    )
    assert_same(ours, feast, ["id"])
    assert ours["x"].tolist() == entity["x"].tolist()
    both = ours.dropna(subset=["value"])
    assert len(both)
    assert (both["doubled"] == 2 * both["value"]).all()
