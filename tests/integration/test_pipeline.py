"""The whole chain in process on temp dirs: land -> raw + GX gates -> validated -> features ->
feast apply -> online store -> training set; then corrupted files against the gate."""

import io
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from dagster_project.definitions import all_assets, build_definitions, build_resources
from dagster_project.defs.run_config import training_run_config
from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.ingestion import landing
from dagster_project.orchestration.partitions import range_tags
from dagster_project.platform import names, storage
from dagster_project.platform.settings import Paths, feast_template

DAYS = ("2013-01-01", "2013-01-03")
DAY = "2013-01-02"


def _run_range(paths: Paths, start: str, end: str) -> dg.ExecuteInProcessResult:
    job = build_definitions(paths).get_job_def("ingest_features_job")
    return job.execute_in_process(
        tags=range_tags(start, end), instance=dg.DagsterInstance.ephemeral()
    )


@pytest.fixture(scope="module")
def good_state(tmp_path_factory) -> Paths:
    paths = Paths(tmp_path_factory.mktemp("good") / "mlops")
    result = _run_range(paths, *DAYS)
    assert result.success
    return paths


def test_chain_materializes_every_asset_and_gate(good_state: Paths):
    lake = good_state.lake_url
    for day in ("2013-01-01", "2013-01-02", "2013-01-03"):
        assert storage.exists(f"{lake}/validated_flights/{day}.parquet")
        assert storage.exists(f"{lake}/validated_weather/{day}.parquet")
        assert storage.exists(f"{good_state.quarantine_url}/flights/{day}.parquet")
    flights = storage.read_parquet(f"{lake}/validated_flights/{DAY}.parquet")
    raw = landing.read_days(good_state.landing_url, "flights", [date(2013, 1, 2)])
    assert len(flights) == len(raw) > 800
    assert (
        good_state.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    ).exists()


def test_online_store_serves_the_features(good_state: Paths):
    client = FeatureStoreClient(
        feast_template("local"),
        good_state.feast_dir,
        good_state.features_url,
    )
    row = {
        "origin": "JFK",
        "carrier": "AA",
        "route": "JFK-LAX",
        "tailnum": "N3GEAA",
        "sched_dep_epoch_s": int(pd.Timestamp("2013-01-04 14:00Z").timestamp()),
        "distance": 2475.0,
    }
    out = client.online_features([row], "flight_delay_v1")
    assert out["temp"][0] is not None
    assert out["carrier_departures_7d"][0] > 0
    assert out["route_departures_28d"][0] > 0
    assert out["dep_hour"][0] == 9  # 14:00 UTC is 09:00 in New York in January


def test_training_set_point_in_time(good_state: Paths):
    result = dg.materialize(
        all_assets,
        selection=dg.AssetSelection.assets("training_set"),
        resources=build_resources(good_state),
        instance=dg.DagsterInstance.ephemeral(),
        run_config=training_run_config("2013-01-02", "2013-01-03"),
    )
    assert result.success
    df = storage.read_parquet(f"{good_state.lake_url}/training_set.parquet")
    assert set(df["event_timestamp"].dt.tz_convert("America/New_York").dt.date.astype(str)) <= {
        "2013-01-01",
        "2013-01-02",
        "2013-01-03",
    }
    assert {
        "temp",
        "carrier_mean_dep_delay_7d",
        "route_delayed_share_28d",
        "plane_age",
        "dep_hour",
        "dep_delayed_15",
    } <= set(df.columns)
    # Jan 2 flights see carrier stats of Jan 1 departures only; they exist for every carrier.
    assert df["carrier_departures_7d"].notna().mean() > 0.95


# --- the gate against corrupted landing files --------------------------------------------


