"""Features: offline tables for Feast, `feast apply`, online materialization and the training set."""

import functools
import time
from collections.abc import Callable

import dagster as dg
import pandas as pd

from dagster_project.features import aggregates, engineering, feast_store
from dagster_project.features import feast_objects as feast_objects_module
from dagster_project.features.feast_objects import build as feast_objects
from dagster_project.monitoring.retraining import TAG_REPLAY
from dagster_project.orchestration.compute_asset import compute_asset
from dagster_project.orchestration.metadata import (
    OWNERS,
    code_version,
    column_lineage,
    frame_metadata,
    schema_metadata,
)
from dagster_project.orchestration.partitions import daily_2013, single_run, utc_window
from dagster_project.orchestration.resources import FeastResource
from dagster_project.platform.names import FEATURE_SERVICE

FEATURES_VERSION = code_version(engineering)
FEAST_VERSION = code_version(feast_store)
# Each feature table is built from one validated table (its only input; tests/test_catalog.py).
FEATURE_UPSTREAM = {
    "origin_weather": "validated_weather",
    "carrier_delay_stats": "validated_flights",
    "route_delay_stats": "validated_flights",
    "plane_specs": "validated_planes",
    **dict.fromkeys(aggregates.VIEWS, "validated_flights"),
}
TABLE_SOURCES = engineering.COLUMN_SOURCES | aggregates.COLUMN_SOURCES


def feature_lineage(name: str) -> dict[str, dg.TableColumnLineage]:
    """Column lineage of a feature table: each column from its validated table's columns."""
    upstream = FEATURE_UPSTREAM[name]
    return column_lineage(
        {col: [(upstream, src) for src in srcs] for col, srcs in TABLE_SOURCES[name].items()}
    )


def training_set_lineage() -> dict[str, dg.TableColumnLineage]:
    """Entity keys, request data and the label from the flights; features from their tables."""
    sources = {
        col: [("validated_flights", src) for src in srcs]
        for col, srcs in engineering.ENTITY_SOURCES.items()
    }
    for table, columns in TABLE_SOURCES.items():
        for col in columns:
            if col not in sources and col != engineering.TS:
                sources[col] = [(table, col)]
    return column_lineage(sources)


def _view_columns(name: str) -> dict[str, str]:
    """Column schema of a feature table, read off its Feast feature view (one source of truth)."""
    objs = feast_objects("")
    view = next(v for v in objs.views if v.name == name)
    join_keys = {e.name: e.join_key for e in objs.entities}
    keys = {join_keys[e]: "String (entity key)" for e in view.entities}
    return (
        keys | {f.name: str(f.dtype) for f in view.features} | {"event_timestamp": "UTC timestamp"}
    )