def _corrupt(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    df = df.copy()
    n = len(df)
    if kind == "missing_column":
        return df.drop(columns=["dep_delay"])
    if kind == "wrong_dtype":
        df["distance"] = df["distance"].astype(object)
        df.loc[:2, "distance"] = "far"
        return df
    if kind == "null_keys":
        df.loc[: n // 5, "carrier"] = None
        return df
    if kind == "out_of_range":
        df.loc[: n // 10, "dep_delay"] = 10 * 365 * 24 * 60
        return df
    if kind == "duplicated_rows":
        return pd.concat([df, df], ignore_index=True)
    if kind == "wrong_day":
        return pd.read_csv(
            landing.daily_file_url(str(_corrupt.landing), "flights", date(2013, 1, 3))
        )
    raise ValueError(kind)


CASES = [
    ("missing_column", "dep_delay", "expect_table_columns_to_match_set"),
    ("wrong_dtype", "distance", "expect_column_values_to_be_in_type_list"),
    ("null_keys", "carrier", "expect_column_values_to_not_be_null"),
    ("out_of_range", "dep_delay", "expect_column_values_to_be_between"),
    ("duplicated_rows", "carrier+flight+origin", "expect_compound_columns_to_be_unique"),
    ("wrong_day", "time_hour", "expect_column_pair_values_to_be_equal"),
]


def _copy_state(good: Paths, tmp_path: Path) -> Paths:
    shutil.copytree(good.home, tmp_path / "mlops")
    return Paths(tmp_path / "mlops")


def _rerun_without_landing(paths: Paths, day: str) -> dg.ExecuteInProcessResult:
    """Re-run everything but the landing writer (which would restore the file) for one day."""
    return dg.materialize(
        all_assets,
        selection=dg.AssetSelection.groups("ingestion", "validation", "features")
        - dg.AssetSelection.assets("landed_daily_files", "landed_reference_files", "training_set"),
        resources=build_resources(paths),
        partition_key=day,
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )


@pytest.mark.parametrize(("kind", "column", "rule"), CASES)
def test_gate_blocks_corrupted_file(good_state, tmp_path, kind, column, rule):
    paths = _copy_state(good_state, tmp_path)
    url = landing.daily_file_url(paths.landing_url, "flights", date(2013, 1, 2))
    _corrupt.landing = paths.landing_url
    _corrupt(pd.read_csv(url), kind).to_csv(url, index=False)
    protected = [
        Path(paths.lake_url) / "validated_flights" / f"{DAY}.parquet",
        Path(paths.features_url) / "carrier_delay_stats.parquet",
        paths.feast_dir / "online_store.db",
    ]
    before = {p: p.read_bytes() for p in protected}

    result = _rerun_without_landing(paths, DAY)

    assert not result.success
    gate = next(
        e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("raw_flights")
    )
    assert not gate.passed
    message = gate.description or ""
    assert "table 'flights'" in message
    assert column in message
    assert rule in message
    assert "2013-01-02.csv" in message
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not materialized & {"validated_flights", "carrier_delay_stats", "online_features"}
    for p, content in before.items():
        assert p.read_bytes() == content, f"{p} changed although the gate failed"


def test_few_bad_rows_are_quarantined_and_the_rest_continue(good_state, tmp_path):
    paths = _copy_state(good_state, tmp_path)
    url = landing.daily_file_url(paths.landing_url, "flights", date(2013, 1, 2))
    df = pd.read_csv(url)
    df.loc[[3, 7, 11], "distance"] = -5
    df.to_csv(url, index=False)

    result = _rerun_without_landing(paths, DAY)

    assert result.success
    quarantine = storage.read_parquet(f"{paths.quarantine_url}/flights/{DAY}.parquet")
    assert sorted(quarantine["_source_line"]) == [5, 9, 13]
    assert set(quarantine["_rejected_by"]) == {"expect_column_values_to_be_between(distance)"}
    validated = storage.read_parquet(f"{paths.lake_url}/validated_flights/{DAY}.parquet")
    assert len(validated) == len(df) - 3
    assert (validated["distance"] > 0).all()

    # Fixing the file and re-running clears the quarantine (idempotent partitions).
    df.loc[[3, 7, 11], "distance"] = 100
    df.to_csv(url, index=False)
    assert _rerun_without_landing(paths, DAY).success
    assert storage.read_parquet(f"{paths.quarantine_url}/flights/{DAY}.parquet").empty


# --- the rest of the bad-input corpus (issue 9) -------------------------------------------
# Byte-level breakage the CSV reader must refuse, and frame-level breakage the gate must catch.
# For each: the run fails naming the file, column and rule; nothing downstream changes (the
# validated partition, the feature tables, the online store, the model registry); no raw
# partition is written for an unreadable file; the fixed file re-runs to the same result.


def _corrupt_bytes(raw: bytes, kind: str) -> bytes:
    if kind == "truncated":
        return raw[: int(len(raw) * 0.6)].rstrip(b"\n").rsplit(b",", 3)[0]
    if kind == "wrong_delimiter":
        return raw.replace(b",", b";")
    if kind == "header_only":
        return raw.split(b"\n", 1)[0] + b"\n"
    if kind == "non_utf8":
        return raw.replace(b"United", b"Unit\xe9d", 1).replace(b"EWR", b"\xff\xfeR", 1)
    if kind == "zero_bytes":
        return b""
    if kind == "extra_column":
        df = pd.read_csv(io.BytesIO(raw))
        return df.assign(gate_code="B12").to_csv(index=False).encode()
    if kind == "renamed_column":
        df = pd.read_csv(io.BytesIO(raw))
        return df.rename(columns={"tailnum": "tail_number"}).to_csv(index=False).encode()
    if kind == "hundred_times":
        df = pd.read_csv(io.BytesIO(raw))
        return pd.concat([df] * 100, ignore_index=True).to_csv(index=False).encode()
    raise ValueError(kind)


BYTE_CASES = [
    # kind, the words the failure must contain (column, rule), whether raw_flights was read;
    # each case is a full run (about 18 s): half of them in the default suite, all with -m slow
    ("truncated", ["complete_last_row", "truncated"], False),
    pytest.param("wrong_delimiter", ["csv_delimiter", "';'"], False, marks=pytest.mark.slow),
    pytest.param(
        "header_only", ["at_least_one_row", "no data rows"], False, marks=pytest.mark.slow
    ),
    ("non_utf8", ["not valid UTF-8", "at byte"], False),
    pytest.param("zero_bytes", ["file is empty"], False, marks=pytest.mark.slow),
    ("extra_column", ["unexpected gate_code", "expect_table_columns_to_match_set"], True),
    ("renamed_column", ["missing tailnum", "unexpected tail_number"], True),
    pytest.param(
        "hundred_times",
        ["(row count)", "expect_table_row_count_to_be_between"],
        True,
        marks=pytest.mark.slow,
    ),
]


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every failure the run reports: failed gate checks and failed steps (with causes)."""
    parts = [
        e.description or ""
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.description
    ]
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.message)
                error = error.cause
    return "\n".join(parts)


def _champion(paths: Paths) -> tuple[str, str] | None:
    from dagster_project.training import tracking

    found = tracking.Registry(paths.mlflow_tracking_uri).by_alias(names.CHAMPION)
    return (found.version, found.run_id) if found else None


@pytest.fixture(scope="module")
def corpus_state(good_state, tmp_path_factory) -> Paths:
    """The good state plus a champion model in its registry (a tiny scikit-learn model: the
    point is that no bad-input run touches the registry, not what the model is)."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from dagster_project.training import tracking

    paths = _copy_state(good_state, tmp_path_factory.mktemp("corpus"))
    tracking.configure(paths.mlflow_tracking_uri, paths.mlflow_artifacts)
    x = np.random.default_rng(0).random((40, 2))
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, x[:, 0] > 0.5), name="model")
    registry = tracking.Registry(paths.mlflow_tracking_uri)
    version = registry.register(info.model_uri, run.info.run_id, {})
    registry.set_alias(names.CHAMPION, version.version)
    return paths


@pytest.mark.parametrize(("kind", "words", "read"), BYTE_CASES)
def test_bad_file_fails_the_run_names_it_and_changes_nothing(
    corpus_state, tmp_path, kind, words, read
):
    paths = _copy_state(corpus_state, tmp_path)
    url = landing.daily_file_url(paths.landing_url, "flights", date(2013, 1, 2))
    good = Path(url).read_bytes()
    Path(url).write_bytes(_corrupt_bytes(good, kind))
    lake = Path(paths.lake_url)
    protected = [
        lake / "raw_flights" / f"{DAY}.parquet",
        lake / "validated_flights" / f"{DAY}.parquet",
        Path(paths.features_url) / "carrier_delay_stats.parquet",
        Path(paths.features_url) / "route_delay_stats.parquet",
        paths.feast_dir / "online_store.db",
    ]
    if read:  # the gate reads the file; raw_flights holds it, annotated, for inspection
        protected = protected[1:]
    before = {p: p.read_bytes() for p in protected}
    champion = _champion(paths)
    assert champion is not None

    result = _rerun_without_landing(paths, DAY)

    assert not result.success
    text = _failure_text(result)
    assert "2013-01-02.csv" in text, text
    for word in words:
        assert word in text, (word, text)
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not materialized & {"validated_flights", "carrier_delay_stats", "online_features"}
    for p, content in before.items():
        assert p.read_bytes() == content, f"{p} changed although the run failed"
    assert _champion(paths) == champion
    leftovers = [p for p in lake.rglob("*") if p.name.startswith(".tmp-")]
    assert not leftovers, leftovers

    # Fixing the file and re-running gives back exactly the good partition (idempotent).
    validated_before = storage.read_parquet(f"{paths.lake_url}/validated_flights/{DAY}.parquet")
    Path(url).write_bytes(good)
    assert _rerun_without_landing(paths, DAY).success
    again = storage.read_parquet(f"{paths.lake_url}/validated_flights/{DAY}.parquet")
    pd.testing.assert_frame_equal(again, validated_before)


def test_impossible_weather_rows_are_quarantined_with_the_rule(good_state, tmp_path):
    """Temperature 500 F on two hourly rows: quarantined, named, the rest continue."""
    paths = _copy_state(good_state, tmp_path)
    url = landing.daily_file_url(paths.landing_url, "weather", date(2013, 1, 2))
    df = pd.read_csv(url)
    df.loc[[4, 30], "temp"] = 500
    df.to_csv(url, index=False)

    result = _rerun_without_landing(paths, DAY)

    assert result.success
    quarantine = storage.read_parquet(f"{paths.quarantine_url}/weather/{DAY}.parquet")
    assert sorted(quarantine["_source_line"]) == [6, 32]
    assert set(quarantine["_rejected_by"]) == {"expect_column_values_to_be_between(temp)"}
    assert set(quarantine["_source_file"]) == {url}
    validated = storage.read_parquet(f"{paths.lake_url}/validated_weather/{DAY}.parquet")
    assert len(validated) == len(df) - 2
    assert validated["temp"].max() < 130