def _feature_table(
    name: str,
    upstream: str,
    build: Callable[[pd.DataFrame], pd.DataFrame],
    doc: str,
    version: str = FEATURES_VERSION,
) -> dg.AssetsDefinition:
    @compute_asset(
        name=name,
        group_name="features",
        ins={"source": dg.AssetIn(upstream)},
        kinds={"pandas", "parquet", "feast"},
        owners=OWNERS,
        description=doc,
        metadata=schema_metadata(_view_columns(name)),
        code_version=version,
    )
    def _asset(
        context: dg.AssetExecutionContext, source: pd.DataFrame, feast: FeastResource
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        table = build(source)
        url = feast.client().write_offline_table(name, table)
        seconds = time.perf_counter() - started
        context.log.info(f"{name}: {len(table)} rows from {len(source)} in {seconds:.2f}s")
        return dg.MaterializeResult(
            # a replay rebuilds every table each simulated day: no histograms there
            metadata=frame_metadata(
                table,
                plot_title=None if context.run.tags.get(TAG_REPLAY) else f"{name}: distributions",
            )
            | feature_lineage(name)
            | {
                "offline_table": dg.MetadataValue.path(url),
                "input_rows": dg.MetadataValue.int(len(source)),
                "build_seconds": dg.MetadataValue.float(seconds),
                "rows_per_second": dg.MetadataValue.float(len(source) / max(seconds, 1e-9)),
            }
        )

    return _asset


feature_tables = [
    _feature_table(
        "origin_weather",
        "validated_weather",
        engineering.origin_weather,
        "Hourly weather per origin airport, stamped at the observation hour.",
    ),
    _feature_table(
        "carrier_delay_stats",
        "validated_flights",
        engineering.carrier_delay_stats,
        "Per carrier and day: delays of the 7 previous days' departed flights.",
    ),
    _feature_table(
        "route_delay_stats",
        "validated_flights",
        engineering.route_delay_stats,
        "Per route and day: delays of the 28 previous days' departed flights.",
    ),
    *(
        _feature_table(
            view,
            "validated_flights",
            functools.partial(aggregates.batch_table, view),
            doc,
            code_version(aggregates),
        )
        for view, doc in {
            aggregates.ORIGIN_TRAFFIC: "Per origin, every 5 minutes: departures and mean delay "
            "over the last 60 and 180 minutes (the batch form of the stream feature).",
            aggregates.CARRIER_ORIGIN_TRAFFIC: "Per carrier and origin: departures and mean "
            "delay over the last 180 minutes, where they change (batch form of the stream).",
            aggregates.PLANE_TODAY: "Per aircraft and day: departures so far and the latest "
            "one's delay, where it departs (batch form of the stream feature).",
        }.items()
    ),
    _feature_table(
        "plane_specs",
        "validated_planes",
        engineering.plane_specs,
        "Static aircraft features: age, seats, engines.",
    ),
]


@compute_asset(
    group_name="features",
    deps=feature_tables,
    kinds={"feast"},
    owners=OWNERS,
    code_version=code_version(feast_store, feast_objects_module),
)
def feast_definitions(feast: FeastResource) -> dg.MaterializeResult:
    """`feast apply` of the entities, views and the `flight_delay_v1` FeatureService."""
    names = feast.client().apply()
    return dg.MaterializeResult(
        metadata={
            "applied": dg.MetadataValue.json(names),
            "feature_service": FEATURE_SERVICE,
        }
    )


class OnlineFeaturesConfig(dg.Config):
    # Load the stream-fed views (weather, origin and carrier traffic, the aircraft's day) from
    # the offline tables too. The intraday replay turns it off: its stream consumer keeps them
    # current, and the day's batch rows would be ahead of its clock.
    stream_views: bool = True


@compute_asset(
    group_name="features",
    partitions_def=daily_2013,
    backfill_policy=single_run,
    # The feature tables too, not only through feast_definitions: the daily loop keeps the
    # Feast objects (feast_definitions is not in its run), and without these edges the online
    # store was loaded before the day's tables were written (its weather never moved on).
    deps=[feast_definitions, *feature_tables],
    kinds={"feast", "sqlite"},
    owners=OWNERS,
    code_version=FEAST_VERSION,
)
def online_features(
    context: dg.AssetExecutionContext, config: OnlineFeaturesConfig, feast: FeastResource
) -> dg.MaterializeResult:
    """The partition's feature rows loaded into the online store (incremental by day)."""
    start, end = utc_window(context)
    started = time.perf_counter()
    skip = frozenset() if config.stream_views else frozenset(feast_objects_module.STREAM_VIEWS)
    counts = feast.client().materialize(start, end, skip)
    seconds = time.perf_counter() - started
    rows = sum(counts.values())
    return dg.MaterializeResult(
        metadata={
            "rows_materialized": dg.MetadataValue.int(rows),
            "rows_by_view": dg.MetadataValue.json(counts),
            "rows_per_second": dg.MetadataValue.float(rows / max(seconds, 1e-9)),
            "window": f"{start.isoformat()} .. {end.isoformat()}",
        }
    )


class TrainingSetConfig(dg.Config):
    start_date: str = "2013-01-01"
    end_date: str = "2013-07-31"  # with the model's default 31 holdout days: train Jan-Jun
    # "lead": features as known the lead before the scheduled departure (fresh weather and
    # the departure stream; the intraday replay scores then); "day_start": as known when the
    # flight's local day starts (what the daily-batch loop scores tomorrow's flights with).
    prediction_time: str = "lead"
    prediction_lead_minutes: int = engineering.DEFAULT_LEAD_MINUTES
    # The FeatureService the features come from (and the model trained on them records)
    feature_service: str = FEATURE_SERVICE


@compute_asset(
    group_name="features",
    deps=[feast_definitions],
    kinds={"feast", "pandas"},
    owners=OWNERS,
    ins={"flights": dg.AssetIn("validated_flights")},
    code_version=code_version(engineering, feast_store),
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    flights: pd.DataFrame,
    feast: FeastResource,
) -> dg.Output[pd.DataFrame]:
    """Point-in-time correct features (Feast `get_historical_features`) for flights in a range."""
    in_range = flights[flights["flight_date"].between(config.start_date, config.end_date)]
    if in_range.empty:
        raise dg.Failure(f"no validated flights between {config.start_date} and {config.end_date}")
    try:
        entities = engineering.training_entities(
            in_range, config.prediction_time, config.prediction_lead_minutes
        )
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    services = sorted(s.name for s in feast_objects("").services)
    if config.feature_service not in services:
        raise dg.Failure(
            f"training_set: no FeatureService {config.feature_service!r}; "
            f"the repo defines {', '.join(services)}"
        )
    df = feast.client().historical_features(entities, config.feature_service)
    # Many flights share a prediction time (day_start): flight_id makes the order, the models
    # trained on it and the lineage hash reproducible.
    df = df.sort_values(["event_timestamp", "flight_id"], kind="stable").reset_index(drop=True)
    label = engineering.prediction_label(config.prediction_time, config.prediction_lead_minutes)
    df.attrs |= {"feature_service": config.feature_service, "prediction_time": label}
    context.log.info(
        f"training_set: {len(df)} rows, positive rate {df[engineering.LABEL].mean():.3f}"
    )
    return dg.Output(
        df,
        metadata=frame_metadata(df, plot_title="training_set: distributions")
        | training_set_lineage()
        | {
            "feature_service": config.feature_service,
            "date_range": f"{config.start_date}..{config.end_date}",
            "prediction_time": label,
            "positive_rate": dg.MetadataValue.float(float(df[engineering.LABEL].mean())),
        },
    )


plane_specs = next(t for t in feature_tables if t.key.path == ["plane_specs"])  # static, reference
assets = [*feature_tables, feast_definitions, online_features, training_set]
